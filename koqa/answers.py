"""From generated text to the answer that gets scored: post-processing and optional span snapping.

Post-processing (always): cut the text at a newline or at an echoed prompt marker (``질문:`` ...,
taken from the prompt template), strip wrapping quotes and brackets, trim whitespace.

Snapping (optional, decided per variant on validation): replace an answer that is not a substring of
its context by the context span it matches best, using the alignment that cleaning uses for training
answers (see :mod:`koqa.align`). A model that copies a span but garbles a character gets the span
back; a model that paraphrases correctly can lose characters, so whether snapping helps is measured
on the validation split and, with ``snap: auto``, used only where it raises F1.

No torch: the rule that applies it stays light.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pandas as pd

from koqa.align import Aligner
from koqa.metric import Score, score

SNAP_POLICIES = ("auto", "always", "never")
_PAIRS = {
    '"': '"',
    "'": "'",
    "“": "”",
    "‘": "’",
    "「": "」",
    "『": "』",
    "《": "》",
    "〈": "〉",
    "<": ">",
    "(": ")",
    "[": "]",
    "{": "}",
}
_CLOSERS = {close: open_ for open_, close in _PAIRS.items()}
_TRAILING_PERIOD = re.compile(r"[.。]+$")


def prompt_markers(template: str) -> list[str]:
    """The literal labels of the prompt template (``맥락:``, ``질문:``, ``답변:``), one per line."""
    literal = re.sub(r"\{context\}|\{question\}", "\n", template)
    return [line.strip() for line in literal.splitlines() if line.strip()]


def _wraps(text: str) -> bool:
    """Whether the first character opens a pair that the last character closes (``(주)한빛(주)``
    does not: its first ``(`` closes early)."""
    opener, closer = text[0], _PAIRS.get(text[0])
    if len(text) < 2 or text[-1] != closer:
        return False
    if opener == closer:  # quotes: the ends are all there is to check
        return True
    depth = 0
    for position, char in enumerate(text):
        depth += (char == opener) - (char == closer)
        if depth == 0:
            return position == len(text) - 1
    return False


def _strip_wrappers(text: str) -> str:
    """Remove quote/bracket pairs wrapping the whole text, a lone unmatched one at either end, and a
    trailing period: ``「타임」`` -> ``타임``, ``타임」`` -> ``타임``; ``(주)한빛`` stays."""
    while True:
        text = _TRAILING_PERIOD.sub("", text.strip()).strip()
        if text and _wraps(text):
            text = text[1:-1]
        elif text[:1] in _PAIRS and _PAIRS[text[0]] not in text[1:]:
            text = text[1:]
        elif text[-1:] in _CLOSERS and _CLOSERS[text[-1]] not in text[:-1]:
            text = text[:-1]
        else:
            return text


def clean_answer(text: str, markers: list[str]) -> str:
    """Cut ``text`` at its first newline or prompt marker, then strip wrappers and whitespace."""
    for stop in ("\n", *markers):
        text = text.split(stop, 1)[0]
    return _strip_wrappers(text)


def snap_to_context(answer: str, context: str, aligner: Aligner) -> str:
    """The context's own span for ``answer`` (exact, spacing- or number-format-insensitive, or the
    best by character F1 >= the aligner's ``min_f1``); the answer itself when nothing matches."""
    if not answer or answer in context:
        return answer
    return aligner(context, answer).surface(context, answer)


def snap_decision(
    unsnapped: Mapping[str, str], snapped: Mapping[str, str], gold: Mapping[str, str], policy: str
) -> dict:
    """Score both versions of the validation answers and decide whether to snap under ``policy``.

    ``auto`` snaps only when it raises validation F1. Returns a JSON-ready record of both scores,
    how many answers snapping changed, and the decision (``used``).
    """
    if policy not in SNAP_POLICIES:
        raise ValueError(f"predict.snap: {policy!r} is not one of {SNAP_POLICIES}")
    plain: Score = score(unsnapped, gold)
    snap: Score = score(snapped, gold)
    used = policy == "always" or (policy == "auto" and snap.f1 > plain.f1)
    return {
        "policy": policy,
        "used": used,
        "f1_unsnapped": plain.f1,
        "f1_snapped": snap.f1,
        "em_unsnapped": plain.em,
        "em_snapped": snap.em,
        "changed": sum(unsnapped[k] != snapped[k] for k in unsnapped),
        "n": plain.n,
    }


def snap_answers(generated: pd.DataFrame, rows: pd.DataFrame, min_f1: float) -> dict[str, str]:
    """``id -> snapped answer`` for the generated answers, with contexts from the split's rows."""
    contexts = dict(zip(rows["id"], rows["context"], strict=True))
    aligner = Aligner(min_f1=min_f1)
    unknown = sorted(set(generated["id"]) - set(contexts))
    if unknown:
        raise ValueError(f"generated answers for ids with no context row: {unknown[:5]}")
    return {
        row_id: snap_to_context(answer, contexts[row_id], aligner)
        for row_id, answer in zip(generated["id"], generated["answer"], strict=True)
    }


def final_answers(
    generated: dict[str, pd.DataFrame],
    rows: dict[str, pd.DataFrame],
    template: str,
    policy: str,
    min_f1: float,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Each split's final ``id,answer`` table and the snapping decision made on ``validation``.

    ``generated`` (``id``, ``raw`` text) and ``rows`` (``id``, ``context``; gold ``answer`` for
    validation) are keyed by split.
    """
    markers = prompt_markers(template)
    cleaned = {
        split: frame.assign(answer=[clean_answer(text, markers) for text in frame["raw"]])
        for split, frame in generated.items()
    }
    snapped = {split: snap_answers(cleaned[split], rows[split], min_f1) for split in cleaned}
    validation = cleaned["validation"]
    decision = snap_decision(
        dict(zip(validation["id"], validation["answer"], strict=True)),
        snapped["validation"],
        dict(zip(rows["validation"]["id"], rows["validation"]["answer"], strict=True)),
        policy,
    )
    finals = {
        split: pd.DataFrame(
            {
                "id": frame["id"],
                "answer": frame["id"].map(snapped[split]) if decision["used"] else frame["answer"],
            }
        )
        for split, frame in cleaned.items()
    }
    return finals, decision
