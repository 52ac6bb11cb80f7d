"""Opt-in epoch selection (--select-on dev_acc | dev_f1 | dev_loss): the rule, the logged dev
loss, and the trainer keeping the epoch the chosen figure picks (scripted dev figures)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fake_runs import fake_run
from sklearn.metrics import log_loss

from cmcs_core.config import TrainConfig
from cmcs_core.report.regime import Regime
from cmcs_core.report.tables import headline, headline_regimes, runs_frame
from cmcs_core.runs.formats import read_table
from cmcs_core.train import trainer as trainer_mod
from cmcs_core.train.trainer import SELECT_ON, Trainer, dev_loss, improves, train

ROWS = [  # epoch-wise dev figures; the picks differ by rule and include ties
    {"epoch": 1, "dev_acc": 0.60, "dev_f1": 0.50, "dev_loss": 0.90},
    {"epoch": 2, "dev_acc": 0.70, "dev_f1": 0.55, "dev_loss": 0.70},
    {"epoch": 3, "dev_acc": 0.70, "dev_f1": 0.65, "dev_loss": 0.60},
    {"epoch": 4, "dev_acc": 0.65, "dev_f1": 0.65, "dev_loss": 0.60},
]


def _pick(key: str, rows: list[dict]) -> int:
    best: dict = {"epoch": 0}
    for row in rows:
        if improves(key, row[key], best):
            best = {"epoch": row["epoch"], **{k: row[k] for k in SELECT_ON}}
    return best["epoch"]


def test_each_rule_keeps_its_first_best_epoch() -> None:
    assert TrainConfig().select_on == "dev_acc"  # the default is unchanged
    assert _pick("dev_acc", ROWS) == 2  # tie with epoch 3: the earlier one
    assert _pick("dev_f1", ROWS) == 3
    assert _pick("dev_loss", ROWS) == 3  # lowest, tie with epoch 4
    with pytest.raises(ValueError, match="select_on"):
        improves("test_acc", 1.0, {"epoch": 0})


def test_dev_loss_is_the_cross_entropy_of_the_fused_prediction() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=50).astype(np.float32)
    labels = rng.integers(0, 3, size=50)
    assert dev_loss(probs, labels) == pytest.approx(log_loss(labels, probs, labels=[0, 1, 2]), rel=1e-5)
    assert np.isfinite(dev_loss(np.eye(3)[[1, 1]], np.array([0, 1])))  # a zero probability stays finite


def test_regime_names_another_selection_rule() -> None:
    plain = Regime("minilm", 0, "captions")
    assert "chosen on" not in Regime("minilm", 0, "captions", select_on="dev_acc").title == plain.title
    assert Regime("minilm", 0, "captions", select_on="dev_loss").title.endswith("epoch chosen on dev loss")
    assert Regime.of(fake_run("cmcs", 1, 0.5, select_on="dev_loss").cfg).title.endswith("epoch chosen on dev loss")


def test_unknown_rule_fails_before_the_run_folder_is_made(tiny_config_factory, tmp_path) -> None:
    with pytest.raises(ValueError, match="select_on"):  # refused when the config is built
        tiny_config_factory("wo_cms", select_on="best_test")
    cfg = tiny_config_factory("wo_cms")
    cfg.train.select_on = "best_test"  # changed by hand after: the trainer refuses it
    with pytest.raises(ValueError, match="select_on"):
        Trainer(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_trainer_keeps_the_epoch_with_the_lowest_dev_loss(tiny_config_factory, cmcs_cache, one_thread,
                                                         tmp_path, monkeypatch) -> None:
    """Scripted dev figures: accuracy rises every epoch, the loss is lowest at epoch 2."""
    accs, losses = iter([0.5, 0.6, 0.7]), iter([0.9, 0.4, 0.6])
    real_metrics = trainer_mod.compute_metrics
    monkeypatch.setattr(trainer_mod, "compute_metrics", lambda y, p: {**real_metrics(y, p), "acc": next(accs)})
    monkeypatch.setattr(trainer_mod, "dev_loss", lambda probs, labels: next(losses))
    cfg = tiny_config_factory("wo_cms", epochs=3, select_on="dev_loss", eval_test_each_epoch=False)
    metrics = train(cfg, tmp_path / "run", progress=False)
    epochs = read_table(tmp_path / "run" / "epochs.csv")
    assert epochs.dev_loss.tolist() == [0.9, 0.4, 0.6] and epochs.dev_acc.tolist() == [0.5, 0.6, 0.7]
    assert metrics["best_epoch"] == 2 and metrics["selected_on"] == "dev_loss"  # dev_acc would keep 3
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["best_epoch"] == 2


def test_regimes_are_ordered_headline_first() -> None:
    """Tables and menus lead with the strongest regime: base-size encoder, end-to-end tuning,
    default knobs; variants of a regime follow it."""
    regimes = [Regime(m, ft, "captions") for m, ft in (("minilm", 0), ("minilm", 2), ("mpnet_fp16", -1), ("minilm", -1))]
    regimes.append(Regime("mpnet_fp16", -1, "captions", head_lr=1e-4))
    regimes.append(Regime("minilm", 0, "captions", select_on="dev_loss"))
    order = [regimes[i] for i in (2, 4, 3, 1, 0, 5)]
    assert sorted(reversed(regimes)) == order
    assert [r.title for r in order][:2] == ["mpnet_fp16, fine-tuned (all layers), visual = captions, fp32",
                                            "mpnet_fp16, fine-tuned (all layers), visual = captions, fp32, head lr 0.0001"]


def test_headline_is_the_strongest_regimes_text_only_and_cmcs() -> None:
    """Home leads with it: means over seeds of the strongest regime, beside the published rows."""
    runs = [fake_run(method, seed, acc, 0.5, text_model=model, finetune_layers=ft)
            for model, ft, method, seed, acc in [("minilm", 0, "cmcs", 1, 0.90), ("mpnet_fp16", -1, "cmcs", 1, 0.70),
                                                 ("mpnet_fp16", -1, "cmcs", 2, 0.72),
                                                 ("mpnet_fp16", -1, "text_only", 1, 0.71)]]
    reg, table = headline(runs_frame(runs))
    assert reg.title.startswith("mpnet_fp16, fine-tuned (all layers)")
    by_method = table.set_index("method")
    assert by_method.loc["CMCS", "twitter2015"] == "71.0 ± 1.4 (2 seeds)"
    assert by_method.loc["Text-only baseline", "twitter2015"] == "71.0 (1 seed)"  # one seed: no ±
    assert by_method.loc["CMCS", "twitter2017"] == "–"
    assert by_method.loc["CapTrBERT (published)", "twitter2017"] == "72.3"
    assert headline(runs_frame([fake_run("cmcs", 1, 0.9, dataset="playground")])) is None
    # Home offers every benchmark regime with text-only or CMCS runs, strongest first, and tables the one chosen
    frame = runs_frame(runs)
    regimes = headline_regimes(frame)
    assert [r.title.split(",")[0] for r in regimes] == ["mpnet_fp16", "minilm"]
    minilm, table = headline(frame, regimes[1])
    assert minilm == regimes[1] and table.set_index("method").loc["CMCS", "twitter2015"] == "90.0 (1 seed)"
    assert headline_regimes(runs_frame([fake_run("cmcs", 1, 0.9, dataset="playground")])) == []
