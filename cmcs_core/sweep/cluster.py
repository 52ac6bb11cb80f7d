"""Ray for a grid or a search: an embedded local Ray by default (this machine's CPUs/GPUs, no dashboard,
a small object store), or a running cluster at --address / $RAY_ADDRESS. Everything that can be
checked before a run starts is checked here, with the option that caused the problem named.

Workers run the driver's code: Ray would put the driver's working directory first on every worker's
sys.path, so a grid started from another checkout would train that checkout's cmcs_core. The runtime
environment ships the package the driver imported instead (py_modules), and each task then works in
the driver's directory (enter_driver_cwd), so relative paths mean what they mean to the driver."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cmcs_core
from cmcs_core.data.dataset import DATA_DIR_ENV, resolve_data_dir

ADDRESS_ENV = "RAY_ADDRESS"
AUTH_MODE_ENV = "RAY_AUTH_MODE"
DRIVER_CWD_ENV = "CMCS_DRIVER_CWD"
DRIVER_CODE = Path(cmcs_core.__file__).resolve().parent  # the package this driver imported
# Printed by every new local Ray; an embedded Ray keeps its (default) token authentication without it.
TOKEN_NOTICE = ("ray._private.authentication.authentication_token_setup", "Token authentication is enabled")
# Ray's default object store takes 30% of the RAM; a grid only passes configs and, when workers
# cannot write to --out, finished run folders (which spill to disk past the cap).
DEFAULT_OBJECT_STORE_MB = 256


@dataclass
class RayOptions:
    """Where the runs execute and what each one gets."""

    address: str | None = None  # None: $RAY_ADDRESS, else an embedded local Ray
    cpus: int | None = None  # embedded only: CPUs Ray may use (default: all of this machine's)
    gpus: float | None = None  # embedded only: GPUs Ray may use (default: the ones torch sees)
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0  # 0.1: ten runs share one GPU
    dashboard: bool = False
    object_store_mb: int = DEFAULT_OBJECT_STORE_MB


@dataclass
class Cluster:
    """The Ray that the runs use, once started or joined."""

    embedded: bool
    address: str
    resources: dict[str, float] = field(default_factory=dict)

    def slots(self, opts: RayOptions) -> int:
        """How many runs fit at once with the per-run CPUs and GPUs."""
        fits = [self.resources.get("CPU", 0) / opts.cpus_per_run] if opts.cpus_per_run > 0 else []
        if opts.gpus_per_run > 0:
            fits.append(self.resources.get("GPU", 0) / opts.gpus_per_run)
        return max(1, int(min(fits) + 1e-9)) if fits else 1


def check_options(opts: RayOptions) -> str | None:
    """Refuse impossible options before Ray starts; returns the cluster address to join (None:
    embedded)."""
    address = opts.address or os.environ.get(ADDRESS_ENV) or None
    if opts.cpus_per_run < 0 or opts.gpus_per_run < 0:
        raise ValueError("--cpus-per-run and --gpus-per-run cannot be negative")
    if opts.gpus_per_run > 1 and opts.gpus_per_run != int(opts.gpus_per_run):
        raise ValueError(f"--gpus-per-run {opts.gpus_per_run:g}: a run takes a share of one GPU or whole GPUs")
    if address:
        if opts.cpus is not None or opts.gpus is not None:
            raise ValueError("--cpus/--gpus size an embedded Ray; a cluster at --address has the resources "
                             "its nodes were started with (`ray start --num-cpus/--num-gpus`)")
        check_reachable(address)
        return address
    if opts.cpus is not None and opts.cpus < 1:
        raise ValueError(f"--cpus {opts.cpus}: at least 1")
    if opts.cpus_per_run > local_cpus(opts):
        have = f"the --cpus {opts.cpus}" if opts.cpus is not None else f"this machine's {local_cpus(opts)}"
        raise ValueError(f"--cpus-per-run {opts.cpus_per_run:g} is more than {have} CPU(s) Ray may use")
    if opts.gpus is not None or opts.gpus_per_run > 0:  # torch is imported only when GPUs are asked for
        visible = local_gpus()
        if opts.gpus is not None and opts.gpus > visible:
            raise ValueError(f"--gpus {opts.gpus:g}: this machine has {visible} GPU(s) that torch can use")
        if opts.gpus_per_run > (visible if opts.gpus is None else opts.gpus):
            have = f"this machine has {visible} GPU(s) that torch can use" if opts.gpus is None \
                else f"the local Ray has --gpus {opts.gpus:g}"
            raise ValueError(f"--gpus-per-run {opts.gpus_per_run:g}: {have}")
    return None


def local_cpus(opts: RayOptions) -> int:
    """The CPUs an embedded Ray is started with."""
    return opts.cpus or os.cpu_count() or 1


def local_gpus() -> int:
    """GPUs the runs could use (imported only when asked: torch costs the driver ~300 MB)."""
    import torch

    return torch.cuda.device_count()


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """A host:port (or ray://host:port) that nothing answers on fails here in seconds, instead of
    Ray retrying for a minute."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--address {address!r}: write HOST:PORT (e.g. 10.0.0.5:6379, what `ray start --head` "
                         "printed) or ray://HOST:10001")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ValueError(f"--address {address}: no Ray cluster answers there ({err}); start one with "
                         "`ray start --head`, or leave --address out for a local Ray") from None


