"""From generated text to the answer that gets scored: post-processing steps, each decided on validation.

The generation is first cut at a newline or at an echoed prompt marker (``질문:`` ..., taken from the
prompt template) and trimmed. Then the steps run in a fixed order (:data:`STEPS`):

``strip_wrappers``  remove quotes and brackets wrapping the whole answer (``「타임」`` -> ``타임``,
                    ``'새봄제약'.`` -> ``새봄제약``) and a lone one at either end; ``(주)한빛`` stays;
``trailing_period`` remove a trailing ``.`` or ``。``;
``snap``            replace an answer that is not a substring of its context by the context span it
                    matches best, with the alignment cleaning uses for training answers, synonym
                    table included (see :mod:`koqa.data.align`);
``raw_surface``     write an answer that is a span of the cleaned context as the raw context writes
                    it (``(주)`` -> ``㈜``, ``990`` -> ``９９０``, see :mod:`koqa.data.rawspan`).

Each can help or hurt (a model that paraphrases correctly can lose characters to snapping; the gold
may keep the quotes), so each has a policy, ``auto | always | never`` (``predict.postprocess``):
``auto`` keeps a step for a variant only where it raises validation F1 against the raw gold answers,
given the steps already kept before it. The decisions are recorded per variant
(``postprocess.json``) and the test split follows them.

No torch: the rules that apply it stay light.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

import pandas as pd

from koqa.data.align import Aligner
from koqa.data.clean import clean_synonyms
from koqa.data.rawspan import raw_surface
from koqa.data.textnorm import build_steps
from koqa.score.evaluation import raw_gold
from koqa.score.metric import score

POLICIES = ("auto", "always", "never")
STEPS = ("strip_wrappers", "trailing_period", "snap", "raw_surface")
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


class Contexts(NamedTuple):
    """A row's context as cleaned (what the model read) and as written (what the grader's gold
    answers come from)."""

    cleaned: str
    raw: str


# One post-processing step: the answer and its row's contexts -> the new answer.
PostStep = Callable[[str, Contexts], str]


def prompt_markers(template: str) -> list[str]:
    """The literal labels of the prompt template (``맥락:``, ``질문:``, ``답변:``), one per line."""
    literal = re.sub(r"\{context\}|\{question\}", "\n", template)
    return [line.strip() for line in literal.splitlines() if line.strip()]


def cut_answer(text: str, markers: list[str]) -> str:
    """Cut ``text`` at its first newline or prompt marker and trim whitespace."""
    for stop in ("\n", *markers):
        text = text.split(stop, 1)[0]
    return text.strip()


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


def strip_wrappers(text: str) -> str:
    """Remove quote/bracket pairs wrapping the whole text (with a period after the closing one) and
    a lone unmatched one at either end: ``「타임」`` -> ``타임``, ``'새봄제약'.`` -> ``새봄제약``,
    ``타임」`` -> ``타임``; ``(주)한빛`` and ``38.9%.`` stay."""
    while True:
        text = text.strip()
        bare = _TRAILING_PERIOD.sub("", text).rstrip()
        if bare and _wraps(bare):
            text = bare[1:-1]
        elif text[:1] in _PAIRS and _PAIRS[text[0]] not in text[1:]:
            text = text[1:]
        elif bare[-1:] in _CLOSERS and _CLOSERS[bare[-1]] not in bare[:-1]:
            text = bare[:-1]
        else:
            return text


def strip_trailing_period(text: str) -> str:
    """Remove trailing ``.``/``。`` and whitespace: ``38.9%.`` -> ``38.9%``."""
    return _TRAILING_PERIOD.sub("", text.strip()).strip()


def snap_to_context(answer: str, context: str, aligner: Aligner) -> str:
    """The context's own span for ``answer`` (exact, spacing- or number-format-insensitive, or the
    best by character F1 >= the aligner's ``min_f1``); the answer itself when nothing matches."""
    if not answer or answer in context:
        return answer
    return aligner(context, answer).surface(context, answer)


def snap_aligner(synonyms: Mapping[str, str], clean_options: dict, min_f1: float) -> Aligner:
    """The aligner cleaning uses for training answers, with snapping's ``min_f1``: the synonym table
    (variant -> canonical form, ``clean.synonyms``) cleaned by the same steps as the contexts."""
    return Aligner(clean_synonyms(synonyms, build_steps(clean_options)), min_f1)


