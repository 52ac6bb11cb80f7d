"""Counterfactual stress tests: how often a run's prediction for the target changes when
something that is not about the target changes (data/counterfactual.py lists the edits).

`run_stress` writes each edited split as a benchmark TSV, evaluates the run on it with the
same pipeline as `evaluate`, and records per edit the rows, accuracy before and after, the flip
rate (share of predictions that change) with a bootstrap interval, where the flips go, and the
flipped rows. Everything lands in RUN/stress.json and RUN/stress/<split tag>/, written
atomically after each edit; a rerun skips an edit whose edited file and checkpoint are unchanged.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cmcs_core.command import cli_command
from cmcs_core.data.counterfactual import (ALL_EDITS, CLAUSE_LABEL, EDITS, PLANTED_EDITS, VISUAL_EDITS, clause_polarity,
                                          edit_rows, phrase_bank)
from cmcs_core.data.dataset import load_json_map, load_split, split_tag
from cmcs_core.data.tsv import LABEL_NAMES, Sample, write_tsv
from cmcs_core.evaluate import evaluate_split
from cmcs_core.inference import Predictor
from cmcs_core.io import atomic_save, atomic_write_json
from cmcs_core.playground.edits import planted_edit_rows, read_truth
from cmcs_core.robustness import N_BOOT, flip_stats
from cmcs_core.runs.files import CHECKPOINT_FILE, CONFIG_FILE, STRESS_DIR, STRESS_FILE
from cmcs_core.runs.formats import edited_images_dir, read_stress_report


def _sha1_file(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _tsv_text(rows: list[Sample]) -> str:
    return "\n".join("\t".join([s.index, str(s.label), s.image_id, s.tweet, s.target]) for s in rows)


def check_checkpoint(run_dir: Path) -> None:
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {CONFIG_FILE})")
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint ({CHECKPOINT_FILE}): stress tests evaluate the trained model. "
            "Result folders kept in git travel without weights; retrain with "
            f"`{cli_command('train', '--config', run_dir / CONFIG_FILE)}`.")


def run_stress(run_dir: str | Path, split: str = "test", edits: tuple[str, ...] | None = None, seed: int = 0,
               phrases_file: str | Path | None = None, n_boot: int = N_BOOT, device: str = "cpu",
               progress: bool = True, log=print, on_edit: Callable[[str], None] | None = None) -> dict:
    """Stress-test one run on a split (train/dev/test or a benchmark TSV); returns the split's
    entry of stress.json (with its tag), having written the whole file. `edits` defaults to every
    edit, the planted-truth ones (playground/edits.py) included when the run's data is a playground;
    `on_edit(edit)` after each edit, done or found not to apply. The probes (PROBE_EDITS) run only when named."""
    run_dir = Path(run_dir)
    check_checkpoint(run_dir)
    unknown = [e for e in edits or () if e not in ALL_EDITS]
    if unknown:
        raise ValueError(f"unknown edit(s) {unknown}; choose from {', '.join(ALL_EDITS)}")
    phrases = phrase_bank("stress", phrases_file)
    pred = Predictor(run_dir, device=device)
    pipe = pred.pipe
    original = pipe.load_split(split)
    tag = split_tag(split, original.path)
    truth = read_truth(pred.cfg.data.dataset) if Path(pred.cfg.data.dataset).is_dir() else None
    if edits is None:
        edits = EDITS + (PLANTED_EDITS if truth is not None else ())
    checkpoint = _sha1_file(run_dir / CHECKPOINT_FILE)
    report_path = run_dir / STRESS_FILE
    report = read_stress_report(run_dir)
    entry = report["splits"].setdefault(tag, {"edits": {}})
    entry.update(file=str(original.path), rows=len(original), visual_source=pipe.visual_source)
    report.update(run=run_dir.name, checkpoint=checkpoint, seed=seed, n_boot=n_boot,
                  phrases=str(phrases_file) if phrases_file else "cmcs_core/phrases.json (stress bank)")
    out_dir = run_dir / STRESS_DIR / tag
    before = None
    for n, edit in enumerate(tqdm(edits, desc=f"stress {run_dir.name} [{tag}]", disable=not progress)):
        if n and on_edit is not None:
            on_edit(edits[n - 1])
        if (edit in VISUAL_EDITS or edit == "swap_image_cue") and not (pred.cfg.model.use_visual or pred.cfg.encoder.caption_in_text):
            entry["edits"][edit] = {"applies": False, "reason": "the run reads no visual input, so this edit "
                                                                "cannot change its predictions"}
            continue
        if edit in PLANTED_EDITS:
            if truth is None:
                entry["edits"][edit] = {"applies": False, "reason": "the run's data is not a playground folder "
                                                                    "(no truth.json names the planted cues)"}
                continue
            edited = _planted(pipe, original, edit, truth, seed)
        else:
            edited = edit_rows(original.samples, edit, seed, phrases)
        for note in edited.skipped:
            log(f"{edit}: skipped {note}")
        if edited.not_applicable:
            log(f"{edit}: applies to no row of {original.path}: {edited.not_applicable}")
            entry["edits"][edit] = {"applies": False, "reason": edited.not_applicable}
            atomic_write_json(report_path, report)
            continue
        text = _tsv_text(edited.rows)
        fingerprint = hashlib.sha1(f"{checkpoint}\n{seed}\n{n_boot}\n{text}".encode()).hexdigest()[:16]
        old = entry["edits"].get(edit, {})
        if old.get("fingerprint") == fingerprint and (run_dir / old.get("rows_file", "-")).is_file():
            continue  # finished before with the same rows and checkpoint
        tsv = write_tsv(out_dir / f"{edit}.tsv", edited.rows)
        data, after = evaluate_split(pred.model, pipe, _edited_split(pipe, tsv, edited, out_dir), progress=progress)
        if before is None:
            before = evaluate_split(pred.model, pipe, original, progress=progress)[1]["pred"]
        b = before[edited.positions]
        labels = np.array([s.label for s in edited.rows])
        stats = flip_stats(labels, b, after["pred"], n_boot, seed)
        if (polarity := clause_polarity(edit)) is not None:
            toward = CLAUSE_LABEL[polarity]
            stats["to_clause_polarity"] = int(((after["pred"] == toward) & (b != after["pred"])).sum())
        rows = _flipped_frame(original.samples, edited, data.split.visual_text, labels, b, after)
        rows_file = out_dir / f"{edit}_flipped.csv"
        atomic_save(rows_file, lambda p: rows.to_csv(p, index=False))
        entry["edits"][edit] = {"applies": True, **stats, "skipped": edited.skipped, "fingerprint": fingerprint,
                                "file": str(tsv.relative_to(run_dir)), "rows_file": str(rows_file.relative_to(run_dir))}
        atomic_write_json(report_path, report)
    atomic_write_json(report_path, report)
    if edits and on_edit is not None:
        on_edit(edits[-1])
    return {"tag": tag, **entry}


def _planted(pipe, original, edit: str, truth: dict, seed: int):
    """A planted-truth edit of the split, given the visual inputs the image-cue swap needs."""
    files = pipe.dataset()
    captions = load_json_map(files.captions) if files.captions is not None and files.image_dir is None else None
    return planted_edit_rows(original.samples, edit, truth, original.name, seed, captions, files.image_dir)


def _edited_split(pipe, tsv: Path, edited, out_dir: Path):
    """The edited TSV as a split; an edit that made up new image ids brings their captions or PNGs."""
    new_captions, new_images = getattr(edited, "captions", {}), getattr(edited, "images", {})
    if not new_captions and not new_images:
        return str(tsv)
    files = pipe.dataset()
    d = pipe.cfg.data
    if new_images and files.image_dir is not None:
        folder = edited_images_dir(out_dir, edited.edit)
        folder.mkdir(parents=True, exist_ok=True)
        for image_id, picture in new_images.items():
            atomic_save(folder / image_id, lambda p, pic=picture: pic.save(p, format="PNG"))
        return load_split(dataclasses.replace(files, image_dir=folder), str(tsv), d.use_faces, d.drop_missing_visual)
    captions = {**load_json_map(files.captions), **new_captions}
    return load_split(files, str(tsv), d.use_faces, d.drop_missing_visual, captions=captions)


def _flipped_frame(samples: list[Sample], edited, visual_text: list[str] | None, labels: np.ndarray,
                   before: np.ndarray, after: dict) -> pd.DataFrame:
    """The rows whose prediction changed: original and edited inputs side by side."""
    keep = np.flatnonzero(before != after["pred"])
    out = []
    for k in keep:
        orig, new = samples[edited.positions[k]], edited.rows[k]
        row = {
            "index": orig.index, "line": orig.line, "label": LABEL_NAMES[labels[k]],
            "pred_before": LABEL_NAMES[before[k]], "pred_after": LABEL_NAMES[after["pred"][k]],
            "tweet": orig.tweet, "target": orig.target, "image_id": orig.image_id,
            "edited_tweet": new.tweet, "edited_target": new.target, "edited_image_id": new.image_id,
            "edited_caption": visual_text[k] if visual_text is not None else "",
        }
        row.update({f"p_after_{n}": round(float(after["p_final"][k, i]), 4) for i, n in enumerate(LABEL_NAMES)})
        out.append(row)
    columns = ["index", "line", "label", "pred_before", "pred_after", "tweet", "target", "image_id", "edited_tweet",
               "edited_target", "edited_image_id", "edited_caption"] + [f"p_after_{n}" for n in LABEL_NAMES]
    return pd.DataFrame(out, columns=columns)


def stress_runs(runs: list[Path], edits: tuple[str, ...], quiet: bool = False,
                on_edit: Callable[[str, str], None] | None = None) -> None:
    """Stress-test each run on its test split with the given edits, one line of flip rates per run (what
    `cmcs playground` does after its trainings, so the app has flip rates and flipped rows out of the box);
    `on_edit(run name, edit)` after each edit."""
    import time

    for out in runs:
        cpu = time.process_time()
        entry = run_stress(out, edits=edits, progress=not quiet, log=lambda msg: None,
                           on_edit=None if on_edit is None else lambda edit, name=out.name: on_edit(name, edit))
        flips = ", ".join(f"{e} {100 * r['flip_rate']:.0f}%" for e, r in entry["edits"].items() if r.get("applies"))
        print(f"stress {out.name}: {flips} ({time.process_time() - cpu:.0f} s CPU)")
