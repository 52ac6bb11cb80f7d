"""How often a tweet carries several targets, and targets of different labels: the rows where a
readout of the whole tweet gives two targets the same input (docs/robustness.md, target pooling).

    python bench/analyse_targets.py            # test splits of Twitter2015 and Twitter2017

Rows are grouped into tweets by image id (each tweet of the benchmark has its own image).
"""
from __future__ import annotations

import argparse
from collections import defaultdict

from cmcs_core.data.dataset import dataset_files
from cmcs_core.data.tsv import read_tsv


def target_shares(rows) -> dict[str, float]:
    """Shares (%) of rows whose tweet has another target, and another target of a different label."""
    labels = defaultdict(list)
    for r in rows:
        labels[r.image_id].append(r.label)
    several = sum(len(labels[r.image_id]) > 1 for r in rows)
    mixed = sum(len(set(labels[r.image_id])) > 1 for r in rows)
    return {"rows": len(rows), "several_targets": 100 * several / len(rows), "mixed_labels": 100 * mixed / len(rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["twitter2015", "twitter2017"])
    p.add_argument("--split", default="test")
    args = p.parse_args()
    print("| dataset | split | rows | rows in a tweet with another target (%) | … with a target of another label (%) |")
    print("|---|---|---|---|---|")
    for name in args.datasets:
        s = target_shares(read_tsv(dataset_files(name).split_path(args.split)))
        print(f"| {name} | {args.split} | {s['rows']} | {s['several_targets']:.1f} | {s['mixed_labels']:.1f} |")


if __name__ == "__main__":
    main()
