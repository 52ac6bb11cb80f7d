"""The grid's one-line progress report (done, running, failed, queued, ETA) on the driver."""
from __future__ import annotations

import time
from typing import TextIO


def count(n: int, noun: str) -> str:
    """`1 run`, `2 runs`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def time_left(started: list[float], queued: int, slots: int, mean: float, now: float) -> float:
    """Seconds until the last run ends if each takes `mean`: the running ones end at their start plus
    `mean` (not before now), and each queued run starts in the first slot that frees. Starting a queued
    run changes nothing, so the estimate moves only with the clock and with each finished run's time."""
    lanes = sorted([max(t + mean - now, 0.0) for t in started] + [0.0] * max(0, slots - len(started)))
    for _ in range(queued):
        lanes[0] += mean
        lanes.sort()
    return max(lanes, default=0.0)


class ProgressLine:
    """done · running (each one's epoch) · failed · queued · ETA (mean time of the runs finished so far, or
    projected from epochs before one has), redrawn in place on a terminal, one line per change elsewhere (so a
    log gets a line per epoch)."""

    def __init__(self, stream: TextIO, total: int, skipped: int, slots: int) -> None:
        self.stream, self.total, self.skipped, self.slots = stream, total, skipped, slots
        self.tty = stream.isatty()
        self.last = ""

    def text(self, done: int, running: dict[str, float], failed: int, queued: int, durations: list[float],
             now: float | None = None, epochs: dict[str, tuple[int, int, int]] | None = None) -> str:
        """`running` maps each running run to its start time; `now` defaults to the clock. `epochs` maps a
        running run to (epochs logged, logged when it started, epochs in all), where its folder can be read:
        each run's epoch is shown, and before any run has finished the ETA is projected from the epochs done
        since the runs started (training only: a run's stress test is not in it, hence "~")."""
        now = time.time() if now is None else now
        epochs = {name: e for name, e in (epochs or {}).items() if name in running}
        eta = "?"
        if durations:
            eta = clock(time_left(list(running.values()), queued, self.slots, sum(durations) / len(durations), now))
        elif running and len(epochs) == len(running) and all(d > s for d, s, _ in epochs.values()):
            projected = [(now - running[name]) * (total - s) / (d - s) for name, (d, s, total) in epochs.items()]
            eta = "~" + clock(time_left(list(running.values()), queued, self.slots, sum(projected) / len(projected),
                                        now))
        at = f" (epoch {', '.join(f'{d}/{t}' for d, _, t in epochs.values())})" if epochs else ""
        before = f" ({self.skipped} before)" if self.skipped else ""
        return (f"grid: {done + self.skipped}/{self.total} done{before} · {len(running)} running{at} · {failed} failed"
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
