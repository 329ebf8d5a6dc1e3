"""A training job killed with SIGKILL and rerun resumes from its last checkpoint, continues the step
count, and ends exactly where an uninterrupted run ends: same steps, same losses, same adapter bytes.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from tiny_task import TinyTask, make_trainer, settings

from koqa.train import CHECKPOINT
from koqa.training_job import run_training

# LoRA with dropout (the RNG state must be restored) and validation (so must the best weights).
VARIANT = {"epochs": 4, "batch_size": 4, "checkpoint_every": 3, "eval_every": 10}


def _job(task: TinyTask, out: Path) -> dict:
    return task.job(settings("lora", **VARIANT), out)


def _start_and_kill_after_first_checkpoint(job: dict, workdir: Path) -> int:
    """Run the job in a child process (``python -m koqa.training_job``), SIGKILL it as soon as a
    checkpoint exists; return the step of the checkpoint it left."""
    job_file = workdir / "job.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    checkpoint = Path(job["checkpoint_dir"]) / CHECKPOINT
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "TQDM_DISABLE": "1"}
    with open(workdir / "child.log", "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "koqa.training_job", str(job_file)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL, (workdir / "child.log").read_text()
    return torch.load(checkpoint, weights_only=True)["step"]


def test_killed_job_resumes_and_ends_like_an_uninterrupted_one(
    tiny_task: TinyTask, tmp_path: Path
) -> None:
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    killed.mkdir()
    job = _job(tiny_task, killed)
    killed_at = _start_and_kill_after_first_checkpoint(job, killed)
    planned = 4 * len(tiny_task.train_rows) // 4
    assert 0 < killed_at < planned
    assert not Path(job["out_dir"]).exists()  # no half-written output

    resumed = run_training(**job)
    uninterrupted = run_training(**_job(tiny_task, straight))

    assert resumed["resumed_from_step"] == killed_at
    assert resumed["steps"] == uninterrupted["steps"] == planned
    assert resumed["best_step"] == uninterrupted["best_step"]
    metrics = pd.read_csv(killed / "metrics.csv")
    assert metrics["step"].tolist() == list(range(1, planned + 1))
    assert metrics["loss"].tolist() == pd.read_csv(straight / "metrics.csv")["loss"].tolist()
    weights = "adapter_model.safetensors"
    assert (killed / "adapter" / weights).read_bytes() == (
        straight / "adapter" / weights
    ).read_bytes()
    assert not (killed / "checkpoints").exists()
    assert "validation loss" in (killed / "loss.svg").read_text(encoding="utf-8")


def test_a_checkpoint_made_with_other_settings_is_not_resumed(
    tiny_task: TinyTask, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    first = make_trainer(tiny_task, "lora", epochs=1, checkpoint_every=5)
    first.run(checkpoints, tmp_path / "metrics.csv")
    assert (checkpoints / CHECKPOINT).exists()
    assert not make_trainer(tiny_task, "lora", epochs=1, lr=0.01).try_resume(checkpoints)
    same = make_trainer(tiny_task, "lora", epochs=1, checkpoint_every=5)
    assert same.try_resume(checkpoints)
    assert same.step == first.step // 5 * 5
