"""Data-parallel training over several processes: one per GPU (or, in the tests, per CPU worker).

A train job given more than one GPU starts its workers with torchrun (:func:`launch`). Every worker
reads the same shards and takes every ``size``-th micro-batch of each optimizer step; the gradients
are summed over the workers before the optimizer step. N workers with ``grad_accum: a`` therefore
make the same updates as one process with ``grad_accum: N * a`` (up to float summation order), and
only rank 0 writes checkpoints, metrics and the adapter. A single process never touches
``torch.distributed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The current process group, or a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def worker_device(device: str) -> str:
    """A worker's own GPU (``cuda:<local rank>``); the CPU is shared."""
    current = world()
    return f"cuda:{current.local_rank}" if device == "cuda" and current.size > 1 else device


@contextmanager
def process_group(device: str) -> Iterator[World]:
    """Join the group torchrun set up (NCCL on GPUs, gloo on the CPU); leave it at the end."""
    if int(os.environ.get("WORLD_SIZE", 1)) == 1:
        yield World()
        return
    if device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    try:
        yield world()
    finally:
        dist.destroy_process_group()


def sum_gradients(params: list[torch.nn.Parameter]) -> None:
    """Replace every gradient by its sum over all processes (one flat all-reduce).

    A process that had no micro-batch this step contributes zeros."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    for param, chunk in zip(params, flat.split([g.numel() for g in grads]), strict=True):
        param.grad = chunk.view_as(param).clone()


def sum_values(values: list[float], device: str) -> list[float]:
    """Sum a few numbers over all processes."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_parameters(params: list[torch.nn.Parameter]) -> None:
    """Start every process from rank 0's weights."""
    for param in params:
        dist.broadcast(param.data, src=0)


def _stream(handle: TextIO) -> TextIO | None:
    """``handle`` if it is a real file a child process can write to, else inherit ours."""
    try:
        handle.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    handle.flush()
    return handle


def launch(job: dict, nproc: int, threads: int) -> None:
    """Run the training job ``job`` (``run_training``'s keyword arguments) on ``nproc`` workers.

    The workers' output goes where this process's stdout and stderr go (the job log); the threads
    are shared out among them."""
    with tempfile.TemporaryDirectory(prefix="koqa-ddp-") as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // nproc))}
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "koqa.train.job",
            str(job_file),
        ]
        result = subprocess.run(
            command, env=env, stdout=_stream(sys.stdout), stderr=_stream(sys.stderr)
        )
    if result.returncode != 0:
        raise RuntimeError(
            f"variant {job['settings']['name']}: data-parallel training on {nproc} processes "
            f"failed (exit status {result.returncode}); see the workers' output above"
        )
