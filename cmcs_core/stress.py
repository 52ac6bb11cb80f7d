"""Counterfactual stress tests: how often a run's prediction for the target changes when
something that is not about the target changes (data/counterfactual.py lists the edits).

`run_stress` writes each edited split as a benchmark TSV, evaluates the run on it with the
same pipeline as `evaluate`, and records per edit the rows, accuracy before and after, the flip
rate (share of predictions that change) with a bootstrap interval, where the flips go, and the
flipped rows. Everything lands in RUN/stress.json and RUN/stress/<split tag>/, written
atomically after each edit; a rerun skips an edit whose edited file and checkpoint are unchanged.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cmcs_core.data.counterfactual import CLAUSE_LABEL, EDITS, VISUAL_EDITS, edit_rows, phrase_bank
from cmcs_core.data.tsv import LABEL_NAMES, Sample, write_tsv
from cmcs_core.io import atomic_save, atomic_write_json

STRESS_FILE = "stress.json"
STRESS_DIR = "stress"
N_BOOT = 2000


def _sha1_file(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def flip_stats(labels: np.ndarray, before: np.ndarray, after: np.ndarray, n_boot: int = N_BOOT,
               seed: int = 0) -> dict:
    """Accuracy before/after, flip rate with a 95% percentile-bootstrap interval over rows, and
    the flips counted by (before -> after) label."""
    labels, before, after = (np.asarray(x, dtype=int) for x in (labels, before, after))
    flipped = before != after
    n = len(flipped)
    boots = flipped[np.random.default_rng(seed).integers(0, n, size=(n_boot, n))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    moves = Counter(f"{LABEL_NAMES[b]}→{LABEL_NAMES[a]}" for b, a in zip(before[flipped], after[flipped]))
    return {
        "rows": int(n),
        "acc_before": float((before == labels).mean()),
        "acc_after": float((after == labels).mean()),
        "flipped": int(flipped.sum()),
        "flip_rate": float(flipped.mean()),
        "flip_ci": [float(lo), float(hi)],
        "flips": dict(sorted(moves.items(), key=lambda kv: -kv[1])),
    }


def _tsv_text(rows: list[Sample]) -> str:
    return "\n".join("\t".join([s.index, str(s.label), s.image_id, s.tweet, s.target]) for s in rows)


def _load_report(path: Path) -> dict:
    """The run's stress.json, or an empty one; a corrupt file is replaced, not trusted."""
    try:
        report = json.loads(path.read_text())
        if isinstance(report, dict) and isinstance(report.get("splits"), dict):
            return report
    except (OSError, ValueError):
        pass
    return {"splits": {}}


def check_checkpoint(run_dir: Path) -> None:
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json)")
    if not (run_dir / "best.safetensors").is_file():
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint (best.safetensors): stress tests evaluate the trained model. "
            "Result folders kept in git travel without weights; retrain with "
            f"`python -m cmcs_core train --config {run_dir / 'config.json'}`.")


