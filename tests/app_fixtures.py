"""Tiny run folders for the app tests: a 96-row dataset folder (TomBERT TSVs, PNG images,
captions.json) and three runs trained in-process — CMCS on captions, the text-only baseline,
and CMCS on real pixels (EfficientNet-Lite0) — plus one unreadable run folder.

Built once per pytest session (a marker file in the session's base temp dir), whichever test
module asks first.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "grey": (128, 128, 128)}
TARGETS = ["Apple", "Netflix", "Drake", "Uber", "Boston", "Messi"]
WORDS = {0: ["awful", "terrible", "sad"], 1: ["okay", "today", "announced"], 2: ["great", "amazing", "love"]}
RUNS = {"cap_cmcs": ("cmcs", "caption"), "cap_text_only": ("text_only", "caption"),
        "pix_cmcs": ("cmcs", "efficientnet-lite0")}
STRESSED = ("cap_cmcs", "cap_text_only")


def make_png(path: Path, colour: tuple[int, int, int], size: int = 64) -> Path:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), colour)
    ImageDraw.Draw(img).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(255, 255, 255))
    img.save(path)
    return path


def make_dataset(root: Path, seed: int = 0) -> Path:
    """train/dev/test.tsv in TomBERT format, images/*.png and captions.json."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    captions = {}
    colours = list(COLOURS)
    for i in range(12):
        name = f"img{i:02d}.png"
        make_png(root / "images" / name, COLOURS[colours[i % 4]])
        captions[name] = f"a {colours[i % 4]} picture with a white circle number {i}"
    (root / "captions.json").write_text(json.dumps(captions))
    for split, n in (("train", 48), ("dev", 24), ("test", 24)):
        lines = ["index\t#1 Label\t#2 ImageID\t#3 String\t#3 String"]
        for k in range(n):
            label = k % 3
            word = rng.choice(WORDS[label])
            target = rng.choice(TARGETS)
            tweet = f"the show by $T$ was {word} tonight # fun"
            lines.append(f"{k}\t{label}\timg{rng.randrange(12):02d}.png\t{tweet}\t{target}")
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def train_runs(data: Path, runs_dir: Path) -> dict[str, Path]:
    from cmcs_core.playground.run import run_config
    from cmcs_core.train.trainer import train

    out = {}
    for name, (method, visual) in RUNS.items():
        # the playground's small setup, smaller
        cfg = run_config(data, method, seed=0, epochs=2, visual_model=visual, max_length=32, caption_max_length=16,
                         batch_size=16, H=2)
        train(cfg, runs_dir / name, progress=False)
        out[name] = runs_dir / name
    from cmcs_core.stress import run_stress

    for name in STRESSED:  # the Robustness page's data: CMCS and the baseline, same seed
        run_stress(runs_dir / name, progress=False, log=lambda msg: None)
    broken = runs_dir / "broken_run"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text("{ this is not json")
    return out


@pytest.fixture(scope="session")
def app_runs(tmp_path_factory) -> Path:
    """The runs folder (three runs + one broken folder); built once per session."""
    base = tmp_path_factory.getbasetemp() / "app_runs"
    done = base / ".done"
    if not done.is_file():
        data = make_dataset(base / "data")
        train_runs(data, base / "runs")
        done.write_text("ok")
    return base / "runs"


@pytest.fixture(scope="session")
def playground_runs(tmp_path_factory) -> Path:
    """A small playground and what `make app` trains on it: CMCS and the text-only baseline on captions,
    scored against the truth and stress-tested with the planted-truth edits, and CMCS on pixels (not
    stress-tested, as on the first run); built once."""
    base = tmp_path_factory.getbasetemp() / "playground_runs"
    done = base / ".done"
    if not done.is_file():
        from cmcs_core.cli import main

        code = main(["playground", "--data-out", str(base / "data"), "--runs-dir", str(base / "runs"), "--quiet",
                     "--n-train", "90", "--n-dev", "30", "--n-test", "45", "--epochs", "1", "--pixel-epochs", "1"])
        assert code == 0
        done.write_text("ok")
    return base / "runs"


@pytest.fixture(scope="session")
def pixels_stressed_runs(playground_runs, tmp_path_factory) -> Path:
    """playground_runs with the pixel run trained longer (4 epochs: it then leans on the picture's cue enough
    for a recoloured cue to flip some rows) and stress-tested by swap_image_cue, which recolours the cue in
    each picture and keeps the new pictures in the run folder."""
    import shutil

    base = tmp_path_factory.getbasetemp() / "pixels_stressed"
    done = base / ".done"
    if not done.is_file():
        from cmcs_core.cli import main
        from cmcs_core.stress import run_stress

        shutil.rmtree(base / "runs", ignore_errors=True)
        shutil.copytree(playground_runs, base / "runs", ignore=shutil.ignore_patterns("playground_cmcs_pixels_s0"))
        code = main(["playground", "--data-out", str(playground_runs.parent / "data"), "--runs-dir", str(base / "runs"),
                     "--quiet", "--n-train", "90", "--n-dev", "30", "--n-test", "45", "--methods", "cmcs",
                     "--visual-model", "efficientnet-lite0", "--pixel-epochs", "4", "--no-stress"])
        assert code == 0
        run_stress(base / "runs" / "playground_cmcs_pixels_s0", edits=("swap_image_cue",), progress=False,
                   log=lambda msg: None)
        done.write_text("ok")
    return base / "runs"


@pytest.fixture(scope="session")
def target_cue_runs(playground_runs, tmp_path_factory) -> Path:
    """A runs folder with the first run's playground runs and the target-cue preset's three (trained through
    the library call the Tour's button makes, smaller: the target-aware gates still choose hard)."""
    import shutil

    base = tmp_path_factory.getbasetemp() / "target_cue"
    done = base / ".done"
    if not done.is_file():
        from cmcs_core.playground_command import make_playground, preset_arguments
        from cmcs_core.playground.story import preset_data_dir

        shutil.rmtree(base / "runs", ignore_errors=True)
        shutil.copytree(playground_runs, base / "runs")
        args = preset_arguments("target-cue", base / "runs", preset_data_dir(base / "runs", "target-cue"))
        args.n_train, args.n_dev, args.n_test, args.epochs = 240, 60, 60, 3
        make_playground(args)
        done.write_text("ok")
    return base / "runs"
