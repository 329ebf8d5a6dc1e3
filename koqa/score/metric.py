"""The competition metric: KorQuAD 1.0 character F1 and exact match, single reference.

Exactly as the Dacon 2024 Inha AI Challenge scored it (see README, "Metric"):

1. normalize: each of ``' " 《 》 < > 〈 〉 ( ) ‘ ’`` becomes a space, the text is lower-cased,
   every ASCII punctuation character is deleted and whitespace runs collapse;
2. the normalized words are concatenated, so whitespace and word order stop mattering;
3. F1 is computed over the multiset of characters, EM on the normalized strings.

Pure Python: no torch, no pandas, so it can score anything anywhere.
"""

from __future__ import annotations

import re
import string
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

_TO_SPACE = re.compile(r"[\'\"《》<>〈〉()‘’]")
_ASCII_PUNCT = str.maketrans("", "", string.punctuation)
_WHITESPACE = re.compile(r"\s+")


def normalize_answer(text: str) -> str:
    """Normalize an answer the way the official scorer does."""
    text = _TO_SPACE.sub(" ", text).lower().translate(_ASCII_PUNCT)
    return _WHITESPACE.sub(" ", text).strip()


def answer_chars(text: str) -> list[str]:
    """The characters the metric compares: normalized, whitespace removed."""
    return list("".join(normalize_answer(text).split()))


def char_f1(prediction: str, gold: str) -> float:
    """Character-level F1 between one prediction and one gold answer, in [0, 1]."""
    pred_chars, gold_chars = answer_chars(prediction), answer_chars(gold)
    common = sum((Counter(pred_chars) & Counter(gold_chars)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_chars)
    recall = common / len(gold_chars)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> bool:
    """True when both answers normalize to the same string."""
    return normalize_answer(prediction) == normalize_answer(gold)


@dataclass(frozen=True)
class Score:
    """Mean F1 and EM over the gold rows (0-1 scale) and how many rows they cover."""

    f1: float
    em: float
    n: int
    missing: int


RowScore = tuple[float, bool] | None  # one gold row's F1 and EM; None: no prediction


def row_scores(predictions: Mapping[str, str], gold: Mapping[str, str]) -> dict[str, RowScore]:
    """F1 and EM of every gold id (``None`` where the prediction is missing)."""
    return {
        row_id: None
        if row_id not in predictions
        else (char_f1(predictions[row_id], answer), exact_match(predictions[row_id], answer))
        for row_id, answer in gold.items()
    }


def mean_score(rows: Mapping[str, RowScore]) -> Score:
    """The mean of :func:`row_scores` over all their rows; a missing prediction counts 0."""
    if not rows:
        raise ValueError("cannot score against an empty gold set")
    n = len(rows)
    cast = [row for row in rows.values() if row]
    return Score(
        f1=sum(row[0] for row in cast) / n,
        em=sum(row[1] for row in cast) / n,
        n=n,
        missing=n - len(cast),
    )


def score(predictions: Mapping[str, str], gold: Mapping[str, str]) -> Score:
    """Score predictions keyed by id against gold answers keyed by id.

    Every gold row counts; an id with no prediction scores 0 and is counted in ``missing``.
    Predictions for ids that are not in ``gold`` are ignored.
    """
    return mean_score(row_scores(predictions, gold))


# Buckets of gold answer length (the characters the metric compares) for the F1-by-length view.
LENGTH_BUCKETS = ("1-3", "4-6", "7-10", "11-20", "21+")
_BUCKET_UPPER_BOUNDS = (3, 6, 10, 20)


def length_bucket(gold: str) -> str:
    """The :data:`LENGTH_BUCKETS` label of a gold answer."""
    return LENGTH_BUCKETS[bisect_left(_BUCKET_UPPER_BOUNDS, len(answer_chars(gold)))]


def score_by_length(rows: Mapping[str, RowScore], gold: Mapping[str, str]) -> dict[str, Score]:
    """:func:`mean_score` of the :func:`row_scores` ``rows`` within each length bucket of the gold
    answers that has rows, shortest first."""
    labels = {row_id: length_bucket(answer) for row_id, answer in gold.items()}
    return {
        label: mean_score({row_id: row for row_id, row in rows.items() if labels[row_id] == label})
        for label in LENGTH_BUCKETS
        if label in labels.values()
    }
