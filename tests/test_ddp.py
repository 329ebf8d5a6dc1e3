"""Data-parallel training (what a train job given several GPUs or nodes does), run on the CPU with
the gloo backend: torch's DDP for adapters and FSDP2 for full fine-tuning make the update of one
process with the same global batch; a 2-process run killed with SIGKILL resumes exactly (each
process restores its own RNG state); two torchrun "nodes" meet at a c10d rendezvous on localhost.

The geometry makes the last step uneven: 96 rows in micro-batches of 9 are 11 micro-batches (the
last of 6 rows); 2 processes x ``grad_accum: 2`` take 4 per step, so the third step has 3 and one
process runs a zero-weight stand-in. One process with ``grad_accum: 4`` is the reference.
Each test starts 2 worker processes (about 10 s of imports each on 2 cores) for 3-6 steps.
"""

import json
import os
import re
import socket
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from tiny_task import LEARNING_RATE, TinyTask, make_trainer, settings
from train_jobs import child_env, job_command, kill_after_first_checkpoint

from koqa.train import distributed
from koqa.train.distributed import World, launch, slurm_command, torchrun_command
from koqa.train.job import run_training

# float32 sums in another order (all-reduce vs one process, other thread counts) differ by a few
# ulps; AdamW divides by the root of the squared gradients, which turns that into up to ~2e-6 on
# the weights after 3 steps (seen: 1.6e-6), against updates of lr = 2e-3..5e-3 per step. AdamW is
# blind to a gradient's scale, so the gradient norm is compared too (printed to 4 decimals).
TOLERANCE = {"rtol": 0.0, "atol": 2e-5}


def _variant(method: str, grad_accum: int, **extra: object) -> dict:
    geometry = {"epochs": 1, "batch_size": 9, "grad_accum": grad_accum}
    return settings(method, **{**geometry, "lr": LEARNING_RATE[method], **extra})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    (weights,) = (run / "adapter").glob("*.safetensors")
    return load_file(weights)


def _assert_same_update(one: Path, two: Path) -> float:
    """The weights two processes trained equal one process's; return the largest difference."""
    expected, got = _weights(one), _weights(two)
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, **TOLERANCE, msg=name)
    metrics = [pd.read_csv(run / "metrics.csv") for run in (one, two)]
    assert metrics[1]["step"].tolist() == metrics[0]["step"].tolist() == [1, 2, 3]
    for column, tolerance in {"loss": 1e-6, "val_loss": 1e-6, "grad_norm": 1.5e-4}.items():
        pd.testing.assert_series_equal(metrics[1][column], metrics[0][column], atol=tolerance)
    return max(float((got[name] - tensor).abs().max()) for name, tensor in expected.items())


