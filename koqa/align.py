"""Align each training answer to its surface form in the context.

The methods are tried in order and the first that succeeds is recorded:

``given``      the dataset's own ``answer_start`` points at the answer (SQuAD/KorQuAD);
``exact``      the answer is a substring of the context;
``whitespace`` it is once spaces are ignored (``1억8천만원`` ~ ``1억 8천만 원``);
``loose``      it is once spaces and thousands separators are ignored (``3500억`` ~ ``3,500억``);
``fuzzy``      the best word-aligned span of the context by character F1 reaches ``min_f1``;
``none``       nothing matched.

The training target becomes the context's surface form, so the model learns to copy from the
context; the original answer is kept for scoring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from koqa.metric import char_f1

METHODS = ("given", "exact", "whitespace", "loose", "fuzzy", "none")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Alignment:
    """Where the answer sits in the context (``start`` < 0 when unaligned) and how it was found."""

    start: int
    end: int
    method: str

    def surface(self, context: str, answer: str) -> str:
        """The context's text for this alignment, or the answer itself when unaligned."""
        return context[self.start : self.end] if self.start >= 0 else answer


def _find_ignoring(context: str, answer: str, ignored: str) -> tuple[int, int] | None:
    """Find ``answer`` in ``context`` when the characters in ``ignored`` are dropped from both."""
    positions = [i for i, ch in enumerate(context) if ch not in ignored]
    squeezed = "".join(context[i] for i in positions)
    needle = "".join(ch for ch in answer if ch not in ignored)
    if not needle:
        return None
    found = squeezed.find(needle)
    if found < 0:
        return None
    return positions[found], positions[found + len(needle) - 1] + 1


def _best_fuzzy_span(context: str, answer: str) -> tuple[int, int, float]:
    """The span of whole words (at most a few more than the answer has) with the best char F1."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(context)]
    max_words = len(answer.split()) + 2
    best = (-1, -1, 0.0)
    answer_chars = set(answer)
    for i, (start, _) in enumerate(words):
        if context[start] not in answer_chars:
            continue
        for j in range(i, min(i + max_words, len(words))):
            end = words[j][1]
            f1 = char_f1(context[start:end], answer)
            if f1 > best[2]:
                best = (start, end, f1)
    return best


def align_answer(
    context: str, answer: str, min_f1: float = 0.5, given_start: int | None = None
) -> Alignment:
    """Locate ``answer`` in ``context`` with the first method that works (see module docstring)."""
    if not answer:
        return Alignment(-1, -1, "none")
    if given_start is not None:
        # cleaning may have dropped a space just before the answer: allow one position of slack
        for start in (given_start, given_start + 1):
            if context[start : start + len(answer)] == answer:
                return Alignment(start, start + len(answer), "given")
    found = context.find(answer)
    if found >= 0:
        return Alignment(found, found + len(answer), "exact")
    for method, ignored in (("whitespace", " \n"), ("loose", " \n,")):
        span = _find_ignoring(context, answer, ignored)
        if span:
            return Alignment(span[0], span[1], method)
    start, end, f1 = _best_fuzzy_span(context, answer)
    if f1 >= min_f1:
        return Alignment(start, end, "fuzzy")
    return Alignment(-1, -1, "none")
