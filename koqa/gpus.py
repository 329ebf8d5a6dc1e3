"""One GPU per job on one machine: each train or predict job claims its own device(s) from the
machine's pool and sees only those (``CUDA_VISIBLE_DEVICES``, set before CUDA starts).

Snakemake's ``gpu`` resource only limits how many GPU jobs run at once; every local job would see
every GPU and all would crowd onto the first. The pool is ``KOQA_GPUS`` (comma-separated device
ids or UUIDs), else the ``CUDA_VISIBLE_DEVICES`` Snakemake was started with, else every GPU that
``nvidia-smi -L`` lists. A claim is an exclusive ``flock`` on one lock file per device in a
machine-wide directory (``KOQA_GPU_LOCK_DIR``, default ``/tmp/koqa-gpu-locks``), so jobs of
several Snakemake runs and users share the pool too; the kernel releases the lock when the job's
process ends, however it ends (SIGKILL included). A job that finds too few free devices waits.
Under SLURM (``SLURM_JOB_ID`` set) the devices SLURM assigned are left as they are.

``python -m koqa.gpus`` prints the pool's size (what ``resources: gpu`` should be; ``make run``
passes it). No torch here: the claim must come before torch touches CUDA.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

log = logging.getLogger("koqa")
DEFAULT_LOCK_DIR = "/tmp/koqa-gpu-locks"
POLL_SECONDS = 1.0
UNSAFE = re.compile(r"[^\w.-]")  # in a device name, for its lock file's name


def gpu_pool(env: Mapping[str, str] = os.environ) -> list[str]:
    """The devices jobs on this machine may claim, as ``CUDA_VISIBLE_DEVICES`` names them."""
    for variable in ("KOQA_GPUS", "CUDA_VISIBLE_DEVICES"):
        if variable in env:
            return [device.strip() for device in env[variable].split(",") if device.strip()]
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi is None:
        return []
    listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60, check=False)
    count = sum(line.startswith("GPU ") for line in listing.stdout.splitlines())
    return [str(index) for index in range(count)]


def _lock_dir(env: Mapping[str, str]) -> Path:
    """The machine-wide lock directory, writable by every user (sticky, like /tmp)."""
    path = Path(env.get("KOQA_GPU_LOCK_DIR", DEFAULT_LOCK_DIR))
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        with suppress(PermissionError):  # made by another user in the meantime
            path.chmod(0o1777)
    return path


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding the exclusive lock on ``path``, or None if another holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _try_claim(pool: list[str], count: int, lock_dir: Path) -> dict[str, int] | None:
    """``count`` free devices of ``pool`` with their locks held, or None (holding nothing)."""
    held: dict[str, int] = {}
    for device in pool:
        fd = _try_lock(lock_dir / f"gpu-{UNSAFE.sub('_', device)}.lock")
        if fd is not None:
            held[device] = fd
            if len(held) == count:
                return held
    for fd in held.values():
        os.close(fd)
    return None


@contextmanager
def claim_gpus(count: int, env: Mapping[str, str] | None = None) -> Iterator[list[str] | None]:
    """Hold ``count`` devices of the pool for the block, visible to this process and its children
    as ``CUDA_VISIBLE_DEVICES``; yields them. Yields None, changing nothing, when the job needs no
    GPU, runs under SLURM, or the machine has none (the job then runs on the CPU)."""
    env = os.environ if env is None else env
    pool = gpu_pool(env) if count > 0 and "SLURM_JOB_ID" not in env else []
    if not pool:
        yield None
        return
    if count > len(pool):
        raise RuntimeError(
            f"the job asks for {count} GPUs but the pool has {len(pool)} ({','.join(pool)}); "
            "lower resources: gpu or set KOQA_GPUS"
        )
    lock_dir = _lock_dir(env)
    held = _try_claim(pool, count, lock_dir)
    if held is None:
        log.info("waiting for %d free GPU(s) of %s (locks in %s)", count, pool, lock_dir)
    while held is None:
        time.sleep(POLL_SECONDS)
        held = _try_claim(pool, count, lock_dir)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(held)
    log.info("claimed GPU(s) %s", ",".join(held))
    try:
        yield list(held)
    finally:
        for fd in held.values():
            os.close(fd)


if __name__ == "__main__":
    print(len(gpu_pool()))
