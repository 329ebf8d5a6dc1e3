"""A training job killed with SIGKILL and rerun resumes from its last checkpoint, continues the step
count, and ends exactly where an uninterrupted run ends: the same bytes of metrics.csv and of the
adapter (weights and adapter_config.json). Checkpoints hold what the method trains and nothing
twice, the last ``keep_checkpoints`` of them are kept, and one that cannot be read, or was made with
other settings, another base model or other training data, is passed over with the reason logged.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tiny_task import TinyTask, encode, make_trainer, settings
from train_jobs import checkpoint_steps, job_command, kill_after_first_checkpoint, run_child

from koqa.model.basemodel import load_base_model
from koqa.train import checkpoint
from koqa.train.job import training_provenance
from koqa.train.loop import Trainer

# LoRA with dropout (the RNG state must be restored) and validation (so must the best weights).
VARIANT = {"epochs": 4, "batch_size": 4, "checkpoint_every": 3, "eval_every": 10}


# hash seeds under which a set of VARIANT's target modules (q_proj, v_proj) iterates in another order
HASH_SEEDS = ("1", "3")


def _set_order(items: list[str], hash_seed: str) -> str:
    """How a set of ``items`` iterates in a process with ``hash_seed``."""
    command = [sys.executable, "-c", f"print(*{set(items)!r})"]
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_killed_job_resumes_and_ends_like_an_uninterrupted_one(
    tiny_task: TinyTask, tmp_path: Path
) -> None:
    """The runs are separate processes with different hash seeds: peft keeps the target modules in
    a set, whose order would otherwise differ in adapter_config.json."""
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    killed.mkdir()
    straight.mkdir()
    job = tiny_task.job(settings("lora", **VARIANT), killed)
    modules = job["settings"]["target_modules"]
    assert _set_order(modules, HASH_SEEDS[0]) != _set_order(modules, HASH_SEEDS[1])
    killed_at = kill_after_first_checkpoint(
        job_command(job, killed), Path(job["checkpoint_dir"]), killed / "child.log"
    )
    planned = 4 * len(tiny_task.train_rows) // 4
    assert 0 < killed_at < planned
    assert not Path(job["out_dir"]).exists()  # no half-written output
    for output in ("metrics.csv", "timing.csv"):  # Snakemake deletes a job's outputs
        (killed / output).unlink(missing_ok=True)

    run_child(job_command(job, killed), killed / "resumed.log", PYTHONHASHSEED=HASH_SEEDS[0])
    straight_job = tiny_task.job(settings("lora", **VARIANT), straight)
    run_child(
        job_command(straight_job, straight), straight / "run.log", PYTHONHASHSEED=HASH_SEEDS[1]
    )

    resumed, uninterrupted = (
        json.loads((run / "summary.json").read_text()) for run in (killed, straight)
    )
    assert resumed["resumed_from_step"] == killed_at
    assert resumed["steps"] == uninterrupted["steps"] == planned
    assert resumed["best_step"] == uninterrupted["best_step"]
    assert (killed / "metrics.csv").read_bytes() == (straight / "metrics.csv").read_bytes()
    timing_steps = (killed / "timing.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in timing_steps] == list(range(1, planned + 1))
    adapter = _files(killed / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= adapter.keys()
    assert adapter == _files(straight / "adapter")
    assert not (killed / "checkpoints").exists()
    assert "validation loss" in (killed / "loss.svg").read_text(encoding="utf-8")


def test_a_checkpoint_made_with_other_settings_is_not_resumed(
    tiny_task: TinyTask, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    first = make_trainer(tiny_task, "lora", epochs=1, checkpoint_every=5)
    first.run(checkpoints, tmp_path / "metrics.csv")
    assert checkpoint_steps(checkpoints) == [10, 5]
    assert not make_trainer(tiny_task, "lora", epochs=1, lr=0.01).try_resume(checkpoints)
    # how often and how many checkpoints are kept does not change what is trained
    same = make_trainer(tiny_task, "lora", epochs=1, checkpoint_every=4, keep_checkpoints=1)
    assert same.try_resume(checkpoints)
    assert same.step == 10


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

    def trainer() -> Trainer:
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
    assert f"step-000010: made with other {change}" in caplog.text


# -- what a checkpoint holds, and unreadable ones ---------------------------------------------------
LORA_RUN = {"epochs": 1, "checkpoint_every": 4, "eval_every": 4}  # 12 steps of 8 rows


@pytest.fixture(scope="module")
def lora_run(tiny_task: TinyTask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted LoRA run's checkpoints (steps 8 and 12 kept) and metrics.csv."""
    out = tmp_path_factory.mktemp("lora_run")
    trainer = make_trainer(tiny_task, "lora", eval_rows=tiny_task.validation_rows, **LORA_RUN)
    trainer.run(out / "checkpoints", out / "metrics.csv")
    return out


