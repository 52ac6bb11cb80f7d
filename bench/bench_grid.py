"""`cmcs grid` on an embedded Ray against the local process pool it replaced, and Ray's own footprint.

1. Footprint (--footprint-repeats fresh processes): seconds from `ray.init()` to a first task's
   answer, seconds to shut down, and the memory (PSS: shared pages split between the processes that
   share them) of Ray's own processes (GCS, raylet, agents, monitors) and of each idle worker.
2. A 12-run frozen grid (2 datasets x 6 methods, seed 1, small splits so an arm takes minutes) run by
   the old pool (bench/grid.py as it stood at commit POOL_COMMIT, taken from git history) and by
   `cmcs grid`, alternating (pool, ray, ray, pool, ...) after a warm-up that fills the feature
   cache. Per arm: wall time, CPU time of the whole process tree, the runs' own epoch seconds
   (metrics.json) and so the overhead per run, and the peak PSS of the tree (Ray's services apart).

    python bench/bench_grid.py                    # bench/results/grid_ray.json
    python bench/bench_grid.py --repeats 1 --footprint-repeats 1 --max-train-samples 160
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import summary, write_result

ROOT = Path(__file__).resolve().parents[1]
POOL_COMMIT = "031471e"  # the last commit with bench/grid.py, the local process pool
DATASETS = ["twitter2015", "twitter2017"]
METHODS = ["cmcs", "wo_visual", "wo_cms", "wo_mfs", "wo_mfs_cms", "text_only"]
RAY_SERVICES = ("gcs_server", "raylet", "ray::DashboardA", "ray::RuntimeEnv")

FOOTPRINT = r"""
import json, os, sys, time
t0 = time.perf_counter()
import ray
t_import = time.perf_counter() - t0
from cmcs_core.sweep.cluster import RayOptions, ray_cluster
opts = RayOptions(cpus=2)
t1 = time.perf_counter()
with ray_cluster(opts):
    t_init = time.perf_counter() - t1
    ping = ray.remote(lambda: os.getpid())
    t2 = time.perf_counter()
    ray.get(ping.remote())
    t_first = time.perf_counter() - t2
    time.sleep(2)  # let the prestarted workers settle
    print("READY", flush=True)
    sys.stdin.readline()  # the parent measures the processes now
    t3 = time.perf_counter()
t_shutdown = time.perf_counter() - t3
print(json.dumps({"import_s": t_import, "init_s": t_init, "first_task_s": t_first, "shutdown_s": t_shutdown}))
"""


def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def comm(pid: int) -> str:
    """A process's name, with Ray's Python helpers told apart by their script."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return "?"
    if name == "python":
        for script, label in (("dashboard.py", "dashboard (minimal)"), ("log_monitor", "log_monitor"),
                              ("monitor.py", "autoscaler monitor")):
            if script in cmdline:
                return label
    return name


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/PID/stat, in clock ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_memory(root: int) -> dict[str, float]:
    """PSS (MB) of a process tree by kind: ray services, ray workers, everything else."""
    mem = {"ray_services": 0.0, "ray_workers": 0.0, "other": 0.0, "ray_processes": 0, "workers": 0}
    for pid in descendants(root):
        if pid == root:
            mem["other"] += pss_mb(pid)
            continue
        name = comm(pid)
        if name.startswith("ray::") and name not in RAY_SERVICES:
            mem["ray_workers"] += pss_mb(pid)
            mem["workers"] += 1
        elif name in RAY_SERVICES or name in ("log_monitor", "autoscaler monitor", "dashboard (minimal)"):
            mem["ray_services"] += pss_mb(pid)
            mem["ray_processes"] += 1
        else:
            mem["other"] += pss_mb(pid)
    return mem


def footprint(env: dict) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", FOOTPRINT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    assert proc.stdout.readline().strip() == "READY"
    per_process = {f"{comm(p)} ({p})": round(pss_mb(p), 1) for p in descendants(proc.pid)}
    mem = tree_memory(proc.pid)
    proc.stdin.write("\n")
    proc.stdin.flush()
    times = json.loads(proc.stdout.read().strip().splitlines()[-1])
    proc.wait()
    return {**times, "pss_mb": mem, "processes": per_process}


