"""The grid's one-line progress report (done, running, failed, queued, ETA) on the driver."""
from __future__ import annotations

import time
from typing import TextIO


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class ProgressLine:
    """done · running · failed · queued · ETA (mean time of the runs finished so far), redrawn in
    place on a terminal, one line per change elsewhere."""

    def __init__(self, stream: TextIO, total: int, skipped: int, slots: int) -> None:
        self.stream, self.total, self.skipped, self.slots = stream, total, skipped, slots
        self.tty = stream.isatty()
        self.last = ""

    def text(self, done: int, running: dict[str, float], failed: int, queued: int, durations: list[float]) -> str:
        eta = "?"
        if durations:
            mean = sum(durations) / len(durations)
            left = queued * mean + sum(max(mean - (time.time() - t), 0.0) for t in running.values())
            eta = clock(left / max(1, min(self.slots, queued + len(running))))
        before = f" ({self.skipped} before)" if self.skipped else ""
        return (f"grid: {done + self.skipped}/{self.total} done{before} · {len(running)} running · {failed} failed"
                f" · {queued} queued · ETA {eta}")

    def show(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
        elif text.split(" · ETA")[0] != self.last.split(" · ETA")[0]:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last = text

    def message(self, text: str) -> None:
        """A block of text above the progress line."""
        self.stream.write(("\r\033[K" if self.tty else "") + text.rstrip() + "\n")
        if self.tty and self.last:
            self.stream.write(self.last)
        self.stream.flush()
