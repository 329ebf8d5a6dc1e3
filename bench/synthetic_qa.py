"""Synthetic cloze questions over training contexts: more rows of the KorQuAD task's shape for a
small model trained from scratch, which has too few real questions to learn the task from.

A question is one sentence of a context with a noun (or a number, or a date of several words) taken
out and a question ending put after it, the taken-out words its answer, at their place in the
context: ``1989년 2월 15일 여의도 농민 폭력 시위를 주도한 혐의로 지명수배되었다.`` gives
``여의도 농민 폭력 시위를 주도한 혐의로 지명수배되었다 언제인가?`` → ``1989년 2월 15일``. KorQuAD's
questions are mostly such rewordings of one sentence (its answer an entity, number or date without
its particle), so these ask for the same skill: find the sentence that matches the question and
copy the missing words (docs/quality.md: for the 1.32M-parameter model they did not help within
1,500 steps). Hand-written because no library makes Korean cloze questions; it knows only particles
and digits, no tagger, so a noun that ends in a particle's letters loses them (여의도 → 여의).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

# Particles (josa) and copula endings a noun may carry, longest first: an answer is the word
# without it, as KorQuAD's answers are
_PARTICLES = (
    "은 는 이 가 을 를 의 에 에서 에서는 에게 에는 으로 로 으로는 과 와 도 만 까지 부터 이다 였다 "
    "이며 이고 라는 이라는 인 이었다 에도 으로서 로서 처럼 보다 및"
)
PARTICLES = sorted(_PARTICLES.split(), key=len, reverse=True)
DATE = re.compile(r"\d+(년|월|일|세기)")
EDGE_PUNCTUATION = "\"'()[]<>〈〉《》「」『』,.·:;!?"
MIN_WORDS = 5  # shorter sentences make questions with too little to match
CONTEXT_WORDS = 8  # words kept on each side of the answer
DROP = 0.1  # share of the other words left out, so that a question is not the sentence verbatim


def _noun(word: str) -> tuple[str, bool]:
    """The word without edge punctuation and a final particle, and whether it had a particle or a
    digit (a noun or a number: an answer KorQuAD would ask for)."""
    stem = word.strip(EDGE_PUNCTUATION)
    for particle in PARTICLES:
        if stem.endswith(particle) and len(stem) - len(particle) >= 2:
            return stem[: -len(particle)], True
    return stem, any(c.isdigit() for c in stem)


def _askable(word: str) -> bool:
    """Whether ``word`` is a noun or a number of at least two characters without its particle."""
    stem, noun = _noun(word)
    return noun and len(stem) >= 2


def _sentences(context: str) -> Iterable[list[re.Match]]:
    """The context's words (with their offsets), a sentence at a time (a word ending in "." ends one)."""
    sentence: list[re.Match] = []
    for word in re.finditer(r"\S+", context):
        sentence.append(word)
        if word.group().endswith("."):
            yield sentence
            sentence = []
    if sentence:
        yield sentence


def _number_run(sentence: list[re.Match], i: int) -> tuple[int, int]:
    """The first and last word of the answer around word ``i``: a number takes its neighbouring
    numbers along ("1989년 2월 15일"), any other word stands alone."""

    def has_digit(k: int) -> bool:
        return any(c.isdigit() for c in sentence[k].group())

    first = last = i
    if has_digit(i):
        while first > 0 and has_digit(first - 1):
            first -= 1
        while last + 1 < len(sentence) and has_digit(last + 1):
            last += 1
    return first, last


def _ending(answer: str, rng: random.Random) -> str:
    """A question ending that asks for ``answer``'s kind."""
    if DATE.search(answer):
        return rng.choice(["날은?", "때는?", "언제인가?", "연도는?"])
    if any(c.isdigit() for c in answer):
        return rng.choice(["수는?", "얼마인가?", "몇인가?"])
    return rng.choice(["것은?", "무엇인가?", "누구인가?", "곳은?", "이름은?"])


def cloze_questions(context: str, per_sentence: int, rng: random.Random) -> list[dict]:
    """Up to ``per_sentence`` questions for each sentence of ``context``: dicts of ``question``,
    ``answer`` and ``answer_start`` (``context[answer_start:][:len(answer)] == answer``)."""
    out = []
    starts: set[int] = set()  # answers asked for already (a date is reached from each of its words)
    for sentence in _sentences(context):
        if len(sentence) < MIN_WORDS:
            continue
        nouns = [i for i, word in enumerate(sentence) if _askable(word.group())]
        for i in rng.sample(nouns, min(per_sentence, len(nouns))):
            first, last = _number_run(sentence, i)
            last_stem, _ = _noun(sentence[last].group())
            first_word = sentence[first]
            lead = len(first_word.group()) - len(first_word.group().lstrip(EDGE_PUNCTUATION))
            start = first_word.start() + lead
            end = sentence[last].start() + sentence[last].group().index(last_stem) + len(last_stem)
            answer = context[start:end]
            if len(answer) > 30 or start in starts:
                continue
            starts.add(start)
            before = [w.group() for w in sentence[max(0, first - CONTEXT_WORDS) : first]]
            after = [w.group() for w in sentence[last + 1 : last + 1 + CONTEXT_WORDS]]
            kept = [w for w in before + after if rng.random() >= DROP] or after or before
            question = " ".join(kept).rstrip(".") + " " + _ending(answer, rng)
            out.append({"question": question, "answer": answer, "answer_start": start})
    return out


def synthetic_rows(contexts: Iterable[str], per_sentence: int, seed: int) -> list[dict]:
    """Cloze questions over every context (in order, seeded), as rows koqa reads from a JSON list:
    ``id`` (``syn-<n>``), ``context``, ``question``, ``answer``, ``answer_start``."""
    rng = random.Random(seed)
    rows = []
    for context in contexts:
        for question in cloze_questions(context, per_sentence, rng):
            rows.append({"id": f"syn-{len(rows)}", "context": context, **question})
    return rows
