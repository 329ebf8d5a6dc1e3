"""Map a span of a cleaned text back to the text as written: the answer's raw surface.

Cleaning (:mod:`koqa.data.textnorm`) folds ``㈜`` to ``(주)``, ``９９０`` to ``990``, ``“타임”`` to
``"타임"`` and collapses whitespace; the model learns and answers in that cleaned form, while the
grader compares with the gold answer as written, whose ``㈜`` or ``“`` then cost character F1. An
answer that is a span of the cleaned context is therefore written as the raw context's span that
cleans to it.

The map is the cleaning steps themselves, run on pieces of the raw text (as
:mod:`koqa.data.clean` translates a raw ``answer_start``): a raw position ``k`` lies at cleaned
position ``len(clean(raw[:k]))`` seen from the left and ``len(cleaned) - len(clean(raw[k:]))`` seen
from the right. Both grow with ``k``, so a span's ends are found by binary search (about 2 x 11
cleanings of a 2,000-character context, a few milliseconds). The raw span starts at the last
position that maps to the cleaned start (whitespace and invisible characters before the answer stay
out) and ends at the first that maps to the cleaned end, and it is used only if cleaning it gives
back exactly the cleaned span. Written by hand because no library maps offsets through Unicode
normalization and koqa's own folding; running the real steps keeps it exact whatever they are.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right

from koqa.data.textnorm import Step, clean_text

_WHITESPACE = re.compile(r"\s+")


def raw_span(
    raw: str, cleaned: str, start: int, end: int, steps: list[tuple[str, Step]]
) -> tuple[int, int] | None:
    """The span of ``raw`` that cleans to ``cleaned[start:end]`` (``cleaned`` = ``raw`` cleaned by
    ``steps``), or None when no raw span does (a span that starts or ends inside one raw character's
    expansion: ``주`` of ``(주)`` from ``㈜``)."""
    positions = range(len(raw) + 1)
    raw_start = bisect_right(
        positions, start, key=lambda k: len(cleaned) - len(clean_text(raw[k:], steps))
    )
    raw_end = bisect_left(positions, end, key=lambda k: len(clean_text(raw[:k], steps)))
    raw_start -= 1  # the last position at or before the cleaned start
    if raw_start < 0 or raw_end > len(raw) or raw_start > raw_end:
        return None
    if clean_text(raw[raw_start:raw_end], steps) != cleaned[start:end]:
        return None
    return raw_start, raw_end


def raw_surface(answer: str, cleaned: str, raw: str, steps: list[tuple[str, Step]]) -> str:
    """``answer`` as the raw context writes it, if it is a span of the cleaned context (its first
    occurrence); otherwise ``answer`` unchanged. Whitespace runs become one space (the metric
    ignores whitespace; an answer stays one line)."""
    start = cleaned.find(answer) if answer else -1
    if start < 0:
        return answer
    span = raw_span(raw, cleaned, start, start + len(answer), steps)
    return _WHITESPACE.sub(" ", raw[span[0] : span[1]]) if span else answer
