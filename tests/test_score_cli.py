"""Scoring files: the score command users run on their own CSVs, the raw gold answers validation is
scored against, and the worst-predictions table."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from koqa.data.clean import clean_table
from koqa.data.ingest import InputError
from koqa.score import metric
from koqa.score.cli import main
from koqa.score.evaluation import evaluate, raw_gold, read_answers, score_record

CONFIG = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text(encoding="utf-8"))
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
        [sys.executable, "-m", "koqa.score.cli", str(predictions), str(labelled)],
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
    rows = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "context": ["ca", "cb", "cc", "cd"],
            "question": ["qa", "qb", "qc", "qd"],
        }
    )
    gold = {"a": "타임", "b": "2015년", "c": "용역 입찰담합", "d": "한빛"}
    predictions = {"a": "타임", "b": "2015년 8월", "c": "전혀"}
    record, worst = evaluate(predictions, gold, rows, count=3)
    assert worst["id"].tolist() == ["c", "d", "b"]  # 0 (longer gold first), 0 (missing), 0.83
    assert worst.columns.tolist() == ["id", "f1", "answer", "gold", "question", "context"]
    assert worst.loc[2, "f1"] == pytest.approx(0.8333, abs=1e-4)
    assert worst.loc[0, "context"] == "cc" and worst.loc[0, "gold"] == "용역 입찰담합"
    assert record == score_record(predictions, gold)


def test_evaluate_scores_each_row_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(metric, "char_f1", lambda *pair: calls.append(pair) or 0.5)
    rows = pd.DataFrame({"id": ["a", "b"], "question": ["q", "q"], "context": ["c", "c"]})
    record, worst = evaluate({"a": "x", "b": "y"}, {"a": "x", "b": "z"}, rows)
    assert len(calls) == 2
    assert record["f1"] == 0.5 and record["by_length"]["1-3"]["f1"] == 0.5
    assert worst["f1"].tolist() == [0.5, 0.5]


def _raw_table(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["id", "context", "question", "answer"], dtype="string")
    return frame.assign(answer_start=pd.NA, source_row=range(1, len(rows) + 1))


def test_validation_is_scored_against_the_raw_answers() -> None:
    raw = _raw_table(
        [
            ("T0", "잡지 “타임”이 보도했다.", "어느 잡지?", "“타임”"),
            ("T1", "장보람 대표가 말했다.", "누가?", "장\u200b보람"),
            ("T2", "장보람 대표가 말했다.", "누가?", "장보람"),  # merged into T1
        ]
    )
    options = CONFIG["clean"] | {"synonyms": None}
    kept = clean_table(raw, options, labelled=True).kept
    assert kept["id"].tolist() == ["T0", "T1"]
    assert kept["answer"].tolist() == ['"타임"', "장보람"]  # what cleaning leaves
    predictions = {"T0": "타임", "T1": "장보람"}
    cleaned = score_record(predictions, dict(zip(kept["id"], kept["answer"], strict=True)))
    assert cleaned["f1"] == 1.0  # the overstatement the grader would not give

    gold = raw_gold(kept, raw)
    assert gold == {"T0": "“타임”", "T1": "장\u200b보람"}
    record = score_record(predictions, gold)
    assert record["f1"] == pytest.approx((2 / 3 + 6 / 7) / 2)  # “타임” 0.667, 장\u200b보람 0.857


def test_raw_gold_needs_every_row_in_the_raw_table() -> None:
    raw = _raw_table([("T0", "맥락", "질문", "답")])
    rows = pd.DataFrame({"id": ["T0", "T9"], "answer": ["답", "답"]})
    with pytest.raises(ValueError, match=r"no raw training row: ids \['T9'\]"):
        raw_gold(rows, raw)
