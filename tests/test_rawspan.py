"""The raw surface of a cleaned span: real folding cases, compared as exact strings and offsets."""

from pathlib import Path

import pytest
import yaml

from koqa.data.rawspan import raw_span, raw_surface
from koqa.data.textnorm import build_steps, clean_text

CONFIG = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text(encoding="utf-8"))
STEPS = build_steps(CONFIG["clean"])
# a zero-width space, ㈜, a double space, curly quotes, full-width digits, a collapsed line break
RAW = "\u200b㈜새봄제약은  “타임”지와 ９９０억\n\n원 규모의 계약을 맺었다. "
CLEANED = '(주)새봄제약은 "타임"지와 990억 원 규모의 계약을 맺었다.'


def test_the_example_is_cleaned_as_the_pipeline_cleans_it() -> None:
    assert clean_text(RAW, STEPS) == CLEANED


@pytest.mark.parametrize(
    ("answer", "raw_start", "raw_end"),
    [
        ("(주)새봄제약", 1, 6),  # ㈜ is one raw character for three cleaned ones
        ("새봄제약은", 2, 7),
        ('"타임"', 9, 13),  # the curly quotes come back
        ("타임", 10, 12),
        ("990억 원", 16, 23),  # full-width digits, and the line breaks the space stands for
        ('은 "타임"', 6, 13),  # the double space inside the span is the raw text's
        ("맺었다.", 32, 36),  # the trailing space stays out
    ],
)
def test_raw_span_of_a_cleaned_span(answer: str, raw_start: int, raw_end: int) -> None:
    start = CLEANED.index(answer)
    assert raw_span(RAW, CLEANED, start, start + len(answer), STEPS) == (raw_start, raw_end)
    assert clean_text(RAW[raw_start:raw_end], STEPS) == answer


@pytest.mark.parametrize(
    ("answer", "surface"),
    [
        ("(주)새봄제약", "㈜새봄제약"),
        ('"타임"', "“타임”"),
        ("990억 원", "９９０억 원"),  # the line breaks become one space: answers stay one line
        ('은 "타임"지와', "은 “타임”지와"),
        ("규모의", "규모의"),
    ],
)
def test_raw_surface(answer: str, surface: str) -> None:
    assert raw_surface(answer, CLEANED, RAW, STEPS) == surface


def test_no_raw_span_inside_one_raw_characters_expansion() -> None:
    # "주" is part of the expansion of ㈜: no raw span cleans to it, the answer stays as it is
    assert raw_span(RAW, CLEANED, 1, 2, STEPS) is None
    assert raw_surface("주", CLEANED, RAW, STEPS) == "주"
    assert raw_surface("없는 말", CLEANED, RAW, STEPS) == "없는 말"
    assert raw_surface("", CLEANED, RAW, STEPS) == ""
