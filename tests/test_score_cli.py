"""Scoring files: the score command users run on their own CSVs, and the worst-predictions table."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from koqa.evaluation import read_answers, worst_predictions
from koqa.ingest import InputError
from koqa.score_cli import main

LABELLED = (
    "id,context,question,answer\n"
    'TRAIN_0,"맥락 하나\n둘째 줄",질문,타임\n'
    "TRAIN_1,맥락,질문,2015년\n"
    "TRAIN_2,맥락,질문,용역 입찰담합\n"
)


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    path.write_text(LABELLED, encoding="utf-8")
    return path


def test_scores_a_csv_against_a_labelled_csv(
    tmp_path: Path, labelled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions = tmp_path / "mine.csv"
    predictions.write_text(
        "id,answer\nTRAIN_0,타임\nTRAIN_1,2015년 8월\nOTHER,x\n", encoding="cp949"
    )
    out = tmp_path / "score.json"
    assert main([str(predictions), str(labelled), "--json", str(out)]) == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["n"] == 3 and record["missing"] == 1
    assert record["f1"] == pytest.approx((1 + 0.8333333) / 3, abs=1e-6)
    assert record["by_length"]["1-3"]["f1"] == 1.0
    printed = capsys.readouterr().out
    assert "F1 0.6111" in printed and "unexpected ids 1" in printed


def test_the_console_command_reports_bad_input(tmp_path: Path, labelled: Path) -> None:
    predictions = tmp_path / "mine.csv"
    predictions.write_text("id,prediction\nTRAIN_0,타임\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "koqa.score_cli", str(predictions), str(labelled)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "mine.csv: line 1: no 'answer' column" in result.stderr


def test_repeated_ids_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("id,answer\na,1\nb,2\na,3\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"dup.csv: row 3, field 'id': repeated id 'a'"):
        read_answers(path)


def test_worst_predictions_lowest_f1_first_with_context() -> None:
    gold = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "context": ["ca", "cb", "cc", "cd"],
            "question": ["qa", "qb", "qc", "qd"],
            "answer": ["타임", "2015년", "용역 입찰담합", "한빛"],
        }
    )
    worst = worst_predictions({"a": "타임", "b": "2015년 8월", "c": "전혀"}, gold, count=3)
    assert worst["id"].tolist() == ["c", "d", "b"]  # 0 (longer gold first), 0 (missing), 0.83
    assert worst.columns.tolist() == ["id", "f1", "answer", "gold", "question", "context"]
    assert worst.loc[2, "f1"] == pytest.approx(0.8333, abs=1e-4)
    assert worst.loc[0, "context"] == "cc"
