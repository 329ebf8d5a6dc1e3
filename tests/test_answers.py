"""From generated text to the scored answer: post-processing steps and the per-variant decisions."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from koqa.data.align import Aligner
from koqa.predict.answers import (
    STEPS,
    Contexts,
    apply_steps,
    cut_answer,
    decide_steps,
    post_steps,
    prompt_markers,
    row_contexts,
    snap_aligner,
    snap_to_context,
    strip_trailing_period,
    strip_wrappers,
)

CONFIG = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text(encoding="utf-8"))
TEMPLATE = "맥락: {context}\n질문: {question}\n답변:"
MARKERS = prompt_markers(TEMPLATE)


def test_markers_come_from_the_template() -> None:
    assert MARKERS == ["맥락:", "질문:", "답변:"]
    assert prompt_markers("Context: {context} Q: {question} A:") == ["Context:", "Q:", "A:"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" 990억 원\n질문: 또", "990억 원"),
        ("이하준 질문: 누가", "이하준"),
        ("답변: 평택", ""),
        ("「타임」 ", "「타임」"),
        ("", ""),
    ],
)
def test_cut_answer(raw: str, expected: str) -> None:
    assert cut_answer(raw, MARKERS) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("「타임」", "타임"),
        ("“타임”", "타임"),
        ("'새봄제약'.", "새봄제약"),
        ("타임」", "타임"),
        ("(주)한빛", "(주)한빛"),
        ("한빛(주)", "한빛(주)"),
        ("(주)한빛(주)", "(주)한빛(주)"),
        ("((주)한빛)", "(주)한빛"),
        ('["천안"]', "천안"),
        ("38.9%.", "38.9%."),  # the trailing period is a step of its own
        ("", ""),
    ],
)
def test_strip_wrappers(raw: str, expected: str) -> None:
    assert strip_wrappers(raw) == expected


def test_strip_trailing_period() -> None:
    assert strip_trailing_period("38.9%.") == "38.9%"
    assert strip_trailing_period("타임。 ") == "타임"
    assert strip_trailing_period("3.5") == "3.5"


CONTEXT = "누리바이오는 2024년 7월 새봄제약에 990억 원 규모의 항체 치료제를 공급한다."


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("990억 원", "990억 원"),  # already a span: unchanged
        ("990억원", "990억 원"),  # spacing differs: the context's form
        ("새봄재약에", "새봄제약에"),  # one character garbled: the closest span
        ("완전히 다른 말", "완전히 다른 말"),  # nothing close enough: unchanged
        ("", ""),
    ],
)
def test_snap_to_context(answer: str, expected: str) -> None:
    assert snap_to_context(answer, CONTEXT, Aligner(min_f1=0.5)) == expected


def test_snapping_uses_the_cleaned_synonym_table() -> None:
    context = "공정거래위원회는 한빛전자에 과징금을 부과했다."
    options = CONFIG["clean"]
    aligner = snap_aligner({"공정위": "공정거래위원회"}, options, min_f1=0.9)
    assert snap_to_context("공정위", context, aligner) == "공정거래위원회"
    assert snap_to_context("공정위", context, Aligner(min_f1=0.9)) == "공정위"
    # written with full-width letters, which cleaning folds in the contexts too
    full_width = snap_aligner({"ＡＢ전자": "한빛전자"}, options, min_f1=0.9)
    assert snap_to_context("AB전자", context, full_width) == "한빛전자"


# cleaned as config.yaml's clean section cleans: NFKC folds ㈜ and the full-width digits, quotes
# fold to ASCII, whitespace runs collapse
RAW = "㈜새봄제약은  “타임”지와 ９９０억 원 규모의 계약을 맺었다."
ROW = Contexts('(주)새봄제약은 "타임"지와 990억 원 규모의 계약을 맺었다.', RAW)
STEP_FUNCTIONS = post_steps({}, CONFIG["clean"], snap_min_f1=0.5)


def _decide(answers: dict, gold: dict, **policies: str) -> tuple[dict, dict]:
    # with brackets: keep, a cleaned context holds 「」 as written
    contexts = {key: KEPT_BRACKETS if key == "kept" else ROW for key in answers}
    final, records = decide_steps(
        answers, contexts, gold, {name: "auto" for name in STEPS} | policies, STEP_FUNCTIONS
    )
    assert [r["step"] for r in records] == list(STEPS)
    return final, {r["step"]: r for r in records}


KEPT_BRACKETS = Contexts("잡지 「타임」", "잡지 「타임」")


def test_each_step_is_kept_only_where_it_raises_validation_f1() -> None:
    # the gold keeps its corner brackets, which the metric counts: stripping them costs F1; the
    # raw surface restores “”, ㈜ and the full-width digits; snapping repairs 규모에; the period
    # costs nothing (ASCII)
    answers = {
        "kept": "「타임」",
        "a": '"타임"',
        "b": "(주)새봄제약",
        "c": "990억 원.",
        "d": "규모에",
    }
    gold = {"kept": "「타임」", "a": "“타임”", "b": "㈜새봄제약", "c": "９９０억 원", "d": "규모의"}
    final, records = _decide(answers, gold)
    assert {name: r["used"] for name, r in records.items()} == {
        "strip_wrappers": False,
        "trailing_period": False,
        "snap": True,
        "raw_surface": True,
    }
    assert records["strip_wrappers"]["f1_with"] < records["strip_wrappers"]["f1_without"]
    assert records["trailing_period"]["f1_with"] == records["trailing_period"]["f1_without"]
    assert records["trailing_period"]["changed"] == 1
    # snapping is judged after the steps before it, the raw surface after snapping
    assert records["raw_surface"]["f1_without"] == records["snap"]["f1_with"]
    assert records["raw_surface"]["changed"] == 3
    assert records["raw_surface"]["f1_with"] == 1.0
    assert final == {
        "kept": "「타임」",
        "a": "“타임”",
        "b": "㈜새봄제약",
        "c": "９９０억 원",
        "d": "규모의",
    }


def test_always_and_never_override_the_validation_f1() -> None:
    answers, gold = {"a": "「타임」"}, {"a": "「타임」"}
    final, records = _decide(answers, gold, strip_wrappers="always", raw_surface="never")
    assert final == {"a": "타임"}
    assert records["strip_wrappers"]["used"] and not records["raw_surface"]["used"]
    with pytest.raises(ValueError, match=r"predict\.postprocess\.snap: 'maybe'"):
        _decide(answers, gold, snap="maybe")


def test_test_split_runs_the_used_steps_in_the_fixed_order() -> None:
    contexts = {"t": ROW}
    # snapping first finds the context's span, whose raw surface is then written; the other
    # order would leave the unspaced answer to snapping, which gives the cleaned span
    assert snap_to_context("990억원", ROW.cleaned, Aligner()) == "990억 원"
    for used in (["snap", "raw_surface"], ["raw_surface", "snap"]):
        assert apply_steps({"t": "990억원"}, contexts, used, STEP_FUNCTIONS) == {"t": "９９０억 원"}
    assert apply_steps({"t": "990억원"}, contexts, ["snap"], STEP_FUNCTIONS) == {"t": "990억 원"}
    assert apply_steps({"t": "「타임」."}, contexts, [], STEP_FUNCTIONS) == {"t": "「타임」."}
    with pytest.raises(ValueError, match=r"unknown post-processing steps \['stem'\]"):
        apply_steps({"t": "x"}, contexts, ["stem"], STEP_FUNCTIONS)


def test_answers_for_ids_without_context_fail() -> None:
    with pytest.raises(ValueError, match=r"no context row: \['v9'\]"):
        apply_steps({"v9": "x"}, {"v1": ROW}, ["snap"], STEP_FUNCTIONS)


def test_contexts_pair_cleaned_rows_with_their_raw_rows() -> None:
    rows = pd.DataFrame({"id": ["a"], "context": [ROW.cleaned]})
    raw = pd.DataFrame({"id": ["b", "a"], "context": ["other", RAW]})
    assert row_contexts(rows, raw) == {"a": ROW}
    with pytest.raises(ValueError, match=r"no raw row .*\['a'\]"):
        row_contexts(rows, raw.iloc[:1])
