"""What a measured figure records about how it was made: the machine, its load, the date and the
exact command. Every benchmark and experiment writes its results file through `write_result`."""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from cmcs_core.precision import cpu_flags


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_bf16_flags": list(cpu_flags()),  # amx_bf16 / avx512_bf16: where bf16 is native (cmcs_core/precision.py)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv]),
    }


def write_result(path: str | Path, payload: dict[str, Any]) -> Path:
    """A results file (JSON) with the machine, load, date and command first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2, default=float))
    print(f"wrote {path}")
    return path
