"""Clean an ingested table: normalize text, drop unusable training rows with a reason, align answers.

No row disappears silently: every input row ends up either in the kept table or in the dropped table
with its ``reason``, and :class:`CleanResult.report` accounts for both (``rows_in = rows_kept +
rows_dropped``). Test rows are never dropped: every test id needs a prediction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from koqa.align import METHODS, align_answer
from koqa.textnorm import Step, build_steps

TEXT_FIELDS = ("context", "question", "answer")


@dataclass
class CleanResult:
    """The kept rows, the dropped rows (with ``reason``) and a JSON-ready report."""

    kept: pd.DataFrame
    dropped: pd.DataFrame
    report: dict = field(default_factory=dict)


def _apply_steps(series: pd.Series, steps: list[tuple[str, Step]]) -> tuple[pd.Series, dict]:
    """Run the steps over a text column (each distinct value once); count rows each step changed."""
    values = series.fillna("")
    uniques = pd.unique(values)
    current = dict(zip(uniques, uniques, strict=True))
    changed = {}
    for name, step in steps:
        after = {raw: step(text) for raw, text in current.items()}
        touched = {raw for raw in after if after[raw] != current[raw]}
        changed[name] = int(values.isin(touched).sum())
        current = after
    return values.map(current), changed


def _clean_offset(raw_context: str, raw_start: float, clean_text: Step) -> int | None:
    """Translate a raw ``answer_start`` into the cleaned context (None when there is none)."""
    if pd.isna(raw_start):
        return None
    return len(clean_text(raw_context[: int(raw_start)]))


def _drop_reasons(frame: pd.DataFrame, max_context_chars: int | None) -> pd.Series:
    """The first reason each training row cannot be used, or NA when it can.

    Duplicates are looked for among the rows that survive the other checks, so a row is never
    dropped as the duplicate of a row that was itself dropped.
    """
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")
    checks = [
        ("empty_context", lambda f: f["context"] == ""),
        ("empty_question", lambda f: f["question"] == ""),
        ("empty_answer", lambda f: f["answer"] == ""),
    ]
    if max_context_chars:
        checks.append(("context_too_long", lambda f: f["context"].str.len() > max_context_chars))
    checks += [
        ("duplicate", lambda f: f.duplicated(["context", "question", "answer"])),
        ("conflicting_duplicate", lambda f: f.duplicated(["context", "question"])),
    ]
    for name, check in checks:
        alive = frame[reason.isna()]
        reason[alive.index[check(alive).to_numpy()]] = name
    return reason


def _align(frame: pd.DataFrame, min_f1: float, starts: list[int | None]) -> pd.DataFrame:
    alignments = [
        align_answer(context, answer, min_f1, start)
        for context, answer, start in zip(frame["context"], frame["answer"], starts, strict=True)
    ]
    out = frame.copy()
    out["answer_start"] = pd.array([a.start for a in alignments], dtype="Int64")
    out["align_method"] = pd.array([a.method for a in alignments], dtype="string")
    out["target"] = pd.array(
        [
            a.surface(c, t)
            for a, c, t in zip(alignments, frame["context"], frame["answer"], strict=True)
        ],
        dtype="string",
    )
    return out


def clean_table(frame: pd.DataFrame, options: dict, labelled: bool) -> CleanResult:
    """Clean one ingested table (``labelled``: a training table with answers to align)."""
    steps = build_steps(options)
    out = frame.copy()
    step_changes: dict[str, dict[str, int]] = {name: {} for name, _ in steps}
    fields = TEXT_FIELDS if labelled else TEXT_FIELDS[:2]
    for column in fields:
        out[column], changed = _apply_steps(out[column], steps)
        for name, count in changed.items():
            step_changes[name][column] = count

    report: dict = {"rows_in": len(frame), "step_changes": step_changes}
    if not labelled:
        report.update(rows_kept=len(out), rows_dropped=0, dropped_by_reason={})
        report["empty_fields"] = {c: int((out[c] == "").sum()) for c in fields}
        return CleanResult(out.drop(columns=["answer", "answer_start"]), out.iloc[:0], report)

    reason = _drop_reasons(out, options.get("max_context_chars"))
    dropped = out[reason.notna()].assign(reason=reason[reason.notna()])
    kept = out[reason.isna()]

    def clean_text(text: str) -> str:
        for _, step in steps:
            text = step(text)
        return text

    raw = frame.loc[kept.index]
    starts = [
        _clean_offset(c, s, clean_text)
        for c, s in zip(raw["context"].fillna(""), raw["answer_start"], strict=True)
    ]
    kept = _align(kept, options["min_align_f1"], starts)
    if options["drop_unaligned"]:
        unaligned = kept["align_method"] == "none"
        dropped = pd.concat([dropped, kept[unaligned].assign(reason="unaligned")])
        kept = kept[~unaligned]

    methods = Counter(kept["align_method"])
    report.update(
        rows_kept=len(kept),
        rows_dropped=len(dropped),
        dropped_by_reason=dict(Counter(dropped["reason"])),
        align_methods={m: methods.get(m, 0) for m in METHODS},
    )
    return CleanResult(kept.reset_index(drop=True), dropped.reset_index(drop=True), report)