def run_stress(run_dir: str | Path, split: str = "test", edits: tuple[str, ...] = EDITS, seed: int = 0,
               phrases_file: str | Path | None = None, n_boot: int = N_BOOT, device: str = "cpu",
               progress: bool = True, log=print) -> dict:
    """Stress-test one run on a split (train/dev/test or a benchmark TSV); returns the split's
    entry of stress.json (with its tag), having written the whole file."""
    from cmcs_core.evaluate import predict_tensors, split_tag
    from cmcs_core.inference import Predictor

    run_dir = Path(run_dir)
    check_checkpoint(run_dir)
    unknown = [e for e in edits if e not in EDITS]
    if unknown:
        raise ValueError(f"unknown edit(s) {unknown}; choose from {', '.join(EDITS)}")
    phrases = phrase_bank("stress", phrases_file)
    pred = Predictor(run_dir, device=device)
    pipe = pred.pipe
    original = pipe.load_split(split)
    tag = split_tag(split, original.path)
    checkpoint = _sha1_file(run_dir / "best.safetensors")
    report_path = run_dir / STRESS_FILE
    report = _load_report(report_path)
    entry = report["splits"].setdefault(tag, {"edits": {}})
    entry.update(file=str(original.path), rows=len(original), visual_source=pipe.visual_source)
    report.update(run=run_dir.name, checkpoint=checkpoint, seed=seed, n_boot=n_boot,
                  phrases=str(phrases_file) if phrases_file else "cmcs_core/phrases.json (stress bank)")
    out_dir = run_dir / STRESS_DIR / tag
    before = None
    for edit in tqdm(edits, desc=f"stress {run_dir.name} [{tag}]", disable=not progress):
        if edit in VISUAL_EDITS and not (pred.cfg.model.use_visual or pred.cfg.encoder.caption_in_text):
            entry["edits"][edit] = {"applies": False, "reason": "the run reads no visual input, so this edit "
                                                                "cannot change its predictions"}
            continue
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
        data = pipe.tensors(pipe.load_split(str(tsv)), progress=progress)
        after = predict_tensors(pred.model, data, pipe.device)
        if before is None:
            before = predict_tensors(pred.model, pipe.tensors(original, progress=progress), pipe.device)["pred"]
        b = before[edited.positions]
        labels = np.array([s.label for s in edited.rows])
        stats = flip_stats(labels, b, after["pred"], n_boot, seed)
        if edit.startswith("clause_"):
            toward = CLAUSE_LABEL[edit.split("_", 1)[1]]
            stats["to_clause_polarity"] = int(((after["pred"] == toward) & (b != after["pred"])).sum())
        rows = _flipped_frame(original.samples, edited, data.split.visual_text, labels, b, after)
        rows_file = out_dir / f"{edit}_flipped.csv"
        atomic_save(rows_file, lambda p: rows.to_csv(p, index=False))
        entry["edits"][edit] = {"applies": True, **stats, "skipped": edited.skipped, "fingerprint": fingerprint,
                                "file": str(tsv.relative_to(run_dir)), "rows_file": str(rows_file.relative_to(run_dir))}
        atomic_write_json(report_path, report)
    atomic_write_json(report_path, report)
    return {"tag": tag, **entry}


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


# -- reading results back: tables and the app ---------------------------------------------------
def collect_stress(paths: list[str | Path]) -> pd.DataFrame:
    """One row per (run, split, edit) of every stress.json under the paths, with the run's
    dataset, method, seed, regime and test accuracy (tables.collect_runs)."""
    from cmcs_core.tables import collect_runs, regime

    runs = collect_runs(paths)
    rows = []
    for _, run in runs.iterrows():
        report = _load_report(Path(run["run"]) / STRESS_FILE)
        for tag, entry in report["splits"].items():
            for edit, res in entry.get("edits", {}).items():
                rows.append({
                    "run": run["run"], "dataset": run["dataset"], "method": run["method"],
                    "variant": variant_of(run),
                    "seed": run["seed"], "regime": regime(run, with_variants=False), "test_acc": run["test_acc"],
                    "split": tag, "edit": edit, "applies": bool(res.get("applies")), "reason": res.get("reason", ""),
                    "rows": res.get("rows", 0), "flip_rate": 100 * res.get("flip_rate", np.nan),
                    "flip_lo": 100 * res.get("flip_ci", [np.nan, np.nan])[0],
                    "flip_hi": 100 * res.get("flip_ci", [np.nan, np.nan])[1],
                    "acc_before": 100 * res.get("acc_before", np.nan), "acc_after": 100 * res.get("acc_after", np.nan),
                    "flips": res.get("flips", {}), "rows_file": res.get("rows_file", ""),
                })
    return pd.DataFrame(rows)


def variant_of(run) -> str:
    """The method and what was changed from its plain form, one tag per change in a fixed order:
    `text_only +pool-target`, `text_only +caption-in-text`, `cmcs +aug`, `text_only +pool-target +aug-random`.
    Each variant is compared with the same string less its last tag (base_of)."""
    from cmcs_core.tables import opt_in_changes

    return " ".join([run["method"], *(tag for tag, _ in opt_in_changes(run))])


def base_of(variant: str) -> str | None:
    """The variant without its last change (None for a plain method)."""
    return variant.rsplit(" ", 1)[0] if " " in variant else None


def variant_order(variants) -> list[str]:
    from cmcs_core.config import METHOD_TITLES

    order = {m: i for i, m in enumerate(METHOD_TITLES)}
    return sorted(set(variants), key=lambda v: (order.get(v.split(" ")[0], 99), v))


def _tag_title(tag: str) -> str:
    if tag.startswith("+pool-"):
        return f"{tag[len('+pool-'):]} pooling"
    if tag == "+caption-in-text":
        return "caption in the text input"
    if tag.startswith("+aug"):
        how = f" ({tag.split('-', 1)[1]} sentiment)" if "-" in tag else ""
        return f"counterfactual augmentation{how}"
    return tag.lstrip("+")


def variant_title(variant: str) -> str:
    from cmcs_core.config import METHOD_TITLES

    method, *tags = variant.split(" ")
    return " + ".join([METHOD_TITLES.get(method, method), *(_tag_title(t) for t in tags)])


