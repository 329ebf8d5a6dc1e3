"""Cleaning steps and the accounting of every input row."""

import json
from pathlib import Path

import pandas as pd
import pytest
from input_files import csv_text, write_file

from koqa.data.clean import clean_table
from koqa.data.ingest import read_records
from koqa.data.textnorm import (
    SPECIAL_CLASSES,
    build_steps,
    clean_text,
    collapse_whitespace,
    remove_invisible,
    special_chars,
    unicode_normalize,
)

FOLD_ALL = dict.fromkeys(SPECIAL_CLASSES, "fold")
OPTIONS = {
    "unicode_form": "NFKC",
    "special_chars": FOLD_ALL,
    "keep_newlines": False,
    "synonyms": None,
    "merge_duplicates": True,
    "max_context_chars": None,
    "drop_unaligned": False,
    "min_align_f1": 0.5,
}


def test_nfkc_folds_compatibility_characters_and_nfc_does_not() -> None:
    assert unicode_normalize("㈜한빛 １２３％ （주）") == "(주)한빛 123% (주)"
    assert unicode_normalize("㈜한빛 １２３％", "NFC") == "㈜한빛 １２３％"


def test_nfkc_keeps_hangul_compatibility_jamo() -> None:
    # plain NFKC would give "가" (fused) and a conjoining vowel in place of the middle dot
    assert unicode_normalize("ㄱㅏ 정부ㆍ여당 ㅋㅋ １２") == "ㄱㅏ 정부ㆍ여당 ㅋㅋ 12"


@pytest.mark.parametrize(
    ("name", "raw", "folded"),
    [
        ("full_width", "１２３％　（주）", "123% (주)"),
        ("quotes", "“타임” ‘인용’", "\"타임\" '인용'"),
        ("brackets", "「자본시장법」 『타임』 【서울】", "〈자본시장법〉 《타임》 [서울]"),
        ("dashes", "2023–2024년 −3.5% 한국—미국", "2023-2024년 -3.5% 한국-미국"),
        ("tildes", "3∼5% 10〜20일", "3~5% 10~20일"),
        ("middle_dots", "정부ㆍ여당 한・미", "정부·여당 한·미"),
    ],
)
def test_special_character_classes_fold_to_one_form(name: str, raw: str, folded: str) -> None:
    assert special_chars(raw, name, "fold") == folded
    assert special_chars(raw, name, "keep") == raw


def test_removal_keeps_dashes_and_tildes_inside_numbers() -> None:
    text = "3∼5% 상승 ― 전년 대비 −3.5% 하락, 1-2위 ~ 최고"
    assert (
        special_chars(text, "tildes", "remove") == "3~5% 상승 ― 전년 대비 −3.5% 하락, 1-2위   최고"
    )
    assert (
        special_chars(text, "dashes", "remove") == "3∼5% 상승   전년 대비 -3.5% 하락, 1-2위 ~ 최고"
    )
    assert special_chars("“타임”지", "quotes", "remove") == " 타임 지"


def test_the_policy_is_applied_identically_to_context_question_and_answer() -> None:
    raw = _raw(
        [
            (
                "「타임」지는 3∼5% 성장한 ㈜한빛을 “올해의 기업”으로 꼽았다.",
                "「타임」은?",
                "“올해의 기업”",
            )
        ]
    )
    result = clean_table(raw, OPTIONS, labelled=True)
    row = result.kept.iloc[0]
    assert row["context"] == '〈타임〉지는 3~5% 성장한 (주)한빛을 "올해의 기업"으로 꼽았다.'
    assert row["question"] == "〈타임〉은?"
    assert (row["answer"], row["align_method"]) == ('"올해의 기업"', "exact")
    assert result.report["step_changes"]["special_chars.quotes"] == {
        "context": 1,
        "question": 0,
        "answer": 1,
    }


