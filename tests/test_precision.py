"""The precision setting (cmcs_core/precision.py): auto takes bf16 only where the device computes it
natively and a probe finds it faster; bf16 is refused for training where it would be emulated; a run
records what it used in config.json and metrics.json, and `train --config` repeats it exactly; features
computed in bf16 are cached apart from fp32 ones; a bf16 training step runs on the CPU and gives other
numbers than fp32, close to them."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cmcs_core import precision as prec
from cmcs_core.config import RunConfig
from cmcs_core.runs.formats import read_table
from cmcs_core.train.trainer import Trainer, train

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _fast(device):
    return {"n": 8, "fp32_gflops": 100.0, "bf16_gflops": 600.0, "speedup": 6.0}


def _slow(device):
    return {"n": 8, "fp32_gflops": 100.0, "bf16_gflops": 40.0, "speedup": 0.4}


def test_auto_is_fp32_where_bf16_is_not_native() -> None:
    choice = prec.resolve_precision("auto", CPU, flags=(), measure=_fast)
    assert (choice.used, choice.native_bf16, choice.probe) == ("fp32", False, None)
    assert "no AMX-BF16 or AVX512-BF16" in choice.reason


def test_auto_follows_the_probe_where_bf16_is_native(monkeypatch) -> None:
    monkeypatch.setattr(prec, "native_bf16", lambda device, flags=None: True)
    fast = prec.resolve_precision("auto", CPU, flags=("amx_bf16",), measure=_fast)
    slow = prec.resolve_precision("auto", CPU, flags=("amx_bf16",), measure=_slow)
    assert (fast.used, fast.probe["speedup"]) == ("bf16", 6.0) and "amx_bf16" in fast.reason
    assert slow.used == "fp32" and "0.4x" in slow.reason


def test_bf16_is_refused_for_training_where_it_is_not_native() -> None:
    with pytest.raises(ValueError, match="no AMX-BF16 or AVX512-BF16.*emulated.*--precision auto"):
        prec.resolve_precision("bf16", CPU, flags=())
    reading = prec.resolve_precision("bf16", CPU, training=False, flags=())  # a bf16 run read on such a CPU
    assert reading.used == "bf16" and "emulated" in reading.reason
    assert prec.resolve_precision("fp32", CPU, flags=()).used == "fp32"
    with pytest.raises(ValueError, match="choose from auto, fp32, bf16"):
        prec.resolve_precision("fp16", CPU)


def test_the_trainer_refuses_bf16_where_it_is_not_native(tiny_config_factory, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(prec, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": ())
    with pytest.raises(ValueError, match="precision=bf16"):
        Trainer(tiny_config_factory("text_only", precision="bf16"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_cpu_flags_read_the_kernels_list(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile amx_bf16\n\nflags : fpu\n")
    assert prec.cpu_flags(info) == ("amx_bf16", "avx512_bf16")
    info.write_text("flags\t: fpu sse2 avx2\n")
    assert prec.cpu_flags(info) == ()
    assert prec.cpu_flags(tmp_path / "missing") == ()


def test_probe_measures_both_dtypes() -> None:
    figures = prec.probe(CPU, n=256, repeats=1)
    assert figures["n"] == 256 and figures["fp32_gflops"] > 0 and figures["bf16_gflops"] > 0
    assert figures["speedup"] == pytest.approx(figures["bf16_gflops"] / figures["fp32_gflops"], rel=0.05)


def test_probe_figures_keep_three_significant_figures() -> None:
    # Emulated bf16 runs near 0.05x fp32 (the CI machine): fixed decimals would round it to 0.06.
    assert prec._significant(0.0563798) == 0.0564
    assert prec._significant(6.4321) == 6.43 and prec._significant(1234.5) == 1230.0


def test_old_configs_read_amp_as_what_it_did() -> None:
    old = RunConfig().to_dict()
    del old["train"]["precision"]
    old["train"]["amp"] = True
    assert RunConfig.from_dict(old).train.precision == "fp32"  # amp was GPU-only: a CPU/auto run was fp32
    old["train"]["device"] = "cuda"
    assert RunConfig.from_dict(old).train.precision == "bf16"
    old["train"]["amp"] = False
    assert RunConfig.from_dict(old).train.precision == "fp32"


def test_features_in_bf16_are_cached_apart(text_encoder, data_dir: Path, cmcs_cache: Path) -> None:
    from cmcs_core.data.dataset import dataset_files, load_split
    from cmcs_core.encoders.features import extract_text

    split = load_split(dataset_files("twitter2015", str(data_dir)), "dev", max_samples=8)
    before = set((cmcs_cache / "features").glob("text-*")) if (cmcs_cache / "features").exists() else set()
    fp32 = extract_text(text_encoder, split, 4, 64, progress=False)
    bf16 = extract_text(text_encoder, split, 4, 64, progress=False, precision="bf16")
    assert len(set((cmcs_cache / "features").glob("text-*")) - before) == 2
    real = fp32.attention_mask.bool()
    a, b = fp32.hidden[real].float(), bf16.hidden[real].float()
    assert not torch.equal(a, b)  # autocast engaged
    assert torch.nn.functional.cosine_similarity(a, b, dim=-1).min() > 0.99  # and close


def test_bf16_training_records_its_precision_and_reproduces(tiny_config_factory, cmcs_cache, tmp_path: Path,
                                                            monkeypatch) -> None:
    """A bf16 smoke training on the CPU (emulated where the CPU is not native: the flags are set so that it
    runs on every machine): config.json and metrics.json say bf16, `train --config` repeats it bit for bit,
    and its predictions differ from the fp32 run's, while agreeing with them on most rows."""
    from run_equality import assert_same_run

    monkeypatch.setattr(prec, "native_bf16", lambda device, flags=None: True)
    cfg = tiny_config_factory("cmcs", precision="bf16")
    metrics = train(cfg, tmp_path / "bf16", progress=False)
    saved = RunConfig.load(tmp_path / "bf16" / "config.json")
    assert saved.train.precision == metrics["precision"]["used"] == "bf16"
    assert json.loads((tmp_path / "bf16" / "metrics.json").read_text())["precision"]["requested"] == "bf16"
    train(saved, tmp_path / "again", progress=False)  # `train --config bf16/config.json`
    assert_same_run(tmp_path / "again", tmp_path / "bf16")

    train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="fp32")), tmp_path / "fp32",
          progress=False)
    p16, p32 = (read_table(tmp_path / r / "predictions_test.parquet") for r in ("bf16", "fp32"))
    probs = [f"p_final_{n}" for n in ("negative", "neutral", "positive")]
    gap = np.abs(p16[probs].to_numpy() - p32[probs].to_numpy())
    assert gap.max() > 0 and gap.mean() < 0.05
    assert (p16.pred == p32.pred).mean() >= 0.8

    # `cmcs analyse precision` pairs the two (the reproduction is a third bf16 run of the same config: not paired
    # twice) and reads the same figures back
    from cmcs_core.report.precision_pairs import precision_markdown, precision_pairs
    from cmcs_core.runs.reader import load_run

    pairs = precision_pairs([load_run(tmp_path / r) for r in ("fp32", "bf16")])
    assert len(pairs) == 1
    row = pairs.iloc[0]
    m16, m32 = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("bf16", "fp32"))
    assert row.test_diff == pytest.approx(m16["test"]["acc"] - m32["test"]["acc"])
    assert row.agreement == pytest.approx((p16.pred == p32.pred).mean())
    assert "| 1 |" in precision_markdown(pairs) and ", fp32" not in row.regime


def test_auto_is_written_as_what_it_resolved_to(tiny_config_factory, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(prec, "native_bf16", lambda device, flags=None: True)
    monkeypatch.setattr(prec, "probe", _fast)
    trainer = Trainer(tiny_config_factory("text_only", precision="auto"), tmp_path / "run", progress=False)
    assert trainer.precision.used == "bf16" and trainer.pipe.precision is trainer.precision
    assert RunConfig.load(tmp_path / "run" / "config.json").train.precision == "bf16"
    monkeypatch.setattr(prec, "probe", _slow)  # the same folder on a machine where auto means fp32: refused
    with pytest.raises(ValueError, match="another config"):
        Trainer(tiny_config_factory("text_only", precision="auto"), tmp_path / "run", progress=False)
