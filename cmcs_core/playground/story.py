"""The playground's story, read from its files: what the generator planted (meta.json, truth.json),
how each run on it did where the cues agree and conflict with the label (playground_score.json),
where its masks put the planted word (by word role) and how often each stress edit flips it.

This is what the app's Tour shows: one row per run with its dataset folder, accuracy where the cues agree
and conflict and its flip rates (`cmcs analyse playground` gives the same scores by variant over seeds);
numpy/pandas only, so the app reads it without torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from cmcs_core.command import cli_command
from cmcs_core.data.counterfactual import ALL_EDITS
from cmcs_core.playground.run import PRESETS, run_name
from cmcs_core.report.analyses import TEXT_ROLES
from cmcs_core.report.regime import Variant
from cmcs_core.runs.reader import Run, RunReadError

# the accuracy subsets of playground_score.json, in the order a reader compares them
ACCURACY_COLUMNS = {"all": "all test rows", "spurious_aligned": "cues agree with the label",
                    "spurious_conflicting": "cues conflict with the label"}
ROLE_TITLES = TEXT_ROLES  # the word roles of truth.json, titled once (report/analyses.py)


def is_playground(run: Run) -> bool:
    """A run trained on a playground folder (its dataset folder holds the generator's truth)."""
    data = Path(run.cfg.data.dataset)
    return (data / "truth.json").is_file() and (data / "meta.json").is_file()


def planted_cues(data_dir: str | Path) -> dict[str, Any]:
    """What the generator planted, from its own meta.json: the planted words, image objects or
    background colours per class, the sentiment words, the strengths per split, and the cue kind."""
    data = Path(data_dir)
    try:
        meta = json.loads((data / "meta.json").read_text(encoding="utf-8"))
        truth_kind = json.loads((data / "truth.json").read_text(encoding="utf-8"))["image_cue_kind"]
    except (OSError, ValueError, KeyError) as err:
        raise RunReadError(f"{data}: not a playground folder ({err})") from err
    cfg, stats = meta["config"], meta.get("statistics", {})
    return {
        "folder": str(data), "image_cue_kind": truth_kind, "config": cfg, "cues": meta["cues"],
        "measured": {split: {k: s.get(k) for k in ("text_strength", "image_strength", "n_rows")}
                     for split, s in stats.items()},
    }


def example_images(data_dir: str | Path, split: str = "test") -> dict[int, dict[str, Any]]:
    """One image per planted cue class (its file, caption, bbox), from truth.json: what each cue looks like."""
    data = Path(data_dir)
    truth = json.loads((data / "truth.json").read_text(encoding="utf-8"))
    captions = json.loads((data / "captions.json").read_text(encoding="utf-8"))
    out: dict[int, dict[str, Any]] = {}
    for row in truth["splits"][split].values():
        image = row["image"]
        cls = int(image["spurious_class"])
        if cls not in out and image["anchor"]:
            out[cls] = {"file": image["file"], "caption": captions.get(image["file"], ""), "bbox": image["bbox"],
                        "path": str(data / "images" / image["file"])}
    return dict(sorted(out.items()))


def story_frame(runs: list[Run], split: str = "test") -> pd.DataFrame:
    """One row per finished playground run: its dataset folder, method and variant, visual source,
    accuracy overall and where the cues agree / conflict, the text mask by word role, and the flip rate
    of every stress edit it was tested with (fractions; NaN where not measured)."""
    rows = []
    for run in runs:
        if not run.finished or not is_playground(run):
            continue
        score = run.playground_score() or {}
        variant = Variant.of(run.cfg)
        row: dict[str, Any] = {"run": run.name, "path": str(run.path), "data": str(Path(run.cfg.data.dataset)),
                               "method": run.method, "variant": variant.title, "variant_key": variant.key,
                               "visual_source": run.visual_source, "mask_condition": run.cfg.model.mask_condition,
                               "has_score": bool(score), "has_checkpoint": run.has_checkpoint}
        acc = score.get("accuracy", {})
        for key in ACCURACY_COLUMNS:
            row[f"acc_{key}"] = acc.get(key)
            row[f"n_{key}"] = acc.get(f"{key}_n", (run.metrics or {}).get(split, {}).get("n") if key == "all" else None)
        for role in ROLE_TITLES:
            row[f"mask_{role}"] = (score.get("text") or {}).get(role) if run.cfg.model.mask_mode == "learned" else None
        entry = run.stress_report().get("splits", {}).get(split, {}).get("edits", {})
        for edit in ALL_EDITS:
            res = entry.get(edit, {})
            row[f"flip_{edit}"] = res.get("flip_rate") if res.get("applies") else None
            row[f"flip_{edit}_ci"] = res.get("flip_ci") if res.get("applies") else None
            row[f"flip_{edit}_why"] = (None if res.get("applies") else res.get("reason")
                                       or ("not run on this run" if entry else "not stress-tested"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["data", "visual_source", "method", "variant"], key=lambda c: c.astype(str)).reset_index(drop=True)


def playground_kind(config: dict) -> str:
    """What a playground folder is, from its generator config (meta.json): a preset's, or the first run's."""
    for name, preset in PRESETS.items():
        if all(config.get(k) == v for k, v in preset["generator"].items() if not k.startswith("n_")):
            return f"{name} playground"
    return "first-run playground"


def preset_runs(runs_dir: str | Path, preset: str, seed: int = 0) -> dict[str, Path]:
    """The run folders a preset makes ({variant title: folder}), whether they exist yet or not."""
    out = {}
    for method, variant in PRESETS[preset]["runs"]:
        out[f"{method}{f' + {variant}' if variant else ''}"] = Path(runs_dir) / run_name(method, seed, "caption", variant, preset)
    return out


def preset_data_dir(runs_dir: str | Path, preset: str) -> Path:
    """Where the app puts a preset's dataset: beside the runs folder (runs/ -> playground/target_cue, where the
    command puts it by default)."""
    return Path(runs_dir).parent / PRESETS[preset]["data_out"]


def preset_command(preset: str, runs_dir: str | Path) -> str:
    """The command that trains a preset's runs into runs_dir, the dataset where the app's button puts it."""
    data = preset_data_dir(runs_dir, preset)
    return cli_command("playground", "--preset", preset, "--runs-dir", runs_dir,
                       *(() if data == PRESETS[preset]["data_out"] else ("--data-out", data)))


def example_tweet(data_dir: str | Path, split: str = "test", min_targets: int = 2) -> dict[str, Any] | None:
    """A test row whose own clause carries a planted word, in a tweet with other targets: its words with
    their roles from truth.json (text_roles), its gold label and the planted word's class."""
    from cmcs_core.data.tsv import read_tsv
    from cmcs_core.playground import vocab
    from cmcs_core.playground.score import text_roles

    data = Path(data_dir)
    truth = json.loads((data / "truth.json").read_text(encoding="utf-8"))["splits"][split]
    per_tweet: dict[int, int] = {}
    for row in truth.values():
        per_tweet[row["tweet_id"]] = per_tweet.get(row["tweet_id"], 0) + 1
    for sample in read_tsv(data / f"{split}.tsv"):
        t = truth[sample.index]
        if t["spurious_positions"] and per_tweet[t["tweet_id"]] >= min_targets:
            words = sample.tweet.replace("$T$", sample.target).split()
            planted = words[t["spurious_positions"][0]]
            return {"index": sample.index, "target": sample.target, "label": vocab.LABEL_NAMES[sample.label],
                    "words": list(zip(words, text_roles(t, len(words)))),
                    "planted_word": planted, "planted_class": vocab.LABEL_NAMES[vocab.spurious_class_of(planted)]}
    return None
