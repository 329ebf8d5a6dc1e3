"""Properties that must hold for any input, checked with hypothesis."""

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from test_clean import OPTIONS as DEFAULT_CLEAN

from koqa.data.align import Aligner
from koqa.data.clean import clean_table
from koqa.data.textnorm import SPECIAL_CLASSES, build_steps, clean_text
from koqa.score.metric import char_f1

# Characters real Korean news text and its noise are made of, and the troublemakers of Unicode.
ALPHABET = st.one_of(
    st.sampled_from("한빛전자는억천만원조가나다의을를에서 "),
    st.sampled_from("0123456789.,%~-+/"),
    st.sampled_from("ㄱㅏㆍㅋ㈜①㎞％１２（）“”‘’「」『』【】–—−∼〜・\u3000"),
    st.sampled_from("\n\r\t\u200b\ufeff\u00ad\x07\u0301\u0338=<"),
    st.characters(codec="utf-8"),
)
TEXT = st.text(ALPHABET, max_size=40)
OPTIONS = st.fixed_dictionaries(
    {
        "unicode_form": st.sampled_from(["NFC", "NFKC", "NFD", "NFKD"]),
        "special_chars": st.fixed_dictionaries(
            {
                name: st.sampled_from(
                    ["fold", "keep"] if name == "full_width" else ["fold", "keep", "remove"]
                )
                for name in SPECIAL_CLASSES
            }
        ),
        "keep_newlines": st.booleans(),
    }
)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, options=OPTIONS)
def test_cleaning_is_idempotent(text: str, options: dict) -> None:
    steps = build_steps(options)
    once = clean_text(text, steps)
    assert clean_text(once, steps) == once


@st.composite
def context_and_answer(draw: st.DrawFn) -> tuple[str, str, int | None]:
    """A context, an answer (a span of it, possibly respaced or reformatted, or anything) and the
    span's raw offset when the answer was cut from the context."""
    context = draw(st.text(ALPHABET, min_size=1, max_size=60))
    start = draw(st.integers(0, len(context) - 1))
    end = draw(st.integers(start + 1, len(context)))
    span = context[start:end]
    answer = draw(
        st.sampled_from([span, span.replace(" ", ""), span.replace(",", ""), span + "원"])
        | st.text(ALPHABET, min_size=1, max_size=10)
    )
    return context, answer, start if answer == span else None


@settings(max_examples=150, deadline=None)
@given(case=context_and_answer())
def test_an_aligned_answer_sits_in_the_cleaned_context_at_its_offset(
    case: tuple[str, str, int | None],
) -> None:
    context, answer, start = case
    frame = pd.DataFrame(
        {
            "id": ["r"],
            "context": [context],
            "question": ["질문"],
            "answer": [answer],
            "answer_start": pd.array([start], dtype="Int64"),
            "source_row": [1],
        }
    ).astype({"id": "string", "context": "string", "question": "string", "answer": "string"})
    result = clean_table(frame, DEFAULT_CLEAN, labelled=True, synonyms={"공정위": "공정거래위원회"})
    assert result.report["rows_in"] == result.report["rows_kept"] + result.report["rows_dropped"]
    for row in result.kept.itertuples():
        if row.align_method != "none":
            assert row.context[row.answer_start : row.answer_start + len(row.target)] == row.target


@settings(max_examples=300, deadline=None)
@given(context=TEXT, answer=TEXT)
def test_alignment_spans_are_context_substrings(context: str, answer: str) -> None:
    alignment = Aligner({"서울대": "서울대학교"})(context, answer)
    if alignment.method != "none":
        assert 0 <= alignment.start < alignment.end <= len(context)
        assert alignment.surface(context, answer) == context[alignment.start : alignment.end]


@settings(max_examples=300, deadline=None)
@given(a=TEXT, b=TEXT)
def test_metric_is_symmetric_and_bounded(a: str, b: str) -> None:
    assert char_f1(a, b) == char_f1(b, a)
    assert 0.0 <= char_f1(a, b) <= 1.0
    assert char_f1(a, a) in (0.0, 1.0)
