"""The submission: drafted in the sample's order with a fallback for empty answers, then checked as a
file; every way it can be wrong fails with a message naming the rows."""

import logging
from pathlib import Path

import pandas as pd
import pytest

from koqa.files import write_csv
from koqa.score.submission import (
    SubmissionError,
    check_submission_file,
    choose_variant,
    draft_submission,
    leaderboard,
    read_leaderboard,
)

IDS = ["TEST_0000", "TEST_0001", "TEST_0002"]


def test_draft_orders_like_the_sample_and_fills_empty_answers() -> None:
    predictions = pd.DataFrame({"id": IDS[::-1], "answer": ["셋", "  ", "하나\n둘"]})
    draft = draft_submission(predictions, IDS, fallback="-")
    assert draft["id"].tolist() == IDS
    assert draft["answer"].tolist() == ["하나 둘", "-", "셋"]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (IDS[:2], r"missing \['TEST_0002'\]"),
        ([*IDS, "TEST_9999"], r"unexpected \['TEST_9999'\]"),
        ([*IDS, "TEST_0000"], "repeat ids"),
    ],
)
def test_draft_with_wrong_ids_fails_with_a_clear_message(ids: list[str], message: str) -> None:
    predictions = pd.DataFrame({"id": ids, "answer": ["x"] * len(ids)})
    with pytest.raises(SubmissionError, match=message):
        draft_submission(predictions, IDS, fallback="-")


def test_a_written_draft_passes_the_check(tmp_path: Path) -> None:
    predictions = pd.DataFrame({"id": IDS, "answer": ['"따옴표", 쉼표', "", "a\r\nb"]})
    path = tmp_path / "draft.csv"
    write_csv(draft_submission(predictions, IDS, fallback="-"), path)
    assert check_submission_file(path, IDS) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"id,answer\nTEST_0000,a\nTEST_0002,b\nTEST_0001,c\n", "ids differ .* from row 2"),
        (b"id,answer\nTEST_0000,a\nTEST_0001,b\n", r"2 rows, sample has 3"),
        (b"id,answer\nTEST_0000,a\nTEST_0001, \nTEST_0002,c\n", r"empty answer in rows \[2\]"),
        (b'id,answer\nTEST_0000,a\nTEST_0001,"b\nb"\nTEST_0002,c\n', r"line break in rows \[2\]"),
        (b"id,answer\nTEST_0000,a\nTEST_0001,b,x\nTEST_0002,c\n", r"not two fields in rows \[2\]"),
        (b"id,answer\nTEST_0000,\xb0\xa1\nTEST_0001,b\nTEST_0002,c\n", "not UTF-8"),
        (b"\xef\xbb\xbfid,answer\nTEST_0000,a\nTEST_0001,b\nTEST_0002,c\n", "byte-order mark"),
        (b"ID,Answer\nTEST_0000,a\nTEST_0001,b\nTEST_0002,c\n", "header"),
    ],
)
def test_check_rejects_a_bad_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "draft.csv"
    path.write_bytes(content)
    with pytest.raises(SubmissionError, match=message):
        check_submission_file(path, IDS)


# answers a spreadsheet program would run as formulas, and answers that merely start with a sign
FORMULAS = ["=1+1", "+82-2-123-4567", "@SUM(1,2)", "-2+3+cmd|' /C calc'!A0", "="]
HARMLESS = ["-", "+", "-3.5%", "+1,000", "3-4", "a=b", "서울"]


def test_the_check_warns_of_answers_that_would_run_as_formulas(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    answers = HARMLESS + FORMULAS * 5  # 25 formulas: the warning counts them, names the first 20
    ids = [f"TEST_{i:04d}" for i in range(len(answers))]
    path = tmp_path / "draft.csv"
    write_csv(pd.DataFrame({"id": ids, "answer": answers}), path)
    with caplog.at_level(logging.WARNING, logger="koqa"):
        assert check_submission_file(path, ids) == len(answers)
    (record,) = caplog.records
    flagged = ids[len(HARMLESS) :]
    assert record.levelno == logging.WARNING
    assert "25 answers" in record.message
    assert ", ".join(flagged[:20]) + " (first 20 of 25)" in record.message
    assert not any(i in record.message for i in ids[: len(HARMLESS)] + flagged[20:])
    assert pd.read_csv(path, keep_default_na=False)["answer"].tolist() == answers  # unchanged


def test_no_warning_without_formulas(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ids = [f"TEST_{i:04d}" for i in range(len(HARMLESS))]
    path = tmp_path / "draft.csv"
    write_csv(pd.DataFrame({"id": ids, "answer": HARMLESS}), path)
    with caplog.at_level(logging.WARNING, logger="koqa"):
        check_submission_file(path, ids)
    assert not caplog.records


def test_leaderboard_sorted_and_best_chosen() -> None:
    board = leaderboard(
        [
            {"variant": "zeroshot", "method": "zeroshot", "f1": 0.1, "em": 0.0, "n": 3},
            {"variant": "lora", "method": "lora", "f1": 0.7, "em": 0.3, "n": 3},
            {"variant": "ensemble", "method": "vote", "f1": 0.7, "em": 0.4, "n": 3},
            {"variant": "full", "method": "full", "f1": 0.5, "em": 0.2, "n": 3},
        ]
    )
    assert board["variant"].tolist() == ["ensemble", "lora", "full", "zeroshot"]
    assert choose_variant(board, "best") == "ensemble"
    assert choose_variant(board, "full") == "full"
    with pytest.raises(SubmissionError, match="not on the leaderboard"):
        choose_variant(board, "dora")


def test_leaderboard_read_back_keeps_variant_names_that_look_like_values(tmp_path: Path) -> None:
    rows = [
        {"variant": name, "method": "lora", "f1": f1, "em": 0.0, "n": 3, "snap": False}
        for name, f1 in (("1", 0.9), ("NA", 0.8), ("None", 0.7), ("nan", 0.6))
    ]
    rows.append({"variant": "ensemble", "method": "ensemble", "f1": 0.5, "em": 0.0, "n": 3})
    path = tmp_path / "leaderboard.tsv"
    write_csv(leaderboard(rows), path, sep="\t")
    board = read_leaderboard(path)
    assert board["variant"].tolist() == ["1", "NA", "None", "nan", "ensemble"]
    assert choose_variant(board, "best") == "1"
    assert choose_variant(board, "NA") == "NA"
    assert board["snap"].isna().tolist() == [False] * 4 + [True]  # the ensemble has no snap
    assert board["f1"].dtype == float