def run_arm(cmd: list[str], env: dict, out: Path) -> dict:
    """Run one grid command; wall, CPU of its whole tree, peak PSS sampled every second.

    CPU: the pool's train processes are its children, so the kernel's count of reaped children
    (RUSAGE_CHILDREN) is exact for it; Ray's workers are children of the raylet, which is ended at
    shutdown before it reaps them, so the tree's CPU is also summed from /proc every 0.5 s (the
    last reading of each process: a process loses at most its last half second)."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"ray_services": 0.0, "ray_workers": 0.0, "other": 0.0, "total": 0.0}
    cpu: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        tick = 0
        while not stop.wait(0.5):
            for pid in descendants(proc.pid):
                cpu[pid] = max(cpu.get(pid, 0.0), cpu_seconds(pid))
            tick += 1
            if tick % 2 == 0:
                mem = tree_memory(proc.pid)
                mem["total"] = mem["ray_services"] + mem["ray_workers"] + mem["other"]
                for k in peak:
                    peak[k] = max(peak[k], mem[k])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{err[-3000:]}")
    metrics = [json.loads(p.read_text()) for p in out.glob("*/metrics.json")]
    train_s = [m["train_seconds"] for m in metrics]
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": max(reaped, sum(cpu.values())), "cpu_reaped_s": reaped,
            "cpu_sampled_s": sum(cpu.values()),
            "runs": len(metrics), "sum_train_s": sum(train_s), "peak_pss_mb": peak,
            "loadavg_after": list(os.getloadavg())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each arm")
    p.add_argument("--footprint-repeats", type=int, default=3)
    p.add_argument("--max-train-samples", type=int, default=320)
    p.add_argument("--max-eval-samples", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="runs at a time (pool workers = Ray CPUs)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_grid_"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    env.setdefault("CMCS_CACHE_DIR", str(work / "cache"))
    loadavg_start = list(os.getloadavg())

    fp = [footprint(env) for _ in range(args.footprint_repeats)]
    print(json.dumps({k: fp[-1][k] for k in ("init_s", "first_task_s", "shutdown_s", "pss_mb")}, indent=1))

    pool_script = work / "pool_grid.py"
    pool_script.write_text(subprocess.run(["git", "show", f"{POOL_COMMIT}:bench/grid.py"], cwd=ROOT, check=True,
                                          capture_output=True, text=True).stdout)
    flags = ["--max-train-samples", str(args.max_train_samples), "--max-eval-samples", str(args.max_eval_samples)]
    cmcs = str(Path(sys.executable).with_name("cmcs"))
    arms = {
        "pool": lambda out: [sys.executable, str(pool_script), "--out", str(out), "--datasets", *DATASETS,
                             "--methods", *METHODS, "--seeds", "1", "--epochs", str(args.epochs), "--device", "cpu",
                             "--workers", str(args.workers), "--", *flags],
        "ray": lambda out: [cmcs, "grid", "--out", str(out), "--datasets", *DATASETS, "--methods", *METHODS,
                            "--seeds", "1", "--epochs", str(args.epochs), "--device", "cpu",
                            "--cpus", str(args.workers), *flags],
    }
    run_arm(arms["ray"](work / "warmup"), env, work / "warmup")  # fills the feature cache
    results: dict[str, list[dict]] = {name: [] for name in arms}
    order = list(arms)
    for rep in range(args.repeats):
        for name in order if rep % 2 == 0 else order[::-1]:
            res = run_arm(arms[name](work / name), env, work / name)
            res["overhead_per_run_s"] = (res["wall_s"] * args.workers - res["sum_train_s"]) / max(1, res["runs"])
            results[name].append(res)
            print(name, json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in res.items()}), flush=True)
    payload = {
        "loadavg_start": loadavg_start,
        "grid": {"runs": len(DATASETS) * len(METHODS), "datasets": DATASETS, "methods": METHODS, "seeds": [1],
                 "epochs": args.epochs, "max_train_samples": args.max_train_samples,
                 "max_eval_samples": args.max_eval_samples, "runs_at_a_time": args.workers,
                 "commands": {name: " ".join(make(Path("OUT"))).replace(sys.executable, "python")
                              .replace(cmcs, "cmcs").replace(str(pool_script), f"<git show {POOL_COMMIT}:bench/grid.py>")
                              for name, make in arms.items()}},
        "footprint": {
            "init_s": summary([f["init_s"] for f in fp]), "first_task_s": summary([f["first_task_s"] for f in fp]),
            "shutdown_s": summary([f["shutdown_s"] for f in fp]),
            "ray_services_pss_mb": summary([f["pss_mb"]["ray_services"] for f in fp]),
            "idle_workers_pss_mb": summary([f["pss_mb"]["ray_workers"] for f in fp]),
            "idle_workers": fp[-1]["pss_mb"]["workers"], "processes_last": fp[-1]["processes"],
        },
        "arms": {name: {
            "wall_s": summary([r["wall_s"] for r in rs]), "cpu_s": summary([r["cpu_s"] for r in rs]),
            "overhead_per_run_s": summary([r["overhead_per_run_s"] for r in rs]),
            "sum_train_s": summary([r["sum_train_s"] for r in rs]),
            "peak_pss_mb": rs[-1]["peak_pss_mb"], "repeats": rs} for name, rs in results.items()},
        "paired_wall_ray_minus_pool_s": [r["wall_s"] - q["wall_s"] for r, q in zip(results["ray"], results["pool"])],
        "paired_cpu_ray_minus_pool_s": [r["cpu_s"] - q["cpu_s"] for r, q in zip(results["ray"], results["pool"])],
    }
    write_result("grid_ray", payload)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({name: {k: round(statistics.median([r[k] for r in rs]), 1) for k in
                             ("wall_s", "cpu_s", "overhead_per_run_s")} for name, rs in results.items()}, indent=1))


if __name__ == "__main__":
    main()
