"""Training: a CPU smoke run on real data and its run folder, the bi-level loop's log, model
selection, save/load, resume, atomic writes, the features cache, and the CLI."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fake_runs import fake_run
from safetensors.torch import load_file

from cmcs_core import cli
from cmcs_core.checkpoint import trainable_state
from cmcs_core.config import METHOD_TITLES, RunConfig
from cmcs_core.data.tsv import LABEL_NAMES, read_tsv, write_tsv
from cmcs_core.encoders.text import TextEncoder
from cmcs_core.evaluate import predict_tensors
from cmcs_core.io import atomic_save, atomic_write_text
from cmcs_core.runs.formats import read_masks, read_table
from cmcs_core.train.trainer import BATCH_LOG_COLUMNS, Trainer, train

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = [
    "config.json", "train.log", "batches.parquet", "epochs.csv", "metrics.json", "best.safetensors", "last_state.pt",
    *(f"{kind}_{tag}.{ext}" for tag in ("dev", "test")
      for kind, ext in (("predictions", "parquet"), ("masks", "parquet"), ("features", "npz"))),
]
PROBS = [f"{k}_{n}" for k in ("p_text", "p_image", "p_final") for n in LABEL_NAMES]
TIMING = ["seconds", "samples_per_s"]


def _tmp_leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.fixture(scope="module")
def predictor(tiny_run):
    from cmcs_core.inference import Predictor

    return Predictor(tiny_run["dir"])


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory, cmcs_cache, tiny_config_factory) -> Path:
    """w/o CMS on 16 real samples, one full batch per epoch, 12 epochs."""
    cfg = tiny_config_factory("wo_cms", epochs=12, head_lr=5e-3, warmup_ratio=0.0, eval_test_each_epoch=False)
    cfg.data = dataclasses.replace(cfg.data, max_train_samples=16, max_eval_samples=16, dev_subset_size=16)
    run_dir = tmp_path_factory.mktemp("runs") / "overfit_wo_cms"
    train(cfg, run_dir, progress=False)
    return run_dir


# -- the smoke run -------------------------------------------------------------------------
def test_smoke_training_writes_every_file(tiny_run) -> None:
    """Its time is measured by bench/bench_smoke.py, not asserted here."""
    run = tiny_run["dir"]
    for name in RUN_FILES:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    saved, asked = RunConfig.load(run / "config.json"), tiny_run["cfg"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert saved.train.precision == metrics["precision"]["used"] in ("fp32", "bf16")
    assert saved == dataclasses.replace(asked, train=dataclasses.replace(asked.train, precision=saved.train.precision))
    assert "done: dev acc" in (run / "train.log").read_text()
    batches = read_table(run / "batches.parquet")
    assert list(batches.columns) == BATCH_LOG_COLUMNS
    steps = math.ceil(128 / 16)
    assert len(batches) == 2 * steps
    assert batches.epoch.tolist() == [1] * steps + [2] * steps
    assert batches.step.tolist() == list(range(steps)) * 2
    assert batches.global_step.tolist() == list(range(1, 2 * steps + 1))
    assert np.isfinite(batches[["eff_t", "eff_v", "phi_t", "phi_v", "L_t", "L_v", "loss"]].to_numpy()).all()
    epochs = pd.read_csv(run / "epochs.csv")
    assert epochs.epoch.tolist() == [1, 2]
    assert {"train_loss", "dev_acc", "dev_f1", "test_acc", "test_f1", *TIMING} <= set(epochs.columns)
    assert metrics["method"] == "cmcs" and metrics["visual_source"] == "captions"
    assert metrics["dev"]["n"] == 64 and metrics["test"]["n"] == 64 and metrics["epochs_run"] == 2
    assert not _tmp_leftovers(run)  # atomic writes leave no temporary files


def test_batch_log_follows_algorithm_1(tiny_run) -> None:
    """Upper steps every H lower steps; phi moves only there; logged weights are softplus(alpha*eff)."""
    b = read_table(tiny_run["dir"] / "batches.parquet")
    H = tiny_run["cfg"].train.H
    upper = b.global_step % H == 0
    assert b.hypergrad_norm[upper].notna().all() and b.hypergrad_norm[~upper].isna().all()
    assert (b.hypergrad_norm[upper] > 0).all()
    both = b[upper]
    np.testing.assert_allclose(both.hypergrad_norm, np.hypot(both.hypergrad_alpha, both.hypergrad_beta), rtol=1e-5)
    init = tiny_run["cfg"].model.alpha_init
    assert b.alpha[0] == pytest.approx(init) and b.beta[0] == pytest.approx(init)
    for name in ("alpha", "beta"):
        moved = b[name].diff().iloc[1:].to_numpy() != 0
        np.testing.assert_array_equal(moved, upper.iloc[:-1].to_numpy())  # after, and only after, an upper step
        assert b[name].iloc[-1] != pytest.approx(init, abs=1e-4)
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    np.testing.assert_allclose(b.phi_t, softplus(b.alpha * b.eff_t), rtol=1e-5)
    np.testing.assert_allclose(b.phi_v, softplus(b.beta * b.eff_v), rtol=1e-5)
    np.testing.assert_allclose(b.loss, b.phi_t * b.L_t + b.phi_v * b.L_v, rtol=1e-5)


def test_model_selection_on_dev_and_the_checkpoint(tiny_run) -> None:
    run = tiny_run["dir"]
    epochs = pd.read_csv(run / "epochs.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    best = int(epochs.dev_acc.idxmax())  # first maximum
    assert metrics["best_epoch"] == epochs.epoch[best]
    assert metrics["dev"]["acc"] == pytest.approx(epochs.dev_acc[best])
    assert metrics["test"]["acc"] == pytest.approx(epochs.test_acc[best])
    assert metrics["test"]["macro_f1"] == pytest.approx(epochs.test_f1[best])
    state = load_file(str(run / "best.safetensors"))
    assert {"alpha", "beta"} <= set(state)
    assert not any(k.startswith("text_tower.") for k in state)  # frozen encoder comes from the package


def test_prediction_files_are_consistent(tiny_run, data_dir: Path) -> None:
    run = tiny_run["dir"]
    pred = read_table(run / "predictions_test.parquet")
    real = read_tsv(data_dir / "twitter2015" / "test.tsv")[:64]
    assert pred["index"].astype(str).tolist() == [s.index for s in real]
    assert pred.label.tolist() == [s.label for s in real]
    assert pred.line.tolist() == [s.line for s in real]
    assert set(PROBS) <= set(pred.columns)
    s = pred.s.to_numpy()
    assert ((s >= 0) & (s <= 1)).all() and s.std() > 0  # caption/prompt similarity, per sample
    for name in LABEL_NAMES:
        fused = (1 - s) * pred[f"p_text_{name}"] + s * pred[f"p_image_{name}"]
        np.testing.assert_allclose(pred[f"p_final_{name}"], fused, atol=2e-5)
    for k in ("p_text", "p_image", "p_final"):
        np.testing.assert_allclose(pred[[f"{k}_{n}" for n in LABEL_NAMES]].sum(axis=1), 1.0, atol=5e-5)
    final = pred[[f"p_final_{n}" for n in LABEL_NAMES]].to_numpy()
    assert (pred.pred == final.argmax(1)).all()
    assert (pred.correct == (pred.pred == pred.label)).all()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["acc"] == pytest.approx(pred.correct.mean())

    masks = read_masks(run / "masks_test.parquet")["samples"]
    assert len(masks) == 64
    for entry in masks:
        assert len(entry["tokens"]) == len(entry["mask"]) and entry["tokens"][0] == "[CLS]"
        assert len(entry["visual_tokens"]) == len(entry["visual_mask"])
        values = np.array(entry["mask"] + entry["visual_mask"])
        assert ((values > 0) & (values < 1)).all()
    feats = np.load(run / "features_test.npz")
    assert set(feats.files) == {"text_raw_pooled", "text_bar_pooled", "visual_raw_pooled", "visual_bar_pooled"}
    assert all(feats[k].shape == (64, 384) for k in feats.files)


# -- save and load ---------------------------------------------------------------------------
def test_saved_model_reproduces_the_test_predictions(tiny_run, predictor) -> None:
    split = predictor.pipe.load_split("test", 64)
    data = predictor.tensors(split.samples, split.visual_text)  # fresh extraction, no cache
    res = predict_tensors(predictor.model, data, predictor.pipe.device, precision=predictor.pipe.precision.used)
    csv = read_table(tiny_run["dir"] / "predictions_test.parquet")
    for key in ("p_text", "p_image", "p_final"):
        np.testing.assert_allclose(res[key], csv[[f"{key}_{n}" for n in LABEL_NAMES]].to_numpy(), atol=1e-4)
    np.testing.assert_allclose(res["s"], csv.s, atol=1e-5)
    # One sample through Predictor.predict (batch of one: other padding, same answer up to rounding; bf16
    # keeps 8 bits of mantissa, and the padded width changes how its sums are blocked)
    i = 5
    one = predictor.predict(split.samples[i].tweet, split.samples[i].target, caption=split.visual_text[i])
    np.testing.assert_allclose(one["p_final"], csv.loc[i, [f"p_final_{n}" for n in LABEL_NAMES]].to_numpy(
        dtype=float), atol=1e-3 if predictor.pipe.precision.used == "fp32" else 5e-3)
    assert one["label"] == LABEL_NAMES[int(csv.pred[i])]
    assert len(one["tokens"]) == len(one["token_mask"])
    # The loaded weights are exactly the checkpoint.
    saved = load_file(str(tiny_run["dir"] / "best.safetensors"))
    for k, v in trainable_state(predictor.model).items():
        assert torch.equal(v, saved[k]), k


def test_per_sample_effect_in_the_predictions_is_recomputed_from_the_checkpoint(tiny_run, predictor) -> None:
    """effect_t in predictions_test is exp(CE of the raw text features - CE of the masked ones) per
    sample (Eq. 7 for one sample, clamped like the batch effect): recomputed here from the checkpoint's
    logits with a hand-written cross-entropy, so a flipped sign or a lost clamp shows."""
    split = predictor.pipe.load_split("test", 64)
    data = predictor.pipe.tensors(split, progress=False)
    rows = torch.arange(8)
    model = predictor.model.eval()
    with torch.no_grad():
        out = model(data.batch(rows, predictor.pipe.device))
    y = data.labels[rows]

    def ce(logits: torch.Tensor) -> torch.Tensor:
        return -logits.double().log_softmax(-1)[torch.arange(len(y)), y]

    gap = ce(out["text_logits_raw"]) - ce(out["text_logits"])
    expected = gap.clamp(-10, 10).exp().numpy()
    saved = read_table(tiny_run["dir"] / "predictions_test.parquet").effect_t.to_numpy()[:8]
    np.testing.assert_allclose(saved, expected, rtol=1e-4)
    assert ((saved > 1) == (gap.numpy() > 0)).all()  # above 1 exactly where the masked features fit better


# -- resume ----------------------------------------------------------------------------------
class _Interrupted(RuntimeError):
    pass


def test_interrupted_run_resumes_from_its_last_epoch(tiny_config_factory, cmcs_cache, tmp_path, monkeypatch) -> None:
    """Killed after epoch 2 of 3 at a point where the upper level is inside a permutation of D_dev,
    then resumed: the same run as the uninterrupted one, number for number."""
    from run_equality import assert_same_run

    cfg = tiny_config_factory("cmcs", epochs=3, H=3)
    # 8 steps an epoch, an upper step every 3: 5 dev batches of 16 by the end of epoch 2, from a D_dev
    # of 48 rows (3 batches a permutation) -- the resumed run picks up inside the second permutation.
    cfg.data = dataclasses.replace(cfg.data, dev_subset_size=48)
    ref = tmp_path / "uninterrupted"
    train(cfg, ref, progress=False)
    run = tmp_path / "resumed"
    original = Trainer._end_epoch

    def crash_after_second_epoch(self, epoch, *args):
        original(self, epoch, *args)
        if epoch == 2:
            raise _Interrupted

    monkeypatch.setattr(Trainer, "_end_epoch", crash_after_second_epoch)
    with pytest.raises(_Interrupted):
        train(cfg, run, progress=False)
    monkeypatch.undo()
    first = read_table(run / "batches.parquet")
    assert set(first.epoch) == {1, 2} and not (run / "metrics.json").exists()
    assert not _tmp_leftovers(run)
    sampler = torch.load(run / "last_state.pt", weights_only=False)["dev_sampler"]
    assert first.hypergrad_norm.notna().sum() == 5 and sampler["pos"] % len(sampler["order"]) != 0

    # A different config must not reuse the folder.
    other = RunConfig.from_dict(cfg.to_dict())
    other.train.seed += 1
    with pytest.raises(ValueError, match="another config"):
        Trainer(other, run, progress=False)

    train(cfg, run, progress=False)
    assert "resumed after epoch 2" in (run / "train.log").read_text()
    batches = read_table(run / "batches.parquet")
    pd.testing.assert_frame_equal(batches[batches.epoch <= 2], first)  # epochs 1-2 kept as they were
    assert_same_run(run, ref)
    assert not _tmp_leftovers(run)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "state.pt", "old")

    def half_write(path: str) -> None:
        Path(path).write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(target, half_write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


# -- w/o CMS in training; a tiny subset is overfit ---------------------------------------------
def test_wo_cms_takes_no_upper_step(overfit_run: Path) -> None:
    b = read_table(overfit_run / "batches.parquet")
    assert len(b) == 12
    assert b.hypergrad_norm.isna().all() and b.hypergrad_alpha.isna().all()
    init = RunConfig.load(overfit_run / "config.json").model.alpha_init
    assert (b.alpha == np.float32(init)).all() and (b.beta == np.float32(init)).all()
    assert (b.phi_t == 1).all() and (b.phi_v == 1).all()
    np.testing.assert_allclose(b.loss, b.L_t + b.L_v, rtol=1e-5)


def test_loss_decreases_on_a_tiny_subset(overfit_run: Path) -> None:
    b = read_table(overfit_run / "batches.parquet")
    assert b.L_t.iloc[-3:].mean() < 0.6 * b.L_t.iloc[:3].mean(), b.L_t.tolist()
    assert b.L_v.iloc[-3:].mean() < b.L_v.iloc[:3].mean(), b.L_v.tolist()
    assert b.loss.iloc[-1] < b.loss.iloc[0]


# -- the features cache ----------------------------------------------------------------------------
def test_second_extraction_loads_from_the_cache(tiny_run, predictor, cmcs_cache: Path, monkeypatch) -> None:
    pipe = predictor.pipe
    split = pipe.load_split("train", 128)  # extracted by the smoke run
    cached_files = sorted((cmcs_cache / "features").glob("*.pt"))
    assert {p.name.split("-")[0] for p in cached_files} == {"text", "caption"}
    fresh = pipe.tensors(split, cache=False)

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although the features are cached")

    monkeypatch.setattr(TextEncoder, "hidden_at", no_encoder)
    monkeypatch.setattr(TextEncoder, "sentence_embedding", no_encoder)
    again = pipe.tensors(split)
    assert torch.equal(again.text.hidden, fresh.text.hidden)
    assert torch.equal(again.visual.tokens, fresh.visual.tokens)
    torch.testing.assert_close(again.visual.fusion_sim, fresh.visual.fusion_sim)
    assert sorted((cmcs_cache / "features").glob("*.pt")) == cached_files  # nothing new written
    # The key covers the max length and the samples: a change misses the cache.
    with pytest.raises(AssertionError, match="encoder ran"):
        pipe.tensors(pipe.load_split("train", 127))
    pipe.cfg.encoder.max_length = 32
    try:
        with pytest.raises(AssertionError, match="encoder ran"):
            pipe.tensors(split)
    finally:
        pipe.cfg.encoder.max_length = tiny_run["cfg"].encoder.max_length
    assert not _tmp_leftovers(cmcs_cache)


# -- the CLI ------------------------------------------------------------------------------------
@pytest.mark.parametrize("command,flag", [("train", "--finetune-layers"), ("evaluate", "--split"),
                                          ("predict", "--caption"), ("table", "--output")])
def test_cli_help(command: str, flag: str) -> None:
    done = subprocess.run([sys.executable, "-m", "cmcs_core", command, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert flag in done.stdout


def test_cli_evaluate_on_an_edited_tsv(tiny_run, data_dir: Path, tmp_path: Path, capsys) -> None:
    samples = read_tsv(data_dir / "twitter2015" / "test.tsv")[:10]
    edited = [dataclasses.replace(s, label=(s.label + 1) % 3) if i in (2, 7) else s for i, s in enumerate(samples)]
    tsv = write_tsv(tmp_path / "my_edit.tsv", edited)
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--run", str(tiny_run["dir"]), "--split", str(tsv), "--output-dir", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 10 and metrics["file"] == str(tsv) and metrics["dropped"] == 0
    (name,) = [f.name for f in out.glob("predictions_*.parquet")]  # stem + content digest: no collisions
    assert name.startswith("predictions_my_edit-")
    pred = read_table(out / name)
    assert pred.label.tolist() == [s.label for s in edited]
    assert metrics["acc"] == pytest.approx((pred.pred == pred.label).mean())
    # Same model, same inputs: the same probabilities as the run's own test predictions.
    ref = read_table(tiny_run["dir"] / "predictions_test.parquet").iloc[:10]
    cols = [f"p_final_{n}" for n in LABEL_NAMES]
    np.testing.assert_allclose(pred[cols].to_numpy(), ref[cols].to_numpy(), atol=1e-3)


def test_cli_errors_are_clean(tiny_run, tmp_path: Path, capsys) -> None:
    assert cli.main(["evaluate", "--run", str(tmp_path / "no_run")]) == 2
    assert "not a finished run" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("index\tl\ti\tt\tt\n1\t9\ta.jpg\t$T$ x\tA\n")
    assert cli.main(["evaluate", "--run", str(tiny_run["dir"]), "--split", str(bad)]) == 2
    assert f"{bad}:2" in capsys.readouterr().err


def test_cli_table_prints_markdown_rows(tiny_run, overfit_run: Path, capsys) -> None:
    assert cli.main(["table", str(tiny_run["dir"]), str(overfit_run)]) == 0
    text = capsys.readouterr().out
    # The overfit run trains its heads at lr 5e-3: another regime, so a block of its own.
    blocks = {b.splitlines()[0].split(" — ")[1]: b for b in text.split("### Table 1")[1:]}
    default, fast = "minilm, frozen, visual = captions, fp32", "minilm, frozen, visual = captions, fp32, head lr 0.005"
    assert set(blocks) == {default, fast}
    assert all("### Table 2" in b for b in blocks.values())

    def rows(block: str) -> dict[str, list[str]]:
        return {c[1]: c for c in ([x.strip() for x in line.split("|")] for line in block.splitlines()
                                  if line.startswith("| "))}

    ours, theirs = rows(blocks[default]), rows(blocks[fast])
    acc = 100 * tiny_run["metrics"]["test"]["acc"]
    f1 = 100 * tiny_run["metrics"]["test"]["macro_f1"]
    assert ours["**CMCS**"][2:4] == [f"{acc:.1f}", f"{f1:.1f}"]  # one seed: no ± to pretend a spread
    assert ours["CMCS"][2] == f"{acc:.1f}"  # Table 2 row
    wo_cms = json.loads((overfit_run / "metrics.json").read_text())["test"]["acc"]
    assert theirs[METHOD_TITLES["wo_cms"]][2] == f"{100 * wo_cms:.1f}"
    assert ours[METHOD_TITLES["wo_cms"]][2] == theirs["CMCS"][2] == "–"  # never averaged across
    for method in ("wo_visual", "wo_mfs", "wo_mfs_cms"):
        assert ours[METHOD_TITLES[method]][2] == "–"  # no runs: no numbers
    published = rows(text.split("### Table 1")[0])  # once, above every regime
    assert "78.0" in published["CapTrBERT"] and published["CMCS"][2] == "79.7"
    assert text.count("CapTrBERT") == 1 and "(published)" not in text
    assert ours["**CMCS**"][6] == "1/–"  # seeds per dataset (Twitter2015/Twitter2017)


def test_a_regime_without_cmcs_or_ablation_runs_prints_no_table_of_dashes() -> None:
    from cmcs_core.report.tables import markdown_tables, runs_frame

    runs = [fake_run("text_only", s, 0.7 + s / 100) for s in (1, 2)]  # augmented text-only: no CMCS beside it
    runs += [fake_run("text_only", 1, 0.6, finetune_layers=2), fake_run("wo_mfs", 1, 0.65, finetune_layers=2)]
    blocks = {b.splitlines()[0].split(" — ")[1]: b for b in markdown_tables(runs_frame(runs)).split("### Table 1")[1:]}
    frozen, top2 = blocks["minilm, frozen, visual = captions, fp32"], blocks["minilm, fine-tuned (top 2 layers), visual = captions, fp32"]
    assert "### Table 2" not in frozen and "No CMCS or ablation run in this regime" in frozen
    assert "71.5 ± 0.7" in frozen  # Table 1 is still printed
    assert "### Table 2" in top2 and "| w/o MFS | 65.0 | 65.0 | – | – | 1/– |" in top2


def test_paired_differences_pair_by_seed_and_regime() -> None:
    from cmcs_core.report.tables import paired_differences, runs_frame

    rng = np.random.default_rng(0)
    runs = []
    for ft in (0, -1):  # two regimes: never paired with each other
        for seed in (3, 1, 2):  # out of order on purpose
            for method in ("cmcs", "wo_cms", "text_only"):
                runs.append(fake_run(method, seed, float(rng.uniform(0.5, 0.8)), finetune_layers=ft))
    runs = runs[:-1]  # the last (ft=-1, seed 2, text_only) run is missing
    text = paired_differences(runs_frame(runs))
    acc = {(r.cfg.encoder.finetune_layers, r.cfg.train.seed, r.method): 100 * r.metrics["test"]["acc"] for r in runs}
    table: dict[tuple[str, str], list[str]] = {}  # (regime, method title) -> cells of its row
    for block in text.split("### ")[1:]:
        reg = block.splitlines()[0].split(" — ")[1]
        for line in block.splitlines():
            cells = [c.strip() for c in line.split("|")]
            if len(cells) > 5 and cells[2] == "twitter2015":
                table[(reg, cells[1])] = cells
    for ft, reg in ((0, "minilm, frozen, visual = captions, fp32"), (-1, "minilm, fine-tuned (all layers), visual = captions, fp32")):
        for method, title in (("wo_cms", "w/o CMS"), ("text_only", "Text-only baseline")):
            seeds = [s for s in (1, 2, 3) if (ft, s, method) in acc]
            diffs = [acc[(ft, s, "cmcs")] - acc[(ft, s, method)] for s in seeds]
            cells = table[(reg, title)]
            assert cells[3] == " ".join(f"{d:+.1f}" for d in diffs)
            assert cells[4] == f"{np.mean(diffs):+.2f}"
            assert cells[5] == f"{sum(d > 0 for d in diffs)}/{len(diffs)}"
    rows = [line.split("|")[1].strip() for line in text.splitlines() if "| twitter2015 |" in line]
    assert rows[:2] == ["Text-only baseline", "w/o CMS"]  # the one method order: the baseline first
    assert paired_differences(runs_frame([])) == "No finished runs found.\n"


def test_runs_with_other_learning_rates_are_another_regime() -> None:
    from cmcs_core.report.regime import Regime
    from cmcs_core.report.tables import runs_frame, summarise

    runs = [fake_run("cmcs", 1, 0.60, 0.5, finetune_layers=2), fake_run("cmcs", 2, 0.62, 0.5, finetune_layers=2),
            fake_run("cmcs", 1, 0.70, 0.5, finetune_layers=2, head_lr=1e-4)]
    assert Regime.of(runs[0].cfg).title == "minilm, fine-tuned (top 2 layers), visual = captions, fp32"
    assert Regime.of(runs[2].cfg).title == "minilm, fine-tuned (top 2 layers), visual = captions, fp32, head lr 0.0001"
    summary = summarise(runs_frame(runs))
    means = dict(zip(summary.regime.map(str), summary.acc_mean))
    assert means == pytest.approx({Regime.of(runs[0].cfg).title: 61.0, Regime.of(runs[2].cfg).title: 70.0})
