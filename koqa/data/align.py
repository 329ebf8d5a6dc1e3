"""Align each training answer to its surface form in the context.

The methods are tried in order and the first that succeeds is recorded:

``given``      the dataset's own ``answer_start`` points at the answer (SQuAD/KorQuAD);
``exact``      the answer is a substring of the context;
``whitespace`` it is once spaces are ignored (``1억8천만원`` ~ ``1억 8천만 원``);
``normalized`` it is once spaces are ignored, numbers are read as values with their units
               (``180,000,000원`` ~ ``1억 8천만 원``, ``3.5퍼센트`` ~ ``3.5%``, see
               :mod:`koqa.data.numbers`) and the synonym table's variants read as their canonical form
               (``공정위`` ~ ``공정거래위원회``, see :mod:`koqa.data.synonyms`);
``fuzzy``      the best word-aligned span of the context by character F1 reaches ``min_f1``;
``none``       nothing matched.

The training target becomes the context's surface form, so the model learns to copy from the
context; the original answer is kept for scoring.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache

from koqa.data.numbers import NUMBER, canonical_number
from koqa.score.metric import char_f1

METHODS = ("given", "exact", "whitespace", "normalized", "fuzzy", "none")
_WORD = re.compile(r"\S+")
_WHITESPACE = re.compile(r"\s+")
# A number's value is wrapped in private-use delimiters so 180000000 never matches inside 1800000000.
_OPEN, _CLOSE = "\ue000", "\ue001"


@dataclass(frozen=True)
class Alignment:
    """Where the answer sits in the context (``start`` < 0 when unaligned) and how it was found."""

    start: int
    end: int
    method: str

    def surface(self, context: str, answer: str) -> str:
        """The context's text for this alignment, or the answer itself when unaligned."""
        return context[self.start : self.end] if self.start >= 0 else answer


class _Key:
    """A matching key of a text, made of pieces. A plain piece is a stretch of the text with its
    whitespace dropped; a whole piece is the canonical form of a number or synonym, standing as a
    whole for its span of the text."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pieces: list[str] = []
        self.starts: list[int] = []  # where each piece starts in the key
        self.spans: list[tuple[int, int]] = []  # the text each piece stands for
        self.whole: list[bool] = []
        self.length = 0

    @cached_property
    def text(self) -> str:
        """All pieces joined; read only once the key is built (:func:`_match_key`)."""
        return "".join(self.pieces)

    def add(self, piece: str, span: tuple[int, int], whole: bool) -> None:
        if piece:
            self.pieces.append(piece)
            self.starts.append(self.length)
            self.spans.append(span)
            self.whole.append(whole)
            self.length += len(piece)

    def add_plain(self, start: int, end: int) -> None:
        self.add(_squeeze(self.source[start:end]), (start, end), whole=False)

    def _source_index(self, piece: int, offset: int) -> int:
        """Where the ``offset``-th character of a plain piece sits in the text."""
        start, end = self.spans[piece]
        return [i for i in range(start, end) if not self.source[i].isspace()][offset]

    def find(self, needle: str) -> tuple[int, int] | None:
        """The span of the text whose key is ``needle`` (its first occurrence), or None."""
        found = self.text.find(needle) if needle else -1
        if found < 0:
            return None
        last = found + len(needle) - 1
        first_piece = bisect_right(self.starts, found) - 1
        last_piece = bisect_right(self.starts, last) - 1
        if self.whole[first_piece]:
            start = self.spans[first_piece][0]
        else:
            start = self._source_index(first_piece, found - self.starts[first_piece])
        if self.whole[last_piece]:
            end = self.spans[last_piece][1]
        else:
            end = self._source_index(last_piece, last - self.starts[last_piece]) + 1
        return start, end


class Aligner:
    """Aligns answers to contexts with one synonym table (variant -> canonical form)."""

    def __init__(self, synonyms: Mapping[str, str] | None = None, min_f1: float = 0.5) -> None:
        self.min_f1 = min_f1
        # Variants and canonical forms (a canonical form may contain its variant: 서울대 ->
        # 서울대학교) both stand for the canonical form's key, longest first; spaces may occur inside.
        self._canonical = {
            _squeeze(text): _match_key(canonical, NUMBER, {}).text
            for variant, canonical in (synonyms or {}).items()
            for text in (variant, canonical)
        }
        variants = sorted(self._canonical, key=len, reverse=True)
        alternatives = "|".join(r"\s*".join(map(re.escape, v)) for v in variants)
        self._special = (
            re.compile(f"(?P<variant>{alternatives})|{NUMBER.pattern}") if variants else NUMBER
        )
        # rows of one context usually come together: a few recent context keys are enough
        self._context_key = lru_cache(maxsize=16)(self._key)

    def _key(self, text: str) -> _Key:
        return _match_key(text, self._special, self._canonical)

    def __call__(self, context: str, answer: str, given_start: int | None = None) -> Alignment:
        """Locate ``answer`` in ``context`` with the first method that works (module docstring)."""
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
        span = _find_ignoring_spaces(context, answer)
        if span:
            return Alignment(*span, "whitespace")
        # only an answer holding a number or synonym has a normalized form of its own
        span = self._special.search(answer) and self._context_key(context).find(
            self._key(answer).text
        )
        if span:
            return Alignment(*span, "normalized")
        start, end, f1 = _best_fuzzy_span(context, answer)
        if f1 >= self.min_f1:
            return Alignment(start, end, "fuzzy")
        return Alignment(-1, -1, "none")


def align_answer(
    context: str, answer: str, min_f1: float = 0.5, synonyms: Mapping[str, str] | None = None
) -> Alignment:
    """Align one answer with a fresh :class:`Aligner` (for many rows, build one and reuse it)."""
    return Aligner(synonyms, min_f1)(context, answer)


def _squeeze(text: str) -> str:
    return _WHITESPACE.sub("", text)


def _find_ignoring_spaces(context: str, answer: str) -> tuple[int, int] | None:
    """The first span of ``context`` that equals ``answer`` once whitespace is dropped from both."""
    chars = _squeeze(answer)
    match = re.search(r"\s*".join(map(re.escape, chars)), context) if chars else None
    return match.span() if match else None


def _match_key(text: str, special: re.Pattern[str], canonical: Mapping[str, str]) -> _Key:
    """The key of ``text``: whitespace dropped, and each match of ``special`` (a number, or a
    synonym variant or canonical form) replaced by its canonical form."""
    key = _Key(text)
    position = 0
    for match in special.finditer(text):
        key.add_plain(position, match.start())
        if match["number"]:
            key.add(_OPEN + canonical_number(match) + _CLOSE, match.span(), whole=True)
        else:
            key.add(canonical[_squeeze(match["variant"])], match.span(), whole=True)
        position = match.end()
    key.add_plain(position, len(text))
    return key


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
