"""The GPU acceptance check (bench/gpu.py) under pytest: `pytest -m gpu` on a machine with a CUDA
GPU (skipped without one). One run of the check (under 8 minutes on one GPU) feeds every test."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "gpu.json"
    subprocess.run(
        [sys.executable, str(REPO / "bench/gpu.py"), "--out", str(out)], timeout=1200, check=False
    )
    return json.loads(out.read_text())


def test_every_method_trains_with_a_finite_loss(report: dict) -> None:
    assert report["checks"]["losses_finite"], report["methods_1b"]


def test_peak_memory_within_15_percent_of_the_planner(report: dict) -> None:
    ratios = {method: run["ratio"] for method, run in report["methods_1b"].items()}
    assert report["checks"]["memory_within_15pct"], ratios


def test_batched_generation_equals_the_per_prompt_reference(report: dict) -> None:
    assert report["checks"]["generation_equivalent"], report["generation_1b"]


def test_8b_throughput_is_measured(report: dict) -> None:
    for method, run in report["throughput_8b"].items():
        assert run["tokens_per_s"] > 0 and math.isfinite(run["final_loss"]), (method, run)
        assert report["peak_tflops_assumed"] is None or 0 < run["mfu"] < 1, (method, run)
