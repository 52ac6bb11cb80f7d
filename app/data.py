"""Every cached reader of the app, keyed by run path + stamp (`version`: the run's files' mtimes) so a rewritten
run is read again; never `_stamp`, which Streamlit would leave out of the key.
The reading and computing lives in cmcs_core; a reader's error is shown once, and None returned.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
import streamlit as st

from cmcs_core.command import cli_command
from cmcs_core.runs.files import CHECKPOINT_FILE
from cmcs_core.runs.reader import Run, RunReadError, load_run, run_stamp, scan_runs


def playground_command(runs_dir: str) -> str:
    """The command that makes the first runs (what `make app` runs when it finds none)."""
    return cli_command("playground", "--runs-dir", runs_dir)


@st.cache_resource(show_spinner=False, ttl=10)
def scan(root: str) -> tuple[list[Run], list[str]]:
    """The runs under a folder, one list shared by every visitor (read only: a copy per visitor and rerun, as
    st.cache_data makes, kept 249 runs in each session's state; bench/bench_class.py)."""
    return scan_runs(root)


def stamp(run: Run) -> float:
    return run_stamp(run.path)


@st.cache_data(show_spinner=False, max_entries=32)
def _predictions(path: str, split: str, version: float) -> pd.DataFrame:
    return load_run(path).predictions(split)


@st.cache_data(show_spinner=False, max_entries=16)
def _batches(path: str, version: float) -> pd.DataFrame:
    return load_run(path).batches()


@st.cache_data(show_spinner=False, max_entries=16)
def _epochs(path: str, version: float) -> pd.DataFrame:
    return load_run(path).epochs()


@st.cache_data(show_spinner=False, max_entries=16)
def _masks(path: str, split: str, version: float) -> dict:
    return load_run(path).masks(split)


def _or_error(read, *args):
    """A cached reader's result, or None with the reader's error shown."""
    try:
        return read(*args)
    except RunReadError as err:
        st.error(str(err))
        return None


def predictions(run: Run, split: str = "test") -> pd.DataFrame | None:
    return _or_error(_predictions, str(run.path), split, stamp(run))


def batches(run: Run) -> pd.DataFrame | None:
    return _or_error(_batches, str(run.path), stamp(run))


def epochs(run: Run) -> pd.DataFrame | None:
    return _or_error(_epochs, str(run.path), stamp(run))


def masks(run: Run, split: str = "test") -> dict | None:
    return _or_error(_masks, str(run.path), split, stamp(run))


def load_dataset_image(run: Run, image_id: str):
    """The sample's image from the run's image folder (pixels) or the dataset's images/, else None."""
    from cmcs_core.data.images import load_image

    folder = run.image_dir()
    if folder is None or not (folder / image_id).is_file():
        return None
    try:
        return load_image(folder / image_id)
    except ValueError:
        return None


def freeze_heap() -> None:
    """Move what is loaded so far (the imports, a model) out of the garbage collector's sight: it stays for the
    server's life. Streamlit collects garbage after every script run (runner.postScriptGC); over torch's and a
    model's half a million objects that cost ~0.25 s of CPU per rerun, most of what a class's predictions cost
    the server; frozen, ~2 ms (bench/bench_class.py)."""
    import gc

    gc.collect()
    gc.freeze()


@st.cache_resource(show_spinner="Loading the run's encoders and checkpoint…", max_entries=3)
def _predictor(path: str, version: float, threads: int):
    import torch

    from cmcs_core.inference import Predictor

    torch.set_num_threads(threads)
    predictor = Predictor(path, device="cpu")
    freeze_heap()
    return predictor


def predictor(run: Run, threads: int = 1):
    """The run's Predictor, loaded once per checkpoint (one thread: see bench/bench_app.py)."""
    return _predictor(str(run.path), stamp(run), threads)


# The Inspector's threads: a single short input gains nothing from more, and on a busy 2-core machine two
# threads made a prediction ~10x slower (bench/bench_app.py measures both).
APP_THREADS = int(os.environ.get("CMCS_APP_THREADS", "1"))


def _image(image_bytes: bytes | None):
    from cmcs_core.data.images import load_image

    return load_image(io.BytesIO(image_bytes)) if image_bytes is not None else None


@st.cache_data(show_spinner="Predicting and attributing…", max_entries=64)
def _explain(path: str, version: float, tweet: str, target: str, caption: str | None,
             image_bytes: bytes | None) -> dict:
    from cmcs_core.explain import explain

    pred = _predictor(path, version, APP_THREADS)
    return explain(pred, tweet, target, caption=caption, image=_image(image_bytes))


@st.cache_data(show_spinner="Predicting the edited input…", max_entries=64)
def _predict(path: str, version: float, tweet: str, target: str, caption: str | None,
             image_bytes: bytes | None) -> dict:
    pred = _predictor(path, version, APP_THREADS)
    return pred.predict(tweet, target, caption=caption, image=_image(image_bytes))


def inspect(run: Run, tweet: str, target: str, caption: str | None, image_bytes: bytes | None,
            attribute: bool = True) -> dict:
    """One input through the run (cmcs_core.explain.explain); ValueError for an input it cannot read.
    attribute=False: the prediction only, no attributions (a counterfactual needs no more; seconds saved)."""
    return (_explain if attribute else _predict)(str(run.path), stamp(run), tweet, target, caption, image_bytes)


@st.cache_data(show_spinner="Measuring what the mask does to each token…", max_entries=64)
def _sample_mask_effects(path: str, version: float, split: str, i: int) -> dict:
    from cmcs_core.explain import input_batch, mask_effects

    run = load_run(path)
    row = run.predictions(split).iloc[i]
    entry = run.masks(split)["samples"][i]
    pred = predictor(run)
    image = load_dataset_image(run, str(row.image_id)) if pred.needs_image else None
    if pred.needs_image and image is None:
        raise ValueError(f"image {row.image_id} is not in the run's image folder")
    batch = input_batch(pred, str(row.tweet), str(row.target), entry.get("caption"), image)
    return mask_effects(pred.model, batch, int(row.pred))


def sample_mask_effects(run: Run, split: str, i: int) -> dict | None:
    """What the mask does on one sample of a run's split (needs the checkpoint), or None + a note."""
    if not run.has_checkpoint:
        st.info(f"What the mask does needs the run's checkpoint ({CHECKPOINT_FILE}); this folder has none.")
        return None
    try:
        return _sample_mask_effects(str(run.path), stamp(run), split, i)
    except (OSError, ValueError, RuntimeError) as err:
        st.error(f"Cannot measure what the mask does on this sample: {err}")
        return None


@st.cache_data(show_spinner="Reading the playground runs…", max_entries=8, ttl=10)
def _story(paths: tuple[str, ...], root: str, versions: tuple[float, ...]) -> pd.DataFrame:
    from cmcs_core.playground.story import story_frame

    return story_frame([load_run(p, root) for p in paths])


def story(runs: list[Run]) -> pd.DataFrame | None:
    """One row per finished playground run (cmcs_core.playground.story.story_frame), or None + the error."""
    done = [r for r in runs if r.finished]
    root = str(done[0].root) if done and done[0].root is not None else ""
    return _or_error(_story, tuple(str(r.path) for r in done), root, tuple(stamp(r) for r in done))


def forget_runs() -> None:
    """Read the runs folder again now (a job added runs), not after the scan's time to live."""
    scan.clear()
    _story.clear()


@st.cache_data(show_spinner=False, max_entries=8)
def planted(data_dir: str) -> tuple[dict, dict]:
    """What a playground folder planted and one example image per cue class."""
    from cmcs_core.playground.story import example_images, planted_cues

    return planted_cues(data_dir), example_images(data_dir)


@st.cache_data(show_spinner=False, max_entries=8)
def _captions(path: str, version: float) -> dict[str, str]:
    return load_run(path).captions()


def captions(run: Run) -> dict[str, str]:
    """The caption of each image of the run's dataset ({} without one): what a captions run read."""
    return _captions(str(run.path), stamp(run))


@st.cache_data(show_spinner="Predicting your rows…", max_entries=8)
def _own_rows(path: str, version: float, content: bytes, name: str, drop: bool, max_rows: int | None) -> dict:
    from cmcs_core.own_rows import evaluate_rows, read_rows

    samples = read_rows(content, name)
    if max_rows is not None and len(samples) > max_rows:
        raise ValueError(f"{name} holds {len(samples)} rows: the demo mode takes {max_rows} at most")
    return evaluate_rows(predictor(load_run(path)), samples, name, drop)


def own_rows(run: Run, content: bytes, name: str, drop: bool, max_rows: int | None = None) -> dict:
    """cmcs_core.own_rows.evaluate_rows of an uploaded TSV (in memory: nothing is written)."""
    return _own_rows(str(run.path), stamp(run), content, name, drop, max_rows)


def flipped_rows(run: Run, rows_file: str) -> pd.DataFrame | None:
    return _or_error(_flipped, str(run.path), rows_file, stamp(run))


@st.cache_data(show_spinner=False, max_entries=32)
def _flipped(path: str, rows_file: str, version: float) -> pd.DataFrame:
    return load_run(path).flipped(rows_file)


def kind(data_dir: str) -> str:
    """What a playground folder is (a preset's or the first run's), else its folder name."""
    from cmcs_core.playground.story import playground_kind

    try:
        return playground_kind(planted(data_dir)[0]["config"])
    except (RunReadError, OSError, ValueError, KeyError):
        return Path(data_dir).name


@st.cache_data(show_spinner=False, max_entries=8)
def example(data_dir: str) -> dict | None:
    """A test row of a playground with its words' roles (cmcs_core.playground.story.example_tweet)."""
    from cmcs_core.playground.story import example_tweet

    return example_tweet(data_dir)


@st.cache_data(show_spinner=False, max_entries=16)
def _machinery(path: str, root: str, version: float) -> dict:
    from cmcs_core.report.machinery import machinery_summary

    return machinery_summary(load_run(path, root or None))


def machinery(run: Run) -> tuple[dict | None, str | None]:
    """cmcs_core.report.machinery.machinery_summary of a run, or (None, why not)."""
    try:
        return _machinery(str(run.path), str(run.root or ""), stamp(run)), None
    except RunReadError as err:
        return None, str(err)


def has_table(run: Run, stem: str) -> bool:
    """Whether the run folder holds table `stem` (batches, epochs, predictions_test…)."""
    from cmcs_core.runs.formats import table_path

    return table_path(run.path, stem) is not None
