"""End to end: the whole DAG on the sample data in a scratch copy of the repository.

Checks the stable output paths, that a second run has nothing to do, and that config changes rerun
exactly the stages that depend on them.
"""

import io
import json
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_util import REPO, run_snakemake, snakemake_ok

from koqa.config import load_config
from koqa.score.submission import read_sample_ids

pytestmark = pytest.mark.slow


def _snakemake(workdir: Path, *args: str) -> str:
    return snakemake_ok(workdir, "--cores", "2", *args)


def _planned_outputs(workdir: Path) -> set[str]:
    """Output files of the jobs a dry run would execute."""
    text = _snakemake(workdir, "--dry-run")
    outputs = set()
    for line in text.splitlines():
        match = re.match(r"\s+output: (.*)", line)
        if match:
            outputs.update(path.strip() for path in match.group(1).split(","))
    return outputs


def _edit_config(
    workdir: Path, section: str, key: str, value: object, variant: str | None = None
) -> None:
    path = workdir / "tests/config/test.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    target = config.setdefault(section, {})
    if variant:
        target = target.setdefault(variant, {})
    target[key] = value
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")


@pytest.fixture(scope="module")
def workdir(local_run: Path) -> Path:
    return local_run


def test_outputs_at_their_stable_paths(workdir: Path) -> None:
    results = workdir / "results"
    config = load_config(REPO / "config.yaml", REPO / "tests/config/test.yaml")
    variants = list(config["variants"])

    report = json.loads((results / "data/clean_report.json").read_text(encoding="utf-8"))
    for part in ("train", "test"):
        assert report[part]["rows_in"] == report[part]["rows_kept"] + report[part]["rows_dropped"]
    stats = json.loads((results / "data/stats.json").read_text(encoding="utf-8"))
    for split in ("train", "validation", "test"):
        assert list((results / "data/shards" / split).glob("part-*.parquet"))
        dropped = pd.read_parquet(results / "data/shards" / f"{split}.dropped.parquet")
        assert stats["splits"][split]["tokens"]["dropped_rows"] == len(dropped)

    board = pd.read_csv(results / "leaderboard.tsv", sep="\t")
    assert sorted(board["variant"]) == sorted([*variants, "ensemble"])
    assert board["f1"].is_monotonic_decreasing
    for variant in variants:
        assert (results / "adapters" / variant / "koqa_variant.json").is_file()
        score = json.loads((results / "scores" / f"{variant}.json").read_text())
        assert {"f1", "em", "n"} <= score.keys() and 0 <= score["f1"] <= 1
        for split in ("validation", "test"):
            predictions = pd.read_csv(results / "predictions" / variant / f"{split}.csv")
            assert list(predictions.columns) == ["id", "answer"]
        # predict.constrain: auto: validation generated both ways, the better one kept
        generated = results / "predictions" / variant
        decision = json.loads((generated / "constrain.json").read_text(encoding="utf-8"))
        chosen = "constrained" if decision["used"] else "free"
        kept = (generated / "validation.generated.csv").read_bytes()
        assert kept == (generated / f"validation.{chosen}.generated.csv").read_bytes()

    submission = pd.read_csv(results / "submission.csv", dtype=str, keep_default_na=False)
    assert list(submission.columns) == ["id", "answer"]
    assert submission["id"].tolist() == read_sample_ids(
        workdir / config["data"]["sample_submission"]
    )
    assert (submission["answer"].str.strip() != "").all()
    assert not submission["answer"].str.contains("\n").any()


def test_second_run_has_nothing_to_do(workdir: Path) -> None:
    started = time.perf_counter()
    output = _snakemake(workdir)
    elapsed = time.perf_counter() - started
    assert "Nothing to be done" in output
    print(f"no-op run: {elapsed:.2f} s")


def test_a_moved_checkout_reruns_nothing(workdir: Path, tmp_path: Path) -> None:
    """No absolute path in params or anywhere else Snakemake tracks: a finished run copied (or moved)
    to another directory is up to date there. Snakemake 9's `--list-changes params` lists every
    output whether changed or not, so the per-output status of `--summary` is checked instead."""
    moved = tmp_path / "elsewhere"
    shutil.copytree(workdir, moved, symlinks=True)  # as `cp -a`: modification times kept
    # other tests of this module edit the run's config without rerunning it: take the original
    shutil.copy2(REPO / "tests/config/test.yaml", moved / "tests/config/test.yaml")
    assert "Nothing to be done" in _snakemake(moved, "--dry-run")
    result = run_snakemake(moved, "--cores", "2", "--summary")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = pd.read_csv(io.StringIO(result.stdout), sep="\t")
    assert len(summary) > 40
    stale = summary[~summary["status"].isin(["ok", "removed temp file"])]
    assert stale.empty, stale[["output_file", "rule", "status"]].to_string()
    assert set(summary["plan"]) == {"no update"}


def test_variant_change_reruns_only_that_variant(workdir: Path) -> None:
    _edit_config(workdir, "variants", "lr", 0.002, variant="lora")
    planned = _planned_outputs(workdir)
    assert "results/adapters/lora" in planned
    assert "results/leaderboard.tsv" in planned
    assert not any(p.startswith("results/data") or p.startswith("results/model") for p in planned)
    # every ensemble member scores every member's answers (ensemble.method: auto): the others'
    # likelihoods of lora's new answers are all that reruns of them
    others = {p for p in planned if "/zeroshot" in p or "/full" in p}
    assert others == {
        f"results/predictions/{variant}/{split}.likelihood.parquet"
        for variant in ("zeroshot", "full")
        for split in ("validation", "test")
    }


def test_cleaning_change_reruns_from_cleaning_on(workdir: Path) -> None:
    _edit_config(workdir, "clean", "min_align_f1", 0.6)
    planned = _planned_outputs(workdir)
    assert "results/data/clean_report.json" in planned
    assert "results/data/shards/train" in planned
    assert not any(p.startswith("results/data/raw") for p in planned)