@contextlib.contextmanager
def ray_cluster(opts: RayOptions) -> Iterator[Cluster]:
    """Start an embedded Ray or join one; checks the per-run resources against what the cluster
    has, and shuts Ray down (stopping an embedded one's processes) on the way out."""
    address = check_options(opts)
    import ray

    notice = _quiet(*TOKEN_NOTICE) if not address else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="cmcs-ray-") as empty, notice:
        kwargs = dict(logging_level=logging.WARNING, log_to_driver=False, configure_logging=True,
                      runtime_env=driver_runtime_env(empty))
        _init(ray, address, opts, kwargs)
        try:
            cluster = Cluster(embedded=not address, address=address or "local", resources=ray.cluster_resources())
            for opt, key, need in (("--cpus-per-run", "CPU", opts.cpus_per_run),
                                   ("--gpus-per-run", "GPU", opts.gpus_per_run)):
                have = cluster.resources.get(key, 0)
                if need > have:
                    raise ValueError(f"{opt} {need:g}: the Ray cluster has {have:g} {key}(s) in all")
            yield cluster
        finally:
            ray.shutdown()


def driver_runtime_env(empty_dir: str) -> dict:
    """The workers' runtime environment: the driver's cmcs_core (py_modules); an empty working_dir, so
    Ray does not put the driver's working directory ahead of it on sys.path; the driver's directory and
    data root, which the shipped package cannot find beside itself."""
    env_vars = {DRIVER_CWD_ENV: os.getcwd()}
    with contextlib.suppress(FileNotFoundError):  # a wrong $CMCS_DATA_DIR is the runs' to report
        data = resolve_data_dir()
        if data is not None:
            env_vars[DATA_DIR_ENV] = str(data.resolve())
    return {"py_modules": [str(DRIVER_CODE)], "working_dir": empty_dir, "env_vars": env_vars}


def enter_driver_cwd() -> None:
    """On a worker: work in the driver's directory where this node has it (a relative --dataset,
    --image-dir or checkpoint then means what it meant to the driver)."""
    cwd = os.environ.get(DRIVER_CWD_ENV)
    if cwd and Path(cwd).is_dir():
        os.chdir(cwd)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextlib.contextmanager
def _quiet(logger_name: str, prefix: str) -> Iterator[None]:
    """Drop one logger's messages that start with `prefix` while the block runs."""
    logger, drop = logging.getLogger(logger_name), _DropMessage(prefix)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _init(ray, address: str | None, opts: RayOptions, kwargs: dict) -> None:
    """ray.init for a cluster at `address`, else an embedded Ray sized by the options."""
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError) as err:
            hint = ""
            if not os.environ.get(AUTH_MODE_ENV):  # Ray never sends its token to an explicit address unasked
                hint = (f"; if the cluster uses Ray's token authentication, set {AUTH_MODE_ENV}=token here "
                        "and give this machine the cluster's token (~/.ray/auth_token)")
            raise ValueError(f"--address {address}: cannot join the Ray cluster ({err}){hint}") from None
    else:
        ray.init(address="local", num_cpus=local_cpus(opts), num_gpus=opts.gpus, include_dashboard=opts.dashboard,
                 object_store_memory=opts.object_store_mb * 1024**2, **kwargs)