def post_steps(
    synonyms: Mapping[str, str], clean_options: dict, snap_min_f1: float
) -> dict[str, PostStep]:
    """The functions of :data:`STEPS`, configured as the contexts were cleaned (``clean`` config
    section, synonym table) and with snapping's ``min_f1``."""
    aligner = snap_aligner(synonyms, clean_options, snap_min_f1)
    clean_steps = build_steps(clean_options)
    return {
        "strip_wrappers": lambda answer, _: strip_wrappers(answer),
        "trailing_period": lambda answer, _: strip_trailing_period(answer),
        "snap": lambda answer, row: snap_to_context(answer, row.cleaned, aligner),
        "raw_surface": lambda answer, row: raw_surface(answer, row.cleaned, row.raw, clean_steps),
    }


def row_contexts(rows: pd.DataFrame, raw: pd.DataFrame) -> dict[str, Contexts]:
    """``id -> Contexts`` of a split's cleaned ``rows`` and the ingested, uncleaned ``raw`` table."""
    written = raw.set_index("id")["context"].fillna("")
    unknown = sorted(set(rows["id"]) - set(written.index))
    if unknown:
        raise ValueError(f"rows with no raw row to take the written context from: {unknown[:5]}")
    return {
        row_id: Contexts(context, str(written[row_id]))
        for row_id, context in zip(rows["id"], rows["context"], strict=True)
    }


def cut_answers(generated: pd.DataFrame, template: str) -> dict[str, str]:
    """``id -> answer`` of the generations (``id``, ``raw`` text), cut and trimmed."""
    markers = prompt_markers(template)
    return {
        row_id: cut_answer(text, markers)
        for row_id, text in zip(generated["id"], generated["raw"], strict=True)
    }


def _apply(step: PostStep, answers: Mapping[str, str], contexts: Mapping[str, Contexts]) -> dict:
    """``id -> answer`` after one step (every answer needs its row's contexts)."""
    unknown = sorted(set(answers) - set(contexts))
    if unknown:
        raise ValueError(f"generated answers for ids with no context row: {unknown[:5]}")
    return {row_id: step(answer, contexts[row_id]) for row_id, answer in answers.items()}


def decide_steps(
    answers: Mapping[str, str],
    contexts: Mapping[str, Contexts],
    gold: Mapping[str, str],
    policies: Mapping[str, str],
    steps: Mapping[str, PostStep],
) -> tuple[dict[str, str], list[dict]]:
    """Run :data:`STEPS` in order over the validation answers, each kept under its policy
    (``auto``: only if it raises F1 against ``gold``, given the steps kept before it).

    Returns the final answers and, per step, a JSON-ready record: policy, ``used``, F1 and EM
    without and with it, how many answers it changed.
    """
    records = []
    for name in STEPS:
        policy = policies[name]
        if policy not in POLICIES:
            raise ValueError(f"predict.postprocess.{name}: {policy!r} is not one of {POLICIES}")
        after = _apply(steps[name], answers, contexts)
        without, with_ = score(answers, gold), score(after, gold)
        used = policy == "always" or (policy == "auto" and with_.f1 > without.f1)
        records.append(
            {
                "step": name,
                "policy": policy,
                "used": used,
                "f1_without": without.f1,
                "f1_with": with_.f1,
                "em_without": without.em,
                "em_with": with_.em,
                "changed": sum(answers[k] != after[k] for k in answers),
                "n": without.n,
            }
        )
        answers = after if used else dict(answers)
    return dict(answers), records


def apply_steps(
    answers: Mapping[str, str],
    contexts: Mapping[str, Contexts],
    used: list[str],
    steps: Mapping[str, PostStep],
) -> dict[str, str]:
    """The answers after the ``used`` steps, run in the order of :data:`STEPS` whatever the order
    of ``used`` (the test split follows the validation decisions)."""
    unknown = sorted(set(used) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown post-processing steps {unknown} (have {list(STEPS)})")
    for name in STEPS:
        if name in used:
            answers = _apply(steps[name], answers, contexts)
    return dict(answers)


def validation_answers(
    generated: pd.DataFrame,
    rows: pd.DataFrame,
    raw: pd.DataFrame,
    template: str,
    policies: Mapping[str, str],
    steps: Mapping[str, PostStep],
) -> tuple[dict[str, str], list[dict]]:
    """The final answers of a split's validation generations (``id``, ``raw`` text): cut, then each
    step decided against the raw gold answers (:func:`decide_steps`); and the step records.
    ``rows``: the split's cleaned rows; ``raw``: the ingested table (``id, context, answer``)."""
    return decide_steps(
        cut_answers(generated, template),
        row_contexts(rows, raw),
        raw_gold(rows, raw),
        policies,
        steps,
    )


def answer_frame(answers: Mapping[str, str]) -> pd.DataFrame:
    """The ``id,answer`` table of ``id -> answer``."""
    return pd.DataFrame({"id": list(answers), "answer": list(answers.values())})
