"""Several training files through the workflow: the sample's train.csv plus the KorQuAD 1.0 dev set
(SQuAD JSON, capped and weighted) are ingested, cleaned and split with an account per source, the
validation rows come from the contest-shaped file alone, and their raw gold answers are found.

KorQuAD is read-only shared data beside the repository (``../shared/data/korquad/``), never copied
into it. Without it the test is skipped, except under CI, where it must run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_util import REPO, copy_repo

from koqa.data.ingest import read_records
from koqa.score.evaluation import raw_gold

KORQUAD = (REPO / "../shared/data/korquad/KorQuAD_v1.0_dev.json").resolve()
KORQUAD_ROWS = 5_774
CAP, WEIGHT = 300, 2
TARGETS = [
    "results/data/raw/train.parquet",
    "results/data/clean_report.json",
    "results/data/split/train.parquet",
    "results/data/split/validation.parquet",
    "results/data/split_report.json",
]

if not KORQUAD.is_file() and not os.environ.get("CI"):
    pytest.skip(f"{KORQUAD} not found (shared data; required under CI)", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data stages run on the test config with two training files."""
    root = copy_repo(tmp_path_factory.mktemp("sources"))
    sources = {
        "data": {
            "train": [
                "resources/sample/train.csv",
                {"path": str(KORQUAD), "name": "korquad", "cap": CAP, "weight": WEIGHT},
            ]
        }
    }
    (root / "sources.yaml").write_text(yaml.safe_dump(sources), encoding="utf-8")
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *TARGETS]
    result = subprocess.run(
        [*command, "--configfile", "tests/config/test.yaml", "sources.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "results/data"


def test_every_source_is_accounted_for(results: Path) -> None:
    sample_rows = len(read_records(REPO / "resources/sample/train.csv", required=("answer",)))
    raw = pd.read_parquet(results / "raw/train.parquet")
    assert raw["source"].value_counts().to_dict() == {"train": sample_rows, "korquad": KORQUAD_ROWS}

    report = json.loads((results / "clean_report.json").read_text(encoding="utf-8"))["train"]
    by_source = report["sources"]
    assert {name: counts["rows_in"] for name, counts in by_source.items()} == {
        "train": sample_rows,
        "korquad": KORQUAD_ROWS,
    }
    for counts in by_source.values():
        assert counts["rows_in"] == counts["rows_kept"] + counts["rows_dropped"]
        assert counts["rows_dropped"] == sum(counts["dropped_by_reason"].values())
    assert by_source["korquad"]["rows_kept"] == CAP
    assert by_source["korquad"]["dropped_by_reason"]["over_cap"] > 5000
    assert "over_cap" not in by_source["train"]["dropped_by_reason"]
    assert report["rows_kept"] == sum(counts["rows_kept"] for counts in by_source.values())


def test_validation_comes_from_the_contest_file_and_korquad_is_oversampled(results: Path) -> None:
    train = pd.read_parquet(results / "split/train.parquet")
    validation = pd.read_parquet(results / "split/validation.parquet")
    split_report = json.loads((results / "split_report.json").read_text(encoding="utf-8"))
    assert set(validation["source"]) == {"train"}
    assert set(train["context"]).isdisjoint(validation["context"])
    korquad = train[train["source"] == "korquad"]
    assert korquad["id"].nunique() == CAP and len(korquad) == WEIGHT * CAP
    assert split_report["korquad"]["train_rows_weighted"] == WEIGHT * CAP
    assert (train.loc[train["source"] == "train", "id"].value_counts() == 1).all()


def test_the_raw_gold_answers_of_validation_are_found(results: Path) -> None:
    validation = pd.read_parquet(results / "split/validation.parquet")
    raw = pd.read_parquet(results / "raw/train.parquet", columns=["id", "answer"])
    gold = raw_gold(validation, raw)
    assert len(gold) == len(validation) > 0
