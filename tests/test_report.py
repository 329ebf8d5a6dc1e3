"""On the end-to-end run: the report builds and renders in Chromium, the outputs of prediction and
scoring are complete, and a submission that fails its check leaves no file behind."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from browser import require_chromium
from workflow_util import REPO, run_snakemake, snakemake_ok

from koqa.config import load_config
from koqa.report.check import check_report

pytestmark = pytest.mark.slow


def _scored(workdir: Path) -> list[str]:
    board = pd.read_csv(workdir / "results/leaderboard.tsv", sep="\t")
    return board["variant"].tolist()


def _f1(workdir: Path) -> dict[str, float]:
    board = pd.read_csv(workdir / "results/leaderboard.tsv", sep="\t")
    return dict(zip(board["variant"], board["f1"], strict=True))


def test_prediction_and_scoring_outputs(local_run: Path) -> None:
    results = local_run / "results"
    config = load_config(REPO / "config.yaml", REPO / "tests/config/test.yaml")
    scored = _scored(local_run)
    assert sorted(scored) == sorted([*config["variants"], "ensemble"])
    # select: greedy; the ensemble's own record holds what the leaderboard shows
    f1 = _f1(local_run)
    assert f1["ensemble"] >= max(f1[variant] for variant in config["variants"])
    ensemble = json.loads((results / "predictions/ensemble/ensemble.json").read_text())
    assert ensemble["methods"][ensemble["method"]]["f1"] == pytest.approx(f1["ensemble"], abs=1e-4)
    for variant in config["variants"]:
        decisions = json.loads((results / f"predictions/{variant}/postprocess.json").read_text())
        for step in decisions["steps"]:  # every step on auto
            assert step["used"] == (step["f1_with"] > step["f1_without"])
        timing = json.loads((results / f"predictions/{variant}/test.timing.json").read_text())
        assert timing["max_new_tokens"] >= 1 and timing["n"] > 0
    for variant in scored:
        score = json.loads((results / f"scores/{variant}.json").read_text())
        assert sum(bucket["n"] for bucket in score["by_length"].values()) == score["n"]
        worst = pd.read_csv(results / f"scores/{variant}.worst.csv", keep_default_na=False)
        assert len(worst) == min(20, score["n"]) and worst["f1"].is_monotonic_increasing
        for split in ("validation", "test"):
            answers = pd.read_csv(results / f"predictions/{variant}/{split}.csv")
            assert answers.columns.tolist() == ["id", "answer"]


def test_report_renders_in_chromium(local_run: Path, tmp_path: Path) -> None:
    browser = require_chromium()
    report = tmp_path / "report.html"
    snakemake_ok(local_run, "--report", str(report))
    found = check_report(report, browser)  # raises if an image or page does not render
    expected = {
        "results/report/f1_by_variant.svg",
        "results/report/f1_by_answer_length.svg",
        "results/report/snapping.svg",
        "results/report/loss_curves.svg",
        "results/report/leaderboard.html",
        "results/report/clean_report.html",
        "results/report/stats.html",
        *(f"results/report/worst/{variant}.html" for variant in _scored(local_run)),
    }
    assert expected <= set(found)
    assert found["results/report/leaderboard.html"]["table_rows"] == len(_scored(local_run)) + 1
    assert any(path.startswith("results/training/") for path in found)  # curves per variant


def test_a_submission_failing_its_check_leaves_no_file(local_run: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    shutil.copytree(local_run, workdir, symlinks=True)
    draft = "results/predictions/submission_draft.csv"
    # the copy's absolute paths differ from the run's, so only file times may decide what reruns
    only_mtime = ("--rerun-triggers", "mtime", "--cores", "1")
    snakemake_ok(workdir, *only_mtime, draft)  # a temp() file survives when asked for itself
    lines = (workdir / draft).read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].split(",")[0] + ","  # the second answer emptied
    (workdir / draft).write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = run_snakemake(workdir, *only_mtime, "results/submission.csv")
    assert result.returncode != 0
    assert not (workdir / "results/submission.csv").exists()
    log = (workdir / "results/logs/submission.log").read_text(encoding="utf-8")
    assert "empty answer in rows [2]" in log
