"""Cleaning steps and the accounting of every input row."""

import pandas as pd
import pytest

from koqa.clean import clean_table
from koqa.textnorm import collapse_whitespace, remove_invisible, unicode_normalize

OPTIONS = {
    "unicode_form": "NFKC",
    "keep_newlines": False,
    "max_context_chars": None,
    "drop_unaligned": False,
    "min_align_f1": 0.5,
}


def test_nfkc_folds_compatibility_characters() -> None:
    assert unicode_normalize("㈜한빛 １２３％ （주）") == "(주)한빛 123% (주)"
    assert unicode_normalize("한빛", "NFC") == "한빛"


def test_invisible_and_control_characters_removed() -> None:
    assert remove_invisible("한\u200b빛\ufeff전자\x07\r\n") == "한빛전자\n"


@pytest.mark.parametrize(("keep", "expected"), [(False, "첫 줄 둘째 줄"), (True, "첫 줄\n둘째 줄")])
def test_whitespace_runs_collapse_and_newlines_follow_the_option(keep: bool, expected: str) -> None:
    assert collapse_whitespace("  첫   줄 \n\n  둘째\t줄 ", keep_newlines=keep) == expected


def _raw(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["context", "question", "answer"])
    frame.insert(0, "id", [f"T{i}" for i in range(len(frame))])
    frame["answer_start"] = pd.NA
    frame["source_row"] = range(1, len(frame) + 1)
    return frame.astype({c: "string" for c in ("id", "context", "question", "answer")})


def test_every_training_row_is_kept_or_dropped_with_a_reason() -> None:
    context = "한빛전자는  1억 8천만 원을\n투자했다."
    raw = _raw(
        [
            (context, "얼마를 투자했나?", "1억8천만원"),
            (context, "얼마를 투자했나?", "1억8천만원"),  # duplicate
            (context, "얼마를 투자했나?", "2억 원"),  # conflicting answer
            (context, "누가 투자했나?", ""),  # empty answer
            ("", "누가?", "한빛"),  # empty context
            (context, "누가 투자했나?", "한빛전자"),
        ]
    )
    result = clean_table(raw, OPTIONS, labelled=True)
    report = result.report
    assert report["rows_in"] == report["rows_kept"] + report["rows_dropped"] == 6
    assert report["dropped_by_reason"] == {
        "duplicate": 1,
        "conflicting_duplicate": 1,
        "empty_answer": 1,
        "empty_context": 1,
    }
    assert sorted([*result.kept["id"], *result.dropped["id"]]) == sorted(raw["id"])
    first = result.kept.iloc[0]
    assert first["context"] == "한빛전자는 1억 8천만 원을 투자했다."
    assert (first["target"], first["answer"], first["align_method"]) == (
        "1억 8천만 원",
        "1억8천만원",
        "whitespace",
    )
    assert report["align_methods"]["exact"] == 1


def test_optional_filters_drop_long_contexts_and_unaligned_answers() -> None:
    raw = _raw(
        [
            ("짧은 기사", "무엇?", "기사"),
            ("아주 긴 기사 " * 20, "무엇?", "기사"),
            ("기사", "무엇?", "없음"),
        ]
    )
    options = {**OPTIONS, "max_context_chars": 50, "drop_unaligned": True}
    result = clean_table(raw, options, labelled=True)
    assert result.report["dropped_by_reason"] == {"context_too_long": 1, "unaligned": 1}
    assert result.kept["id"].tolist() == ["T0"]


def test_test_rows_are_never_dropped() -> None:
    raw = _raw([("기사", "무엇?", None), ("기사", "무엇?", None), ("", "", None)])
    result = clean_table(raw, OPTIONS, labelled=False)
    assert len(result.kept) == 3
    assert result.report["empty_fields"] == {"context": 1, "question": 1}


def test_given_offsets_are_carried_through_cleaning() -> None:
    raw = _raw([("㈜한빛의  대표는 김민수 이다", "대표는?", "김민수")])
    raw["answer_start"] = [10]
    kept = clean_table(raw, OPTIONS, labelled=True).kept
    assert kept.loc[0, "align_method"] == "given"
    assert kept.loc[0, "context"][kept.loc[0, "answer_start"] :].startswith("김민수")
