"""Answer-to-context alignment: each method in turn, numbers and units, synonyms."""

from decimal import Decimal

import pytest

from koqa.data.align import Aligner, align_answer
from koqa.data.numbers import number_value

CONTEXT = (
    "한빛전자는 1억 8천만 원 규모의 용역 입찰담합으로 3,500억 원의 과징금을 공정거래위원회로부터 "
    "받았다. 매출은 3.5% 늘었고 영업이익률은 2.1%포인트 올랐다. 대표는 KAIST 출신이다."
)
SYNONYMS = {"공정위": "공정거래위원회", "카이스트": "KAIST", "서울대": "서울대학교"}


@pytest.mark.parametrize(
    ("answer", "method", "surface"),
    [
        ("1억 8천만 원", "exact", "1억 8천만 원"),
        ("1억8천만원", "whitespace", "1억 8천만 원"),
        ("용역입찰담합", "whitespace", "용역 입찰담합"),
        ("3.5 %", "whitespace", "3.5%"),
        ("180,000,000원", "normalized", "1억 8천만 원"),
        ("1.8억 원", "normalized", "1억 8천만 원"),
        ("3500억원", "normalized", "3,500억 원"),
        ("3.5퍼센트", "normalized", "3.5%"),
        ("2.1퍼센트포인트", "normalized", "2.1%포인트"),
        ("공정위", "normalized", "공정거래위원회"),
        ("카이스트", "normalized", "KAIST"),
        ("한빛전자가", "fuzzy", "한빛전자는"),
        ("삼성바이오로직스", "none", "삼성바이오로직스"),
    ],
)
def test_methods_in_order(answer: str, method: str, surface: str) -> None:
    alignment = Aligner(SYNONYMS)(CONTEXT, answer)
    assert alignment.method == method
    assert alignment.surface(CONTEXT, answer) == surface
    if method != "none":
        assert CONTEXT[alignment.start : alignment.end] == surface


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1억8천만", 180_000_000),
        ("1억 8천만", 180_000_000),
        ("180,000,000", 180_000_000),
        ("1.8억", 180_000_000),
        ("3억 5,000만", 350_000_000),
        ("8천5백만", 85_000_000),
        ("2만5천", 25_000),
        ("1조2천억", 1_200_000_000_000),
        ("3.5", Decimal("3.5")),
    ],
)
def test_korean_number_values(text: str, value: int | Decimal) -> None:
    assert number_value(text) == value


def test_a_number_never_matches_inside_a_larger_one() -> None:
    context = "예산은 1,800,000,000원이다."
    assert Aligner()(context, "180000000원").method != "normalized"


def test_a_canonical_form_containing_its_variant_still_matches() -> None:
    context = "그는 서울대를 졸업했다."
    alignment = Aligner({"서울대": "서울대학교"})(context, "서울대학교")
    assert (alignment.method, alignment.surface(context, "")) == ("normalized", "서울대")


def test_synonym_variants_may_be_spaced_in_the_context() -> None:
    context = "공정 거래 위원회는 과징금을 부과했다."
    alignment = Aligner(SYNONYMS)(context, "공정위")
    assert (alignment.method, alignment.surface(context, "")) == ("normalized", "공정 거래 위원회")


def test_given_offset_wins_over_an_earlier_occurrence() -> None:
    context = "원 가격과 원 가격"
    alignment = Aligner()(context, "원 가격", given_start=6)
    assert (alignment.start, alignment.method) == (6, "given")


def test_given_offset_tolerates_a_removed_space() -> None:
    alignment = Aligner()("가 나다", "나다", given_start=1)
    assert (alignment.start, alignment.method) == (2, "given")


def test_empty_answer_is_unaligned() -> None:
    assert Aligner()(CONTEXT, "").method == "none"


def test_fuzzy_threshold_is_respected() -> None:
    assert Aligner(min_f1=0.99)(CONTEXT, "한빛전자가").method == "none"
    assert align_answer(CONTEXT, "한빛전자가", 0.99).method == "none"
    assert align_answer(CONTEXT, "공정위", synonyms=SYNONYMS).method == "normalized"
