"""From generated text to the scored answer: post-processing, snapping, and the per-variant decision."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from koqa.data.align import Aligner
from koqa.predict.answers import (
    clean_answer,
    final_answers,
    prompt_markers,
    snap_aligner,
    snap_decision,
    snap_to_context,
    validation_answers,
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
        ("「타임」", "타임"),
        ("“타임”", "타임"),
        ("'새봄제약'.", "새봄제약"),
        ("타임」", "타임"),
        ("(주)한빛", "(주)한빛"),
        ("한빛(주)", "한빛(주)"),
        ("(주)한빛(주)", "(주)한빛(주)"),
        ("((주)한빛)", "(주)한빛"),
        ('["천안"]', "천안"),
        ("38.9%.", "38.9%"),
        ("답변: 평택", ""),
        ("", ""),
    ],
)
def test_clean_answer(raw: str, expected: str) -> None:
    assert clean_answer(raw, MARKERS) == expected


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


def test_auto_snaps_only_when_validation_f1_rises() -> None:
    gold = {"a": "새봄제약", "b": "990억 원"}
    plain = {"a": "새봄재약", "b": "990억 원"}
    better = {"a": "새봄제약", "b": "990억 원"}
    worse = {"a": "새봄", "b": "990억 원"}
    assert snap_decision(plain, better, gold, "auto")["used"] is True
    decision = snap_decision(plain, worse, gold, "auto")
    assert decision["used"] is False
    assert decision["f1_snapped"] < decision["f1_unsnapped"]
    assert decision["changed"] == 1
    assert snap_decision(plain, worse, gold, "always")["used"] is True
    assert snap_decision(plain, better, gold, "never")["used"] is False
    with pytest.raises(ValueError, match=r"predict\.snap"):
        snap_decision(plain, better, gold, "sometimes")


def test_validation_decides_and_test_follows() -> None:
    aligner = Aligner(min_f1=0.5)
    generated = pd.DataFrame({"id": ["v1"], "raw": ["새봄재약\n질문: 다음"]})
    rows = pd.DataFrame({"id": ["v1"], "context": [CONTEXT]})
    answers, decision = validation_answers(
        generated, rows, {"v1": "새봄제약"}, TEMPLATE, "auto", aligner
    )
    assert decision["used"] and decision["f1_snapped"] > decision["f1_unsnapped"]
    assert answers["answer"].tolist() == ["새봄제약에"]

    test = pd.DataFrame({"id": ["t1", "t2"], "raw": ["990억원", "「누리바이오」"]})
    test_rows = pd.DataFrame({"id": ["t1", "t2"], "context": [CONTEXT, CONTEXT]})
    snapped = final_answers(test, test_rows, TEMPLATE, snap=True, aligner=aligner)
    assert snapped["answer"].tolist() == ["990억 원", "누리바이오"]
    plain = final_answers(test, test_rows, TEMPLATE, snap=False, aligner=aligner)
    assert plain["answer"].tolist() == ["990억원", "누리바이오"]


def test_snapping_uses_the_cleaned_synonym_table() -> None:
    context = "공정거래위원회는 한빛전자에 과징금을 부과했다."
    options = CONFIG["clean"]
    aligner = snap_aligner({"공정위": "공정거래위원회"}, options, min_f1=0.9)
    assert snap_to_context("공정위", context, aligner) == "공정거래위원회"
    assert snap_to_context("공정위", context, Aligner(min_f1=0.9)) == "공정위"
    # written with full-width letters, which cleaning folds in the contexts too
    full_width = snap_aligner({"ＡＢ전자": "한빛전자"}, options, min_f1=0.9)
    assert snap_to_context("AB전자", context, full_width) == "한빛전자"


def test_answers_for_ids_without_context_fail() -> None:
    generated = pd.DataFrame({"id": ["v9"], "raw": ["x"]})
    rows = pd.DataFrame({"id": ["v1"], "context": [CONTEXT]})
    with pytest.raises(ValueError, match=r"no context row: \['v9'\]"):
        final_answers(generated, rows, TEMPLATE, snap=True, aligner=Aligner())