def stress_tables(found: pd.DataFrame, reference: str = "cmcs") -> str:
    """Markdown: flip rate per edit and method (mean ± std over seeds) beside test accuracy; the
    reference method minus each other method paired by seed; augmented minus plain by seed."""
    if found.empty:
        return "No stress results found (run `python -m cmcs_core stress --run RUN`).\n"
    out = []
    ok = found[found.applies]
    for (reg, dataset, split), part in ok.groupby(["regime", "dataset", "split"]):
        edits = [e for e in EDITS if e in set(found.edit)]
        lines = [f"### Flip rate (%) under each edit — {dataset}, {split} split, {reg}\n\n",
                 "| method | test acc | " + " | ".join(edits) + " | seeds |\n",
                 "|---|---|" + "---|" * len(edits) + "---|\n"]
        for variant in variant_order(part.variant):
            v = part[part.variant == variant]
            acc = v.drop_duplicates("run").test_acc
            cells = ["–" if v[v.edit == e].empty else _mean_std(v[v.edit == e].flip_rate) for e in edits]
            lines.append(f"| {variant_title(variant)} | {_mean_std(acc)} | " + " | ".join(cells)
                         + f" | {v.seed.nunique()} |\n")
        lines.append(_paired(part, edits, reference))
        lines.append(_variant_vs_base(part, edits))
        out.append("".join(lines))
    na = found[~found.applies].drop_duplicates(["method", "edit", "reason"])
    notes = "".join(f"- {r.method}, {r.edit}: not run — {r.reason}\n" for r in na.itertuples())
    return ("\n".join(out) + "\nFlip rate: share of edited rows whose predicted label changes (%), mean ± std over "
            "seeds (no ± with one seed); test acc: the run's test accuracy (%). Paired cells list seeds in "
            "ascending order.\n"
            + (f"\n{notes}" if notes else ""))


def _mean_std(values: pd.Series) -> str:
    """Mean ± std over seeds; one seed has no spread to show, so no ± at all."""
    return f"{values.mean():.1f}" if len(values) < 2 else f"{values.mean():.1f} ± {values.std():.1f}"


def _diffs(diff: pd.Series) -> str:
    if diff.empty:
        return "–"
    seeds = " ".join(f"{d:+.1f}" for d in diff)
    return seeds if len(diff) < 2 else f"{seeds} (mean {diff.mean():+.1f})"


def _pivot(part: pd.DataFrame, edit: str) -> pd.DataFrame:
    return part[part.edit == edit].pivot_table(index="seed", columns="variant", values="flip_rate")


def _paired(part: pd.DataFrame, edits: list[str], reference: str) -> str:
    if reference not in set(part.variant):
        return ""
    lines = [f"\n{variant_title(reference)} minus each method, flip rate points paired by seed (negative: "
             f"{reference} flips less):\n\n| minus | " + " | ".join(edits) + " |\n|---|" + "---|" * len(edits) + "\n"]
    for variant in variant_order(part.variant):
        if variant == reference or base_of(variant):  # variants: compared with their base (_variant_vs_base)
            continue
        cells = []
        for edit in edits:
            p = _pivot(part, edit)
            both = p[[reference, variant]].dropna() if {reference, variant} <= set(p.columns) else pd.DataFrame()
            cells.append(_diffs((both[reference] - both[variant]) if not both.empty else pd.Series(dtype=float)))
        lines.append(f"| {variant_title(variant)} | " + " | ".join(cells) + " |\n")
    return "".join(lines)


def _variant_vs_base(part: pd.DataFrame, edits: list[str]) -> str:
    pairs = [(base_of(v), v) for v in variant_order(part.variant) if base_of(v)]
    pairs = [(base, v) for base, v in pairs if base in set(part.variant)]
    if not pairs:
        return ""
    lines = ["\nEach variant minus the same method without its last change (augmentation, target pooling, caption "
             "in the text input), paired by seed (flip rate points per edit; test accuracy points):\n\n"
             "| variant | minus | test acc | " + " | ".join(edits) + " |\n|---|---|---|" + "---|" * len(edits) + "\n"]
    accs = part.drop_duplicates("run").pivot_table(index="seed", columns="variant", values="test_acc")
    for base, variant in pairs:
        cells = []
        for table in [accs] + [_pivot(part, e) for e in edits]:
            both = table[[variant, base]].dropna() if {variant, base} <= set(table.columns) else pd.DataFrame()
            cells.append(_diffs((both[variant] - both[base]) if not both.empty else pd.Series(dtype=float)))
        lines.append(f"| {variant_title(variant)} | {variant_title(base)} | " + " | ".join(cells) + " |\n")
    return "".join(lines)