def test_ddp_on_two_processes_makes_the_update_of_one(
    tiny_task: TinyTask, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """LoRA without dropout, evaluated every 2 steps (the best weights are kept)."""
    extra = {"dropout": 0.0, "eval_every": 2}
    single = run_training(**tiny_task.job(_variant("lora", 4, **extra), tmp_path / "one"))
    capfd.readouterr()
    launch(tiny_task.job(_variant("lora", 2, **extra), tmp_path / "two"), 2, threads=2)
    output = "".join(capfd.readouterr())

    assert re.findall(r"data-parallel worker (\d) of 2", output) != []
    assert set(re.findall(r"rank (\d) wrote", output)) == {"0"}, output[-3000:]
    parallel = json.loads((tmp_path / "two/summary.json").read_text())
    assert parallel["world_size"] == 2 and single["world_size"] == 1
    assert parallel["best_step"] == single["best_step"]
    largest = _assert_same_update(tmp_path / "one", tmp_path / "two")
    print(f"DDP: largest weight difference {largest:.2e}")
    trained = load_file(tmp_path / "one/adapter/adapter_model.safetensors")
    assert any(t.abs().max() > 1e-3 for n, t in trained.items() if "lora_B" in n)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_fsdp_on_two_nodes_makes_the_update_of_one(tiny_task: TinyTask, tmp_path: Path) -> None:
    """Full fine-tuning sharded over two torchrun "nodes" of one process each, meeting at a c10d
    rendezvous on localhost as the nodes of a SLURM job do on their first node. Evaluated every 2
    steps by validation F1: the best weights are saved after a forward pass without a backward."""
    extra = {"eval_every": 2, "eval_rows": 12}
    single = run_training(**tiny_task.job(_variant("full", 4, **extra), tmp_path / "one"))
    two = tmp_path / "two"
    two.mkdir()
    job_file = Path(job_command(tiny_task.job(_variant("full", 2, **extra), two), two)[-1])
    node = torchrun_command(job_file, 1, nodes=2, endpoint=f"localhost:{_free_port()}", run_id="t")
    with ExitStack() as stack:
        logs = [stack.enter_context(open(two / f"node{i}.log", "w")) for i in range(2)]
        nodes = [
            subprocess.Popen(node, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
            for log in logs
        ]
        codes = [process.wait(timeout=600) for process in nodes]
    for i, code in enumerate(codes):
        assert code == 0, (two / f"node{i}.log").read_text()[-5000:]
    parallel = json.loads((two / "summary.json").read_text())
    assert parallel["world_size"] == 2 and parallel["best_step"] == single["best_step"]
    largest = _assert_same_update(tmp_path / "one", two)
    print(f"FSDP: largest weight difference {largest:.2e}")


def test_two_processes_killed_and_rerun_end_like_an_uninterrupted_pair(
    tiny_task: TinyTask, tmp_path: Path
) -> None:
    """LoRA with dropout: each process draws its own masks and must get its own RNG state back."""
    variant = _variant("lora", 1, epochs=2, dropout=0.1, checkpoint_every=2)  # 12 steps
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    killed.mkdir()
    job = tiny_task.job(variant, killed)
    checkpoints = Path(job["checkpoint_dir"])
    job_file = Path(job_command(job, killed)[-1])
    step = kill_after_first_checkpoint(
        torchrun_command(job_file, 2), checkpoints, killed / "killed.log"
    )
    assert 0 < step < 12
    saved = (checkpoints / f"step-{step:06d}").glob("rng-*")
    assert sorted(path.name for path in saved) == ["rng-rank00000.pt", "rng-rank00001.pt"]

    launch(job, 2, threads=2)
    launch(tiny_task.job(variant, straight), 2, threads=2)
    assert json.loads((killed / "summary.json").read_text())["resumed_from_step"] == step
    assert (killed / "metrics.csv").read_bytes() == (straight / "metrics.csv").read_bytes()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (killed / "adapter" / name).read_bytes() == (
            straight / "adapter" / name
        ).read_bytes()


def test_every_process_draws_its_own_dropout_masks(
    tiny_task: TinyTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Trainer seeds each process with seed + rank (a world of 2 faked in one process, the
    data-parallel wrapping left out): the processes' first dropout masks differ."""
    masks = []
    monkeypatch.setattr(distributed, "data_parallel", lambda model, **options: model)
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: World(rank=rank, size=2))
        make_trainer(tiny_task, "lora")
        masks.append(torch.nn.functional.dropout(torch.ones(256), 0.5))
    assert not torch.equal(*masks)


def test_several_nodes_start_one_torchrun_each_through_srun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SLURM, srun runs one torchrun per node; they meet on the allocation's first node (as
    ``scontrol show hostnames`` expands SLURM_JOB_NODELIST), at a port set by the job id."""
    scontrol = tmp_path / "bin/scontrol"
    scontrol.parent.mkdir()
    scontrol.write_text('#!/bin/sh\n[ "$3" = "gpu[07-08]" ] && printf "gpu07\\ngpu08\\n"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{scontrol.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    command = slurm_command(Path("/shared/job.json"), nproc_per_node=4, nodes=2, gpus_per_node=4)
    srun = command[: command.index("--kill-on-bad-exit=1") + 1]
    assert srun[0] == "srun" and {"--nodes=2", "--ntasks=2", "--ntasks-per-node=1"} <= set(srun)
    assert "--gpus-per-node=4" in srun
    torchrun = command[len(srun) :]
    assert torchrun == torchrun_command(
        Path("/shared/job.json"), 4, nodes=2, endpoint="gpu07:29856", run_id="koqa-123456"
    )
    monkeypatch.delenv("SLURM_JOB_NODELIST")
    with pytest.raises(RuntimeError, match="needs a SLURM allocation"):
        slurm_command(Path("/shared/job.json"), nproc_per_node=4, nodes=2, gpus_per_node=4)
