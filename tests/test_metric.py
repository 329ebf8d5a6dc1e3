"""The competition metric: worked examples from the field notes and an independent re-implementation."""

import random
import string
from collections import Counter

import pytest

from koqa.score.metric import (
    char_f1,
    exact_match,
    length_bucket,
    normalize_answer,
    row_scores,
    score,
    score_by_length,
)


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("용역 입찰담합", "용역입찰담합", 1.0),
        ("3,000MB/s", "3000MB/s", 1.0),
        ("「타임」", "타임", 2 / 3),
        ("“타임”", "타임", 2 / 3),
        ("2015년 8월", "2015년", 0.8333333333333334),
        ("1억8천만원 입니다", "1억8천만원", 0.8),
        ("(주)한빛", "주 한빛", 1.0),
        ("완전히 다름", "타임", 0.0),
        ("", "타임", 0.0),
    ],
)
def test_worked_examples(prediction: str, gold: str, expected: float) -> None:
    assert char_f1(prediction, gold) == pytest.approx(expected, abs=1e-3)


def test_exact_match_ignores_spacing_case_and_removed_punctuation() -> None:
    assert exact_match("  Samsung  전자!", "samsung 전자")
    assert exact_match("'타임'", "타임")
    assert not exact_match("「타임」", "타임")
    assert normalize_answer("〈A〉  b.") == "a b"


def _reference_f1(prediction: str, gold: str) -> float:
    """A second implementation written from the field notes' description, character by character."""
    table = {ord(c): " " for c in "'\"《》<>〈〉()‘’"}

    def chars(text: str) -> list[str]:
        text = text.translate(table).lower()
        text = "".join(c for c in text if c not in string.punctuation)
        return [c for c in text if not c.isspace()]

    p, g = chars(prediction), chars(gold)
    common = sum(min(n, Counter(g)[c]) for c, n in Counter(p).items())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def test_matches_independent_implementation_on_random_pairs() -> None:
    rng = random.Random(0)
    alphabet = list("가나다라마바사 1234,.%()'\"「」《》〈〉AbC-~‘’“”\n")
    for _ in range(2000):
        a = "".join(rng.choices(alphabet, k=rng.randint(0, 12)))
        b = "".join(rng.choices(alphabet, k=rng.randint(1, 12)))
        assert char_f1(a, b) == pytest.approx(_reference_f1(a, b), abs=1e-12)


def test_score_counts_missing_predictions_as_zero() -> None:
    gold = {"a": "타임", "b": "2015년", "c": "한빛"}
    result = score({"a": "타임", "b": "2015년 8월", "x": "ignored"}, gold)
    assert result.n == 3
    assert result.missing == 1
    assert result.f1 == pytest.approx((1 + 0.8333333 + 0) / 3, abs=1e-6)
    assert result.em == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("gold", "bucket"),
    [
        ("타임", "1-3"),
        ("3,000MB/s", "7-10"),
        ("용역 입찰담합", "4-6"),
        ("가" * 11, "11-20"),
        ("가" * 21, "21+"),
    ],
)
def test_length_bucket_counts_the_characters_the_metric_compares(gold: str, bucket: str) -> None:
    assert length_bucket(gold) == bucket


def test_score_by_length_splits_the_rows() -> None:
    gold = {"a": "타임", "b": "2015년", "c": "용역 입찰담합", "d": "한빛"}
    predictions = {"a": "타임", "b": "2015년 8월", "c": "용역입찰담합"}
    buckets = score_by_length(row_scores(predictions, gold), gold)
    assert list(buckets) == ["1-3", "4-6"]
    assert buckets["1-3"].n == 2 and buckets["1-3"].missing == 1
    assert buckets["1-3"].f1 == pytest.approx(0.5)
    assert buckets["4-6"].f1 == pytest.approx((0.8333333 + 1) / 2, abs=1e-6)
    overall = score(predictions, gold)
    assert overall.f1 == pytest.approx(
        sum(b.f1 * b.n for b in buckets.values()) / overall.n, abs=1e-12
    )
