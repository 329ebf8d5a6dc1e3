"""Answer-to-context alignment: each method in turn, and the surface form it yields."""

import pytest

from koqa.align import align_answer

CONTEXT = "한빛전자는 1억 8천만 원 규모의 용역 입찰담합으로 3,500억 원의 과징금을 받았다."


@pytest.mark.parametrize(
    ("answer", "method", "surface"),
    [
        ("1억 8천만 원", "exact", "1억 8천만 원"),
        ("1억8천만원", "whitespace", "1억 8천만 원"),
        ("용역입찰담합", "whitespace", "용역 입찰담합"),
        ("3500억원", "loose", "3,500억 원"),
        ("한빛전자가", "fuzzy", "한빛전자는"),
        ("삼성바이오로직스", "none", "삼성바이오로직스"),
    ],
)
def test_methods_in_order(answer: str, method: str, surface: str) -> None:
    alignment = align_answer(CONTEXT, answer)
    assert alignment.method == method
    assert alignment.surface(CONTEXT, answer) == surface
    if method != "none":
        assert CONTEXT[alignment.start : alignment.end] == surface


def test_given_offset_wins_over_an_earlier_occurrence() -> None:
    context = "원 가격과 원 가격"
    alignment = align_answer(context, "원 가격", given_start=6)
    assert (alignment.start, alignment.method) == (6, "given")


def test_given_offset_tolerates_a_removed_space() -> None:
    alignment = align_answer("가 나다", "나다", given_start=1)
    assert (alignment.start, alignment.method) == (2, "given")


def test_empty_answer_is_unaligned() -> None:
    assert align_answer(CONTEXT, "").method == "none"
