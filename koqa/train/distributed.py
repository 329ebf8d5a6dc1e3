"""Data-parallel training over several processes: one per GPU (or, in the tests, per CPU worker),
on one node or several.

A train job given more than one GPU or node starts its workers with torchrun (:func:`launch`):
``--standalone`` on one node; on several, ``srun`` starts one torchrun per node of the SLURM
allocation, which meet at a c10d rendezvous on the allocation's first node. Every worker reads
the same shards and runs its share of each optimizer step's micro-batches (:func:`rank_share`).
The engine is torch's own (:func:`data_parallel`):

- adapter methods: ``DistributedDataParallel``; the gradients of the few trainable weights are
  all-reduced in buckets while the backward pass runs, once per optimizer step (``no_sync`` on
  the micro-batches before the last);
- ``full``: FSDP2 (``fully_shard`` on every decoder layer, then on the whole model): parameters,
  gradients and AdamW states are sharded over the workers, so a model whose training state is
  larger than one GPU trains. The gradients are reduce-scattered after every micro-batch: skipping
  that (``set_requires_gradient_sync(False)``) would keep a whole unsharded gradient per worker,
  the memory FSDP is there to save.

N workers with ``grad_accum: a`` make the updates of one process with ``grad_accum: N * a`` (up to
float summation order). Each worker draws its own dropout masks (seed + rank); rank 0 alone writes
the metrics and the variant. A single process never touches ``torch.distributed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

Batch = TypeVar("Batch")
RENDEZVOUS_PORT = 29400  # plus the SLURM job id modulo 1000: jobs sharing a first node differ


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


def data_parallel(
    model: torch.nn.Module, *, device: str, shard: bool, compute_dtype: torch.dtype | None
) -> torch.nn.Module:
    """The module that trains ``model`` on this process: ``model`` itself in a world of one; else
    FSDP2 when ``shard`` (``model`` is sharded in place and returned; the layers are gathered in
    ``compute_dtype``, gradients reduced in fp32), DDP around ``model`` otherwise."""
    current = world()
    if current.size == 1:
        return model
    if shard:
        mesh = init_device_mesh(torch.device(device).type, (current.size,))
        policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
        layer_classes = set(getattr(model, "_no_split_modules", None) or [])
        layers = [m for m in model.modules() if type(m).__name__ in layer_classes]
        for layer in layers:
            fully_shard(layer, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        return model
    on_gpu = torch.device(device).type == "cuda"
    # buffers (rotary frequencies) never change: no broadcast before every forward
    return DistributedDataParallel(
        model, device_ids=[current.local_rank] if on_gpu else None, broadcast_buffers=False
    )


def gradient_sync(engine: torch.nn.Module, last: bool) -> AbstractContextManager[None]:
    """The context of one micro-batch's forward and backward: DDP all-reduces only on the last
    micro-batch of a step (FSDP2 reduce-scatters every one; see the module docstring)."""
    if isinstance(engine, DistributedDataParallel) and not last:
        return engine.no_sync()
    return nullcontext()


def rank_share(batches: list[Batch], stand_in: Batch) -> list[tuple[Batch, bool]]:
    """This process's micro-batches of ``batches``, each with whether it counts: every
    ``size``-th from ``rank``, then ``stand_in`` (not counted, run with weight 0) until every
    process has the same number, so that the collectives of each backward pass stay aligned."""
    current = world()
    mine = [(batch, True) for batch in batches[current.rank :: current.size]]
    runs = -(-len(batches) // current.size)
    return mine + [(stand_in, False)] * (runs - len(mine))


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of an FSDP parameter (or the tensor itself)."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def scalar(value: torch.Tensor) -> float:
    """A number computed over FSDP shards (a replicated DTensor) or a plain tensor."""
    return float(value.full_tensor() if isinstance(value, DTensor) else value)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights gathered from its FSDP shards into rank 0's CPU memory (other
    ranks get an empty dict; every rank must call it)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def sum_values(values: list[float], device: str) -> list[float]:
    """Sum a few numbers over all processes."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_agree(ok: bool, device: str) -> bool:
    """True when ``ok`` is true on every process."""
    if world().size == 1:
        return ok
    flag = torch.tensor([int(ok)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier() -> None:
    """Wait for every process (nothing to wait for in a world of one)."""
    if world().size > 1:
        dist.barrier()


def _stream(handle: TextIO) -> TextIO | None:
    """``handle`` if it is a real file a child process can write to, else inherit ours."""
    try:
        handle.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    handle.flush()
    return handle


def torchrun_command(
    job_file: Path, nproc_per_node: int, nodes: int = 1, endpoint: str = "", run_id: str = ""
) -> list[str]:
    """The torchrun command of one node: ``--standalone`` on one node, else a c10d rendezvous at
    ``endpoint`` (host:port) that the torchrun of every node joins under ``run_id``."""
    if nodes == 1:
        rendezvous = ["--standalone"]
    else:
        rendezvous = [
            f"--nnodes={nodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
            f"--rdzv-id={run_id}",
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous,
        f"--nproc-per-node={nproc_per_node}",
        "-m",
        "koqa.train.job",
        str(job_file),
    ]


def slurm_command(job_file: Path, nproc_per_node: int, nodes: int, gpus_per_node: int) -> list[str]:
    """``srun`` starting one torchrun on each of ``nodes`` nodes of this SLURM allocation, meeting
    at a c10d rendezvous on its first node (``SLURM_JOB_NODELIST``). ``--overlap``: the job itself
    already runs as a step of the allocation."""
    job_id = os.environ.get("SLURM_JOB_ID")
    nodelist = os.environ.get("SLURM_JOB_NODELIST")
    if not job_id or not nodelist:
        raise RuntimeError(
            f"training on {nodes} nodes needs a SLURM allocation of them (SLURM_JOB_ID and "
            "SLURM_JOB_NODELIST are not set); run the workflow with the SLURM profile"
        )
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    ).stdout.split()
    endpoint = f"{hosts[0]}:{RENDEZVOUS_PORT + int(job_id) % 1000}"
    gpus = [f"--gpus-per-node={gpus_per_node}"] if gpus_per_node else []
    srun = ["srun", "--overlap", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1"]
    return [
        *srun,
        *gpus,
        "--kill-on-bad-exit=1",
        *torchrun_command(job_file, nproc_per_node, nodes, endpoint, run_id=f"koqa-{job_id}"),
    ]


def launch(job: dict, nproc_per_node: int, threads: int, nodes: int = 1, gpus: int = 0) -> None:
    """Run the training job ``job`` (``run_training``'s keyword arguments) on ``nproc_per_node``
    workers on each of ``nodes`` nodes (``gpus`` per node, 0 on the CPU).

    The job file goes to the checkpoint directory, which every node sees (a shared file system,
    as the results directory is on a cluster). The workers' output goes where this process's
    stdout and stderr go (the job log); the node's threads are shared out among them."""
    job_file = Path(job["checkpoint_dir"]) / "job.json"
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // nproc_per_node))}
    if nodes > 1:
        command = slurm_command(job_file, nproc_per_node, nodes, gpus)
    else:
        command = torchrun_command(job_file, nproc_per_node)
    result = subprocess.run(
        command, env=env, stdout=_stream(sys.stdout), stderr=_stream(sys.stderr)
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"variant {job['settings']['name']}: data-parallel training on {nodes} node(s) x "
            f"{nproc_per_node} processes failed (exit status {result.returncode}); see the "
            "workers' output above"
        )
