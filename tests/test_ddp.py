"""Data-parallel training (what a train job given several GPUs does), run on the CPU with the gloo
backend: two torchrun workers with ``grad_accum: 1`` follow the loss curve of one process with
``grad_accum: 2`` (the same global batch), and only rank 0 writes."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from tiny_task import TinyTask, settings

from koqa.train.distributed import launch
from koqa.train.job import run_training


def _job(task: TinyTask, out: Path, grad_accum: int) -> dict:
    variant = settings(
        "lora", epochs=2, batch_size=4, grad_accum=grad_accum, dropout=0.0, eval_every=6
    )
    return task.job(variant, out)


def test_two_workers_follow_one_process_and_only_rank_0_writes(
    tiny_task: TinyTask, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    single = run_training(**_job(tiny_task, tmp_path / "single", grad_accum=2))
    capfd.readouterr()
    launch(_job(tiny_task, tmp_path / "ddp", grad_accum=1), nproc=2, threads=2)
    output = "".join(capfd.readouterr())

    assert re.findall(r"data-parallel worker (\d) of 2", output) != []
    assert set(re.findall(r"rank (\d) wrote", output)) == {"0"}, output[-3000:]
    parallel = json.loads((tmp_path / "ddp/summary.json").read_text())
    assert parallel["world_size"] == 2 and single["world_size"] == 1
    assert parallel["steps"] == single["steps"] == 2 * 96 // 8

    one, two = (pd.read_csv(tmp_path / run / "metrics.csv") for run in ("single", "ddp"))
    assert two["step"].tolist() == one["step"].tolist()
    pd.testing.assert_series_equal(two["loss"], one["loss"], rtol=1e-4)
    pd.testing.assert_series_equal(two["val_loss"], one["val_loss"], rtol=1e-4)
    assert one["loss"].iloc[-1] < one["loss"].iloc[0]  # the curve being matched does move
    assert (tmp_path / "ddp/adapter/adapter_model.safetensors").is_file()
