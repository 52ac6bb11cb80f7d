"""Helpers shared by the timing benchmarks: timers, medians, memory, the results file (imported
as `_common` by the scripts beside it: `python bench/<script>.py` puts this folder first on the path)."""
from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from cmcs_core import provenance

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": [round(v, 5) for v in values]}


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result). With one torch thread the CPU time is
    the cost on a dedicated core, robust to other users of a shared machine."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def time_alternating(variants: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Time every variant `repeats` times, in the given order on even repeats and reversed on odd ones,
    so drift in the machine's load (or a warm cache) does not always favour the same variant.
    Returns {variant: {"wall": [...], "cpu": [...]}}; summarise with `summary`."""
    out = {name: {"wall": [], "cpu": []} for name in variants}
    names = list(variants)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            wall, cpu, _ = timed(variants[name])
            out[name]["wall"].append(wall)
            out[name]["cpu"].append(cpu)
    return out


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """fp32 GFLOP/s of a large square torch.matmul at the current thread count: the compute bound."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        w, c, _ = timed(lambda: torch.matmul(a, b))
        wall.append(2 * n**3 / w / 1e9)
        cpu.append(2 * n**3 / c / 1e9)
    return {"n": n, "threads": torch.get_num_threads(), "gflops_wall": statistics.median(wall),
            "gflops_cpu": statistics.median(cpu), "gflops_wall_max": max(wall)}


def write_result(name: str, payload: dict[str, Any], path: Path | None = None) -> Path:
    """bench/results/<name>.json (or `path`), with the machine, load, date and command first."""
    return provenance.write_result(path or RESULTS / f"{name}.json", payload)