# Columns a packed flipped-rows file may leave to the data: `restore_flipped` rebuilds them from the
# split's TSV and the edit (deterministic in the report's seed and phrase bank), checked by line.
FLIPPED_BY_REFERENCE = ("tweet", "image_id", "edited_tweet", "edited_target", "edited_image_id", "edited_caption")


def restore_flipped(rows: pd.DataFrame, run_dir: str | Path, rows_file: str) -> pd.DataFrame:
    """Put back the text columns of a packed flipped-rows frame (rows_file as stress.json names it:
    stress/<split tag>/<edit>_flipped.csv[.gz]) by redoing the edit on the run's data file.
    Raises ValueError (or OSError) if the data is not at hand or no longer matches."""
    from cmcs_core.config import RunConfig
    from cmcs_core.data.dataset import dataset_files, load_split
    from cmcs_core.evaluate import split_tag

    run_dir = Path(run_dir)
    tag, edit = Path(rows_file).parent.name, Path(rows_file).name.split("_flipped")[0]
    report = _load_report(run_dir / STRESS_FILE)
    entry = report["splits"][tag]
    cfg = RunConfig.load(run_dir / "config.json")
    files = dataset_files(cfg.data.dataset, cfg.data.data_dir)
    name = tag if tag in ("train", "dev", "test") else entry["file"]
    split = load_split(files, name, cfg.data.use_faces, cfg.data.drop_missing_visual)
    if split_tag(name, split.path) != tag:
        raise ValueError(f"{split.path} changed since the stress test ({tag})")
    bank = report.get("phrases", "")
    phrases = phrase_bank("stress", bank if bank and Path(bank).is_file() else None)
    edited = edit_rows(split.samples, edit, int(report.get("seed", 0)), phrases)
    pixels = str(entry.get("visual_source", "")).startswith("pixels")
    captions = {s.image_id: c for s, c in zip(split.samples, split.visual_text or [])}
    by_line = {}
    for pos, new in zip(edited.positions, edited.rows):
        orig = split.samples[pos]
        by_line[orig.line] = (orig, new, "" if pixels else captions.get(new.image_id, ""))
    found = [by_line.get(int(line)) for line in rows["line"]]
    bad = [int(line) for line, hit, index, target in zip(rows["line"], found, rows["index"], rows["target"])
           if hit is None or str(hit[0].index) != str(index) or hit[0].target != target]
    if bad:
        raise ValueError(f"{len(bad)} flipped rows do not match the data file (first line {bad[0]})")
    out = rows.copy()
    values = {
        "tweet": [h[0].tweet for h in found], "image_id": [h[0].image_id for h in found],
        "edited_tweet": [h[1].tweet for h in found], "edited_target": [h[1].target for h in found],
        "edited_image_id": [h[1].image_id for h in found], "edited_caption": [h[2] for h in found],
    }
    for name in FLIPPED_BY_REFERENCE:
        out[name] = values[name]
    columns = ["index", "line", "label", "pred_before", "pred_after", "tweet", "target", "image_id",
               "edited_tweet", "edited_target", "edited_image_id", "edited_caption"]
    return out[columns + [c for c in out.columns if c not in columns]]


def read_flipped(run_dir: str | Path, rows_file: str) -> pd.DataFrame:
    """The flipped rows of one edit (rows_file as stress.json names it), with a clear error. A packed
    file without its text gets it back from the data (restore_flipped); without the data the text
    columns come back empty and `frame.attrs["text_missing"]` says why."""
    from cmcs_core.runs import RunReadError

    path = Path(run_dir) / rows_file
    try:
        rows = pd.read_csv(path, keep_default_na=False, dtype={"index": str})
    except FileNotFoundError as err:
        raise RunReadError(f"{run_dir}: missing {rows_file} "
                           f"(rerun `python -m cmcs_core stress --run {run_dir}`)") from err
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise RunReadError(f"{path}: cannot read ({err})") from err
    if all(c in rows for c in FLIPPED_BY_REFERENCE):
        return rows
    try:
        return restore_flipped(rows, run_dir, rows_file)
    except (OSError, ValueError, KeyError) as err:
        for name in FLIPPED_BY_REFERENCE:
            rows[name] = ""
        rows.attrs["text_missing"] = f"the tweets are kept by reference and could not be read back: {err}"
        return rows
