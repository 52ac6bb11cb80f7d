"""Which arithmetic a run computes in: bf16 autocast where the device does bf16 natively and a
short probe shows it faster, fp32 elsewhere.

A CPU with AMX or AVX512-BF16 multiplies bf16 matrices several times faster than fp32 (6.5x
measured with AMX); a CPU without them emulates bf16, slower than fp32. So `auto` decides per
machine by what it can do *and* what a probe measures, never by assumption. Weights and
optimiser state stay fp32 (autocast only lowers the matrix products), and the bi-level update
(Hessian-vector products, the Neumann series, the power iteration) runs outside autocast.

A trainer writes the precision it used into the run's config.json (auto resolved to fp32 or
bf16), so `train --config` repeats the same arithmetic and a table can say what made a number.
"""
from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cmcs_core.config import CHOICES

PRECISIONS = CHOICES["precision"]  # auto | fp32 | bf16 (the config field's choices)
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # what /proc/cpuinfo lists where a CPU computes bf16 natively
MIN_SPEEDUP = 1.2  # auto takes bf16 only where the probe measures at least this ratio over fp32
PROBE_N = 1024  # one PROBE_N^3 matmul: ~10 ms in fp32 on one core, long enough to time, short enough to run per run


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run computes in and why: recorded in metrics.json and shown by the app."""

    requested: str  # auto | fp32 | bf16
    used: str  # fp32 | bf16
    device: str
    reason: str
    native_bf16: bool
    cpu_flags: tuple[str, ...] = ()
    cpu_capability: str | None = None  # torch's vector ISA: AVX512, AVX2, ...
    probe: dict | None = None  # GFLOP/s of one matmul in each dtype and their ratio

    @property
    def bf16(self) -> bool:
        return self.used == "bf16"

    def autocast(self, device: torch.device | str | None = None):
        """bf16 autocast when this choice is bf16, else a no-op context."""
        return autocast(torch.device(device or self.device), self.used)

    def as_dict(self) -> dict:
        return asdict(self)


def autocast(device: torch.device, used: str):
    """The one autocast of the lab: bf16 on CPU or CUDA when `used` is bf16."""
    if used != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, ...]:
    """The CPU's bf16 flags (amx_bf16, avx512_bf16) as the kernel lists them; none off Linux."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ()
    words = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            words.update(line.split(":", 1)[1].split())
            break
    return tuple(f for f in CPU_BF16_FLAGS if f in words)


def native_bf16(device: torch.device, flags: tuple[str, ...] | None = None) -> bool:
    """Does this device compute bf16 matrix products in hardware? CUDA: compute capability 8.0+;
    CPU: an AMX-BF16 or AVX512-BF16 flag, and a torch build whose oneDNN uses it."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    flags = cpu_flags() if flags is None else flags
    mkldnn = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(flags) and (mkldnn() if mkldnn is not None else True)


def _gflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best of `repeats` timings of one n x n x n matmul (the best is what the hardware can do;
    a loaded machine only adds to the others)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up (allocations, oneDNN primitive creation)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def probe(device: torch.device, n: int = PROBE_N, repeats: int = 3) -> dict:
    """GFLOP/s of one matmul in fp32 and in bf16 on `device`, and bf16's speed-up."""
    fp32 = _gflops(device, torch.float32, n, repeats)
    bf16 = _gflops(device, torch.bfloat16, n, repeats)
    # Three significant figures, not fixed decimals: emulated bf16 can run at 0.05x, where two
    # decimals alone would be 10% off the ratio of the printed GFLOP/s.
    return {"n": n, "fp32_gflops": _significant(fp32), "bf16_gflops": _significant(bf16),
            "speedup": _significant(bf16 / fp32)}


def _significant(x: float, digits: int = 3) -> float:
    """`x` rounded to `digits` significant figures."""
    return float(f"{x:.{digits}g}")


def resolve_precision(requested: str, device: torch.device | str, training: bool = True,
                      flags: tuple[str, ...] | None = None, measure=None) -> PrecisionChoice:
    """The precision a run uses on `device`.

    auto: bf16 where the device is native and the probe measures >= MIN_SPEEDUP, else fp32.
    bf16: refused for training where the device is not native (it would be emulated, slower than
    fp32); reading a bf16 run there (evaluate, predict, the app) still computes in bf16, so its
    predictions are the run's own."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision={requested!r}: choose from {', '.join(PRECISIONS)}")
    device = torch.device(device)
    flags = cpu_flags() if flags is None and device.type == "cpu" else (flags or ())
    native = native_bf16(device, flags)
    common = dict(requested=requested, device=str(device), native_bf16=native, cpu_flags=tuple(flags),
                  cpu_capability=torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else None)
    what = _device_words(device, flags)
    if requested == "fp32":
        return PrecisionChoice(used="fp32", reason="asked for", **common)
    if requested == "bf16":
        if native:
            return PrecisionChoice(used="bf16", reason=f"asked for; {what}", **common)
        if training:
            raise ValueError(f"precision=bf16: {what}, so bf16 would be emulated and slower than fp32; "
                             "use --precision auto (bf16 only where native and faster) or fp32")
        return PrecisionChoice(used="bf16", reason=f"the run's precision, emulated: {what}", **common)
    if not native:
        return PrecisionChoice(used="fp32", reason=f"auto: {what}", **common)
    figures = (measure or probe)(device)
    faster = figures["speedup"] >= MIN_SPEEDUP
    reason = (f"auto: {what}; bf16 matmul {figures['speedup']:.2g}x fp32 "
              f"({'>=' if faster else '<'} {MIN_SPEEDUP}x)")
    return PrecisionChoice(used="bf16" if faster else "fp32", reason=reason, probe=figures, **common)


def _device_words(device: torch.device, flags: tuple[str, ...]) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "no CUDA device"
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        return f"{name} {'computes' if ok else 'does not compute'} bf16 natively"
    if flags:
        return f"this CPU computes bf16 natively ({', '.join(flags)})"
    return f"this CPU ({platform.machine()}) has no AMX-BF16 or AVX512-BF16"
