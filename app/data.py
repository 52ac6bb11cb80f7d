"""Every cached reader of the app, keyed by run path + mtime so a rewritten run is read again.
The reading and computing lives in cmcs_core; a reader's error is shown once, and None returned.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from cmcs_core.runs.reader import Run, RunReadError, load_run, run_stamp, scan_runs

PLAYGROUND_COMMAND = "python -m cmcs_core playground"


@st.cache_data(show_spinner=False, ttl=10)
def scan(root: str) -> tuple[list[Run], list[str]]:
    return scan_runs(root)


def stamp(run: Run) -> float:
    return run_stamp(run.path)


@st.cache_data(show_spinner=False, max_entries=32)
def _predictions(path: str, split: str, _stamp: float) -> pd.DataFrame:
    return load_run(path).predictions(split)


@st.cache_data(show_spinner=False, max_entries=16)
def _batches(path: str, _stamp: float) -> pd.DataFrame:
    return load_run(path).batches()


@st.cache_data(show_spinner=False, max_entries=16)
def _epochs(path: str, _stamp: float) -> pd.DataFrame:
    return load_run(path).epochs()


@st.cache_data(show_spinner=False, max_entries=16)
def _masks(path: str, split: str, _stamp: float) -> dict:
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


@st.cache_resource(show_spinner="Loading the run's encoders and checkpoint…", max_entries=3)
def _predictor(path: str, _stamp: float, threads: int):
    import torch

    from cmcs_core.inference import Predictor

    torch.set_num_threads(threads)
    return Predictor(path, device="cpu")


def predictor(run: Run, threads: int = 1):
    """The run's Predictor, loaded once per checkpoint (one thread: see bench/bench_app.py)."""
    return _predictor(str(run.path), stamp(run), threads)


@st.cache_data(show_spinner="Measuring what the mask does to each token…", max_entries=64)
def _sample_mask_effects(path: str, _stamp: float, split: str, i: int) -> dict:
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
        st.info("What the mask does needs the run's checkpoint (best.safetensors); this folder has none.")
        return None
    try:
        return _sample_mask_effects(str(run.path), stamp(run), split, i)
    except (OSError, ValueError, RuntimeError) as err:
        st.error(f"Cannot measure what the mask does on this sample: {err}")
        return None


@st.cache_data(show_spinner="Reading the playground runs…", max_entries=8, ttl=10)
def _story(paths: tuple[str, ...], root: str, _stamps: tuple[float, ...]) -> pd.DataFrame:
    from cmcs_core.playground.story import story_frame

    return story_frame([load_run(p, root) for p in paths])


def story(runs: list[Run]) -> pd.DataFrame | None:
    """One row per finished playground run (cmcs_core.playground.story.story_frame), or None + the error."""
    done = [r for r in runs if r.finished]
    root = str(done[0].root) if done and done[0].root is not None else ""
    return _or_error(_story, tuple(str(r.path) for r in done), root, tuple(stamp(r) for r in done))


@st.cache_data(show_spinner=False, max_entries=8)
def planted(data_dir: str) -> tuple[dict, dict]:
    """What a playground folder planted and one example image per cue class."""
    from cmcs_core.playground.story import example_images, planted_cues

    return planted_cues(data_dir), example_images(data_dir)


def flipped_rows(run: Run, rows_file: str) -> pd.DataFrame | None:
    return _or_error(_flipped, str(run.path), rows_file, stamp(run))


@st.cache_data(show_spinner=False, max_entries=32)
def _flipped(path: str, rows_file: str, _stamp: float) -> pd.DataFrame:
    return load_run(path).flipped(rows_file)


@st.cache_data(show_spinner=False, max_entries=8)
def example(data_dir: str) -> dict | None:
    """A test row of a playground with its words' roles (cmcs_core.playground.story.example_tweet)."""
    from cmcs_core.playground.story import example_tweet

    return example_tweet(data_dir)


@st.cache_data(show_spinner=False, max_entries=16)
def _machinery(path: str, root: str, _stamp: float) -> dict:
    from cmcs_core.report.machinery import machinery_summary

    return machinery_summary(load_run(path, root or None))


def machinery(run: Run) -> tuple[dict | None, str | None]:
    """cmcs_core.report.machinery.machinery_summary of a run, or (None, why not)."""
    try:
        return _machinery(str(run.path), str(run.root or ""), stamp(run)), None
    except RunReadError as err:
        return None, str(err)


def has_table(run: Run, stem: str) -> bool:
    """Whether the run folder holds table `stem` (batches, epochs, predictions_test…) in either format."""
    from cmcs_core.runs.formats import table_path

    return table_path(run.path, stem) is not None
