"""TomBERT TSV reader: `index, label, image file, tweet with $T$, target` per row.

Read by position (test.tsv's header has one name fewer than its rows) with quoting off
(Twitter2017 has bare `"` that would merge rows). Any file in this format works, not only
the named splits, so bad input must fail with the file and line, never silently.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cmcs_core.io import atomic_write_text

LABEL_NAMES = ("negative", "neutral", "positive")
TARGET_TOKEN = "$T$"
TARGET_MARKERS = ("[", "]")  # rare in tweets, one word piece each in BERT-style vocabularies


class TSVFormatError(ValueError):
    """A TSV row that cannot be a TMSC sample; the message names file and line."""


@dataclass(frozen=True)
class Sample:
    index: str
    label: int
    image_id: str
    tweet: str  # target replaced by $T$
    target: str
    line: int  # 1-based line in the source file, for error messages and the app

    @property
    def text(self) -> str:
        """The tweet with the target put back, as the encoder reads it."""
        return self.tweet.replace(TARGET_TOKEN, self.target)

    @property
    def marked_text(self) -> str:
        """The tweet with the target put back between markers (`--mark-target`): in a tweet with several targets
        every layer, the frozen ones too, then sees which words this row is about."""
        return self.tweet.replace(TARGET_TOKEN, f"{TARGET_MARKERS[0]} {self.target} {TARGET_MARKERS[1]}")


def _parse_label(raw: str, where: str) -> int:
    raw = raw.strip()
    if raw.isdigit() and int(raw) in (0, 1, 2):
        return int(raw)
    if raw.lower() in LABEL_NAMES:
        return LABEL_NAMES.index(raw.lower())
    raise TSVFormatError(f"{where}: unknown label {raw!r} (expected 0, 1, 2 or {', '.join(LABEL_NAMES)})")


def read_tsv(path: str | Path) -> list[Sample]:
    """Parse one TSV file; raises FileNotFoundError or TSVFormatError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TSV file not found: {path}")
    with path.open(encoding="utf-8", newline="") as handle:
        return parse_tsv(handle, str(path))


def parse_tsv(lines: Iterable[str], name: str) -> list[Sample]:
    """Parse the rows of a TSV held in memory (an upload: nothing is written to disk); errors name
    `name:line`, as read_tsv's name the file."""
    samples: list[Sample] = []
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    for line_no, row in enumerate(reader, start=1):
        if line_no == 1 and row and row[0].strip().lower() == "index":
            continue  # header
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{name}:{line_no}"
        if len(row) != 5:
            raise TSVFormatError(
                f"{where}: expected 5 tab-separated columns "
                f"(index, label, image, tweet with $T$, target), got {len(row)}"
            )
        index, label, image_id, tweet, target = (c.strip() for c in row)
        if TARGET_TOKEN not in tweet:
            raise TSVFormatError(f"{where}: tweet has no {TARGET_TOKEN} placeholder: {tweet[:80]!r}")
        if not target:
            raise TSVFormatError(f"{where}: empty target phrase")
        if not image_id:
            raise TSVFormatError(f"{where}: empty image file name")
        samples.append(Sample(index, _parse_label(label, where), image_id, tweet, target, line_no))
    if not samples:
        raise TSVFormatError(f"{name}: no samples found")
    return samples


def write_tsv(path: str | Path, samples: list[Sample]) -> Path:
    """Write samples in the same format, so edited data round-trips."""
    lines = ["index\t#1 Label\t#2 ImageID\t#3 String\t#3 String"]
    for s in samples:
        lines.append("\t".join([s.index, str(s.label), s.image_id, s.tweet, s.target]))
    return atomic_write_text(path, "\n".join(lines) + "\n")
