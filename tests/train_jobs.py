"""Training jobs run as child processes, as Snakemake and torchrun run them: to completion, or
killed with SIGKILL as soon as their first checkpoint exists."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

from koqa.train.checkpoint import Checkpoints
from koqa.train.distributed import World


def job_command(job: dict, workdir: Path) -> list[str]:
    """``python -m koqa.train.job JOB.json``: one training process (what each torchrun worker runs)."""
    job_file = workdir / "job.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    return [sys.executable, "-m", "koqa.train.job", str(job_file)]


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment, its thread count, no progress bars, and ``extra``."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "TQDM_DISABLE": "1",
        **extra,
    }


def run_child(command: list[str], log_path: Path, **env: str) -> None:
    """Run ``command`` to completion; fail with its output if it fails."""
    with open(log_path, "w") as log:
        result = subprocess.run(command, env=child_env(**env), stdout=log, stderr=subprocess.STDOUT)
    assert result.returncode == 0, log_path.read_text()[-5000:]


def checkpoint_steps(checkpoint_dir: Path) -> list[int]:
    """The steps of the checkpoints in ``checkpoint_dir``, newest first."""
    found = Checkpoints(checkpoint_dir, World(), False, 1, "cpu").newest_first()
    return [int(path.name.split("-")[1]) for path in found]


def kill_after_first_checkpoint(command: list[str], checkpoint_dir: Path, log_path: Path) -> int:
    """Start ``command``; SIGKILL it and every process it started (torchrun's workers run in
    sessions of their own) as soon as a checkpoint exists; return that checkpoint's step."""
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while not checkpoint_steps(checkpoint_dir) and child.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 600 s"
            time.sleep(0.01)
        for process in [*psutil.Process(child.pid).children(recursive=True), child]:
            os.kill(process.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL, log_path.read_text()[-5000:]
    return checkpoint_steps(checkpoint_dir)[0]