def test_checkpoints_hold_the_trainable_weights_once_and_the_last_k_are_kept(
    tiny_task: TinyTask, lora_run: Path
) -> None:
    """Steps 4, 8 and 12 were saved: 8 and 12 are kept, with the best weights each refers to."""
    root = lora_run / "checkpoints"
    kept = ["step-000008", "step-000012"]
    referred = {
        json.loads((root / step / "state.json").read_text())["best"]["step"] for step in kept
    }
    best = f"best-{max(referred):06d}"
    assert sorted(path.name for path in root.iterdir() if path.is_dir()) == sorted(
        {*kept, *(f"best-{step:06d}" for step in referred)}
    )
    trainable = {
        name
        for name, param in make_trainer(tiny_task, "lora").model.named_parameters()
        if param.requires_grad
    }
    for directory in ("step-000012", best):
        with safe_open(root / directory / "weights.safetensors", framework="pt") as handle:
            assert set(handle.keys()) == trainable
    step = root / "step-000012"
    assert sorted(path.name for path in step.iterdir()) == [
        "metrics.csv",
        "rng-rank00000.pt",
        "state.json",
        "timing.csv",
        "training.pt",
        "weights.safetensors",
    ]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


CORRUPTIONS = {
    "truncated weights": lambda step: _truncate(step / "weights.safetensors"),
    "garbage optimizer": lambda step: (step / "training.pt").write_bytes(b"\x80garbage" * 50),
    "missing rng state": lambda step: (step / "rng-rank00000.pt").unlink(),
    "truncated state.json": lambda step: _truncate(step / "state.json"),
    "missing metrics": lambda step: (step / "metrics.csv").unlink(),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_an_unreadable_checkpoint_is_passed_over_for_the_older_one(
    corruption: str,
    tiny_task: TinyTask,
    lora_run: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The newest checkpoint damaged: the run resumes from the older one and still ends with the
    uninterrupted run's metrics; both damaged: it starts afresh. The log says why each time."""
    root = tmp_path / "checkpoints"
    shutil.copytree(lora_run / "checkpoints", root)
    CORRUPTIONS[corruption](root / "step-000012")

    def trainer() -> Trainer:
        return make_trainer(tiny_task, "lora", eval_rows=tiny_task.validation_rows, **LORA_RUN)

    with caplog.at_level(logging.INFO, logger="koqa"):
        resumed = trainer()
        summary = resumed.run(root, tmp_path / "metrics.csv")
    assert summary["resumed_from_step"] == 8
    assert "ignoring checkpoint" in caplog.text and "step-000012: " in caplog.text
    assert (tmp_path / "metrics.csv").read_bytes() == (lora_run / "metrics.csv").read_bytes()

    for step in ("step-000008", "step-000012"):
        CORRUPTIONS[corruption](root / step)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="koqa"):
        assert not trainer().try_resume(root)
    assert caplog.text.count("ignoring checkpoint") == 2


def test_a_full_fine_tune_checkpoint_is_sharded_and_resumes_exactly(
    tiny_task: TinyTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the file size limit the weights are split over several safetensors files with an
    index; resuming reads them all back into every parameter, bit for bit."""
    monkeypatch.setattr(checkpoint, "MAX_FILE_SIZE", "100KB")
    root = tmp_path / "checkpoints"
    trained = make_trainer(tiny_task, "full", epochs=1, batch_size=16, checkpoint_every=6)
    trained.run(root, tmp_path / "metrics.csv")
    shards = sorted(path.name for path in (root / "step-000006").glob("weights*"))
    assert len(shards) > 3 and "weights.safetensors.index.json" in shards

    resumed = make_trainer(tiny_task, "full", epochs=1, batch_size=16, checkpoint_every=6)
    assert resumed.try_resume(root) and resumed.step == 6
    expected = dict(trained.model.named_parameters())
    untrained = make_trainer(tiny_task, "full").params
    for name, param in resumed.model.named_parameters():
        assert torch.equal(param, expected[name]), name
        assert not torch.equal(param, untrained[name]), f"{name} was not trained"
