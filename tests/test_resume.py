"""A training job killed with SIGKILL and rerun resumes from its last checkpoint, continues the step
count, and ends exactly where an uninterrupted run ends: same steps, same losses, same adapter bytes.
A checkpoint made with other settings, another base model or other training data is not resumed.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_task import TinyTask, encode, make_trainer, settings

from koqa.model.basemodel import load_base_model
from koqa.train.job import run_training, training_provenance
from koqa.train.loop import CHECKPOINT

# LoRA with dropout (the RNG state must be restored) and validation (so must the best weights).
VARIANT = {"epochs": 4, "batch_size": 4, "checkpoint_every": 3, "eval_every": 10}


def _job(task: TinyTask, out: Path) -> dict:
    return task.job(settings("lora", **VARIANT), out)


def _start_and_kill_after_first_checkpoint(job: dict, workdir: Path) -> int:
    """Run the job in a child process (``python -m koqa.train.job``), SIGKILL it as soon as a
    checkpoint exists; return the step of the checkpoint it left."""
    job_file = workdir / "job.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    checkpoint = Path(job["checkpoint_dir"]) / CHECKPOINT
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "TQDM_DISABLE": "1"}
    with open(workdir / "child.log", "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "koqa.train.job", str(job_file)],
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
    (killed / "metrics.csv").unlink(missing_ok=True)  # Snakemake deletes a job's outputs

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


@pytest.mark.parametrize("change", ["base_model", "shards", "training_rows"])
def test_a_checkpoint_of_another_base_model_or_data_is_not_resumed(
    change: str, tiny_task: TinyTask, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The base model rebuilt in place (same path, same config), other shard metadata (prompt,
    tokenizer) or other rows of the same count: the run starts afresh and the log says why."""
    base = tmp_path / "base"
    shutil.copytree(tiny_task.base_dir, base)
    metadata = {"template": "t1", "tokenizer": "k1", "max_seq_len": "512"}
    rows = tiny_task.train_rows
    checkpoints = tmp_path / "checkpoints"

    def trainer():
        provenance = training_provenance(base, metadata)
        variant = {"epochs": 1, "checkpoint_every": 5}
        return make_trainer(tiny_task, "lora", rows=rows, provenance=provenance, **variant)

    trainer().run(checkpoints, tmp_path / "metrics.csv")
    assert trainer().try_resume(checkpoints)  # nothing changed yet
    if change == "base_model":
        model = load_base_model(base)
        model.model.norm.weight.data += 1
        model.save_pretrained(base, safe_serialization=True)
    elif change == "shards":
        metadata = {**metadata, "template": "t2"}
    else:
        relabelled = tiny_task.train.assign(target=tiny_task.train["target"].iloc[::-1].values)
        rows = encode(relabelled, tiny_task.tokenizer)
    with caplog.at_level(logging.INFO, logger="koqa"):
        assert not trainer().try_resume(checkpoints)
    assert f"starting afresh: other {change}" in caplog.text
