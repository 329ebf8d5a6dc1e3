"""Real data: the KorQuAD 1.0 dev set (SQuAD JSON) ingests and cleans with every answer in place.

The file is read-only shared data beside the repository (``../shared/data/korquad/``), never copied
into it. Without it the test is skipped, except under CI, where it must run.
"""

import os
from pathlib import Path

import pytest
import yaml

from koqa.data.clean import clean_table
from koqa.data.ingest import read_records
from koqa.data.synonyms import load_synonyms

REPO = Path(__file__).resolve().parents[1]
KORQUAD = REPO / "../shared/data/korquad/KorQuAD_v1.0_dev.json"
ROWS = 5_774

if not KORQUAD.is_file() and not os.environ.get("CI"):
    pytest.skip(f"{KORQUAD} not found (shared data; required under CI)", allow_module_level=True)


@pytest.fixture(scope="module")
def raw():
    return read_records(KORQUAD, required=("answer",))


@pytest.fixture(scope="module")
def options() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))["clean"]


def test_ingests_every_question(raw) -> None:
    assert len(raw) == ROWS
    assert raw["id"].is_unique
    assert raw["answer_start"].notna().all()
    for row in raw.itertuples():
        assert row.context[int(row.answer_start) :].startswith(row.answer), row.id


def test_every_answer_is_aligned_at_its_given_offset(raw, options) -> None:
    synonyms = load_synonyms(REPO / options["synonyms"])
    result = clean_table(raw, {**options, "merge_duplicates": False}, True, synonyms)
    kept = result.kept
    assert len(kept) == ROWS and result.report["rows_dropped"] == 0
    assert result.report["align_methods"]["given"] == ROWS
    assert (kept["target"] == kept["answer"]).all()
    for row in kept.itertuples():
        assert row.context[row.answer_start : row.answer_start + len(row.target)] == row.target


def test_default_cleaning_merges_repeated_paragraph_questions(raw, options) -> None:
    result = clean_table(raw, options, True, load_synonyms(REPO / options["synonyms"]))
    report = result.report
    assert report["rows_in"] == report["rows_kept"] + report["rows_dropped"] == ROWS
    assert set(report["dropped_by_reason"]) <= {"duplicate", "conflicting_duplicate"}
    assert report["align_methods"]["given"] == report["rows_kept"]
    merged_into = result.kept.set_index("id").loc[result.dropped["duplicate_of"]]
    assert (merged_into["context"].to_numpy() == result.dropped["context"].to_numpy()).all()
    assert (merged_into["question"].to_numpy() == result.dropped["question"].to_numpy()).all()
