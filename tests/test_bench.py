"""The CPU benches (bench/prep.py, bench/train.py, bench/predict.py) in a smoke size: each runs its
real code end to end and writes a result file with the common fields (bench/benchlib.py) and its
own checks. The figures of a smoke run mean nothing; what is checked is that they are consistent.
Cost: about 2 minutes on two quiet cores (prep 20 s, train 40 s with two steps of the 24M model,
predict 40 s), most of it in starting the arms' processes."""

import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = {
    "prep": ["--rows", "300", "--scale", "2", "--rounds", "1"],
    "train": ["--rows", "16", "--repeats", "1", "--mfu-steps", "2", "--rss-steps", "0"],
    "predict": [
        # random weights: answers run to max_new_tokens, so every decoding step is compared
        *["--contexts", "4", "--train-steps", "0", "--rounds", "1"],
        *["--repeats", "1", "--single", "3"],
    ],
}
COMMON = ("name", "what", "unit", "figure", "baseline", "baseline_figure", "ratio", "target")


def run_bench(name: str, out: Path) -> dict:
    command = [sys.executable, str(REPO / "bench" / f"{name}.py"), *SMOKE[name], "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    for field in COMMON:
        assert field in report, field
    assert report["name"] == name and report["figure"] > 0 and report["baseline_figure"] > 0
    assert math.isclose(report["ratio"], report["figure"] / report["baseline_figure"], rel_tol=1e-2)
    ((bound, limit),) = report["target"].items()
    ratio = report["figure"] / report["baseline_figure"]
    assert report["meets_target"] == (ratio >= limit if bound == "at_least" else ratio <= limit)
    machine = report["machine"]
    assert machine["cpu_cores"] >= 1 and machine["torch_threads"] >= 1 and machine["torch"]
    assert len(machine["load_average"]) == 3
    datetime.fromisoformat(report["run_date"])
    return report


def test_prep_bench(tmp_path: Path) -> None:
    report = run_bench("prep", tmp_path / "prep.json")
    koqa, scaled = report["koqa"], report["scale"]["run"]
    assert koqa["rows_kept"] == koqa["shard_rows_read_back"] > 250
    assert scaled["rows_kept"] == scaled["shard_rows_read_back"] > 2 * 250
    # the floor encodes every kept row's prompt and prompt + answer (distinct texts)
    assert koqa["rows_kept"] < report["floor_texts"] <= 2 * koqa["rows_kept"]
    assert report["input"]["scaled"]["rows"] == 2 * report["input"]["koqa"]["rows"]
    for run in (koqa, report["floor"], scaled):
        assert run["peak_rss_mb"] >= run["base_rss_mb"] > 0
    for run in (koqa, scaled):  # each stage's own peak (the tokenize stage's measured afresh)
        assert set(run["stage_peak_rss_mb"]) == {"clean", "tokenize"}
        assert run["peak_rss_mb"] == max(run["stage_peak_rss_mb"].values())


def test_train_bench(tmp_path: Path) -> None:
    report = run_bench("train", tmp_path / "train.json")
    assert set(report["padding_fraction"]) == {"koqa", "grouped", "default"}
    assert all(0 <= f < 1 for f in report["padding_fraction"].values())
    mfu = report["mfu"]
    assert 20e6 < mfu["parameters"] < 28e6  # the ~24M model
    assert math.isclose(
        mfu["mfu"],
        6 * mfu["parameters"] * mfu["tokens_per_s"] / (mfu["peak_gflops"] * 1e9),
        rel_tol=1e-2,
    )
    assert 0 < mfu["mfu"] < mfu["mfu_with_attention"] < 1.5
    assert 0.9 * mfu["mfu"] < mfu["mfu_as_computed"] < mfu["mfu"]  # the head is ~4% of N
    steps = mfu["step_ms"]
    assert set(steps) == {"step", "data", "forward", "backward", "optimizer"}
    parts = steps["data"] + steps["forward"] + steps["backward"] + steps["optimizer"]
    assert 0 < parts <= steps["step"] * 1.001


def test_predict_bench(tmp_path: Path) -> None:
    report = run_bench("predict", tmp_path / "predict.json")
    prompts = report["prompts"]
    assert prompts == report["set_up"]["prompts"] >= 8
    differences = report["token_differences"]
    assert report["same_tokens"] + differences["differing"] == prompts
    # in fp32, a difference can only be a near tie that float rounding decided
    for case in differences["cases"]:
        assert case.get("kind") != "length" and abs(case["logit_gap"]) < 1e-3, case
    assert report["arms"]["koqa"]["generated_tokens"] > 2 * prompts  # answers of several tokens
    single = report["one_at_a_time"]
    assert single["prompts"] == 3 and single["same_tokens_as_koqa"] == 3
    constrained = report["constrained"]
    assert constrained["figure"] > 0 and 0 <= constrained["same_tokens_as_free"] <= prompts