def test_steps_are_named_in_order_and_keep_skips_a_class() -> None:
    options = {**OPTIONS, "special_chars": {**FOLD_ALL, "quotes": "keep"}}
    names = [name for name, _ in build_steps(options)]
    assert names[:2] == ["remove_invisible", "unicode_normalize"]
    assert names[-1] == "collapse_whitespace"
    assert "special_chars.quotes" not in names and "special_chars.brackets" in names
    assert clean_text("“타임”", build_steps(options)) == "“타임”"


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
    assert result.dropped.set_index("id")["duplicate_of"].dropna().to_dict() == {
        "T1": "T0",
        "T2": "T0",
    }
    assert report["conflicts"] == [
        {
            "id": "T2",
            "kept_id": "T0",
            "question": "얼마를 투자했나?",
            "answer": "2억 원",
            "kept_answer": "1억8천만원",
        }
    ]
    first = result.kept.iloc[0]
    assert first["context"] == "한빛전자는 1억 8천만 원을 투자했다."
    assert (first["target"], first["answer"], first["align_method"]) == (
        "1억 8천만 원",
        "1억8천만원",
        "whitespace",
    )
    assert report["align_methods"]["exact"] == 1


def test_duplicates_kept_when_not_merging_but_conflicts_still_reported() -> None:
    raw = _raw(
        [
            ("기사 본문", "무엇?", "기사"),
            ("기사 본문", "무엇?", "본문"),
            ("기사 본문", "무엇?", "기사"),
        ]
    )
    result = clean_table(raw, {**OPTIONS, "merge_duplicates": False}, labelled=True)
    assert result.kept["id"].tolist() == ["T0", "T1", "T2"]
    assert (result.report["duplicates"], result.report["conflicting_duplicates"]) == (2, 1)
    assert [c["id"] for c in result.report["conflicts"]] == ["T1"]


def test_a_conflict_is_judged_against_the_row_it_is_merged_into() -> None:
    # the third row repeats the second row's answer, but is merged into the first (another answer)
    raw = _raw(
        [
            ("기사 본문", "무엇?", "기사"),
            ("기사 본문", "무엇?", "본문"),
            ("기사 본문", "무엇?", "본문"),
            ("기사 본문", "무엇?", "기사"),
        ]
    )
    result = clean_table(raw, OPTIONS, labelled=True)
    report = result.report
    assert (report["duplicates"], report["conflicting_duplicates"]) == (3, 2)
    assert report["dropped_by_reason"] == {"conflicting_duplicate": 2, "duplicate": 1}
    assert result.dropped.set_index("id")["reason"].to_dict() == {
        "T1": "conflicting_duplicate",
        "T2": "conflicting_duplicate",
        "T3": "duplicate",
    }
    assert [
        (c["id"], c["kept_id"], c["answer"], c["kept_answer"]) for c in report["conflicts"]
    ] == [
        ("T1", "T0", "본문", "기사"),
        ("T2", "T0", "본문", "기사"),
    ]


def test_synonyms_are_cleaned_like_the_text_and_used_for_alignment() -> None:
    raw = _raw([("（주）한빛은 공정거래위원회의 조사를 받았다.", "어디?", "공정위")])
    result = clean_table(raw, OPTIONS, labelled=True, synonyms={"공정위": "공정거래위원회"})
    row = result.kept.iloc[0]
    assert (row["align_method"], row["target"], row["answer"]) == (
        "normalized",
        "공정거래위원회",
        "공정위",
    )


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


def test_empty_and_null_fields_become_recorded_drops(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "context": "한빛전자는 성장했다.", "question": "누가?", "answer": "한빛전자"},
        {"id": "b", "context": None, "question": "누가?", "answer": "한빛"},
        {"id": "c", "context": "기사", "question": "  ", "answer": "기사"},
        {"id": "d", "context": "기사", "question": "무엇?", "answer": float("nan")},
    ]
    frame = read_records(write_file(tmp_path / "t.json", json.dumps(rows)), required=("answer",))
    result = clean_table(frame, OPTIONS, labelled=True)
    assert result.kept["id"].tolist() == ["a"]
    assert result.dropped.set_index("id")["reason"].to_dict() == {
        "b": "empty_context",
        "c": "empty_question",
        "d": "empty_answer",
    }


def test_a_100k_character_context_is_read_and_cleaned(tmp_path: Path) -> None:
    context = "가나다라 " * 25_000 + "한빛전자는 3,500억 원을 벌었다."
    rows = [{"id": "L1", "context": context, "question": "얼마?", "answer": "3500억원"}]
    frame = read_records(write_file(tmp_path / "long.csv", csv_text(rows)), required=("answer",))
    assert len(frame.loc[0, "context"]) > 100_000
    kept = clean_table(frame, OPTIONS, labelled=True).kept
    assert (kept.loc[0, "align_method"], kept.loc[0, "target"]) == ("normalized", "3,500억 원")
