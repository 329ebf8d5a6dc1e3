"""From generated text to the answer that gets scored: post-processing and optional span snapping.

Post-processing (always): cut the text at a newline or at an echoed prompt marker (``질문:`` ...,
taken from the prompt template), strip wrapping quotes and brackets and a trailing period, trim
whitespace.

Snapping (optional, decided per variant on validation): replace an answer that is not a substring of
its context by the context span it matches best, using the alignment that cleaning uses for training
answers, synonym table included (see :mod:`koqa.data.align`). A model that copies a span but garbles a
character gets the span back; a model that paraphrases correctly can lose characters, so whether
snapping helps is measured on the validation split against the raw gold answers and, with
``snap: auto``, used only where it raises F1; the other splits follow that decision.

No torch: the rules that apply it stay light.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pandas as pd

from koqa.data.align import Aligner
from koqa.data.clean import clean_synonyms
from koqa.data.textnorm import build_steps
from koqa.score.metric import Score, score

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


def snap_aligner(synonyms: Mapping[str, str], clean_options: dict, min_f1: float) -> Aligner:
    """The aligner cleaning uses for training answers, with snapping's ``min_f1``: the synonym table
    (variant -> canonical form, ``clean.synonyms``) cleaned by the same steps as the contexts."""
    return Aligner(clean_synonyms(synonyms, build_steps(clean_options)), min_f1)


def snap_answers(answers: pd.DataFrame, rows: pd.DataFrame, aligner: Aligner) -> dict[str, str]:
    """``id -> snapped answer`` for the ``id,answer`` table, with contexts from the split's rows."""
    contexts = dict(zip(rows["id"], rows["context"], strict=True))
    unknown = sorted(set(answers["id"]) - set(contexts))
    if unknown:
        raise ValueError(f"generated answers for ids with no context row: {unknown[:5]}")
    return {
        row_id: snap_to_context(answer, contexts[row_id], aligner)
        for row_id, answer in zip(answers["id"], answers["answer"], strict=True)
    }


def answer_table(generated: pd.DataFrame, template: str) -> pd.DataFrame:
    """The ``id,answer`` table of the generations (``id``, ``raw`` text), post-processed."""
    markers = prompt_markers(template)
    return pd.DataFrame(
        {
            "id": generated["id"],
            "answer": [clean_answer(text, markers) for text in generated["raw"]],
        }
    )


def _snapped(answers: pd.DataFrame, snapped: Mapping[str, str]) -> pd.DataFrame:
    """``answers`` with each answer replaced by its snapped form."""
    return answers.assign(answer=answers["id"].map(snapped))


def validation_answers(
    generated: pd.DataFrame,
    rows: pd.DataFrame,
    gold: Mapping[str, str],
    template: str,
    policy: str,
    aligner: Aligner,
) -> tuple[pd.DataFrame, dict]:
    """The final validation ``id,answer`` table and the snapping decision (:func:`snap_decision`)
    made on it; ``rows`` give the contexts, ``gold`` the answers scored against."""
    answers = answer_table(generated, template)
    snapped = snap_answers(answers, rows, aligner)
    plain = dict(zip(answers["id"], answers["answer"], strict=True))
    decision = snap_decision(plain, snapped, gold, policy)
    return (_snapped(answers, snapped) if decision["used"] else answers), decision


def final_answers(
    generated: pd.DataFrame, rows: pd.DataFrame, template: str, snap: bool, aligner: Aligner
) -> pd.DataFrame:
    """The final ``id,answer`` table of another split, snapped if validation decided so."""
    answers = answer_table(generated, template)
    return _snapped(answers, snap_answers(answers, rows, aligner)) if snap else answers
