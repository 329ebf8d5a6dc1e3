"""Clean an ingested table: normalize text, drop unusable training rows with a reason, align answers.

No row disappears silently: every input row ends up either in the kept table or in the dropped table
with its ``reason``, and :class:`CleanResult.report` accounts for both (``rows_in = rows_kept +
rows_dropped``). Test rows are never dropped: every test id needs a prediction.

Duplicates: rows with the same cleaned context and question as an earlier row are merged into it
(``merge_duplicates``): dropped as ``duplicate`` (same answer) or ``conflicting_duplicate`` (another
answer), with ``duplicate_of`` naming the row they were merged into. Conflicts are listed in the
report whether or not duplicates are merged.

Several sources (a ``source`` column, see :mod:`koqa.data.sources`): a capped source keeps at most
its cap of the rows that survive the checks above, a sample seeded by id (independent of row order);
the others are dropped as ``over_cap``. The report then also accounts for each source on its own.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from koqa.data.align import METHODS, Aligner
from koqa.data.textnorm import Step, build_steps, clean_text

TEXT_FIELDS = ("context", "question", "answer")
# conflicts the report lists one by one (when merging, the dropped rows hold all of them)
MAX_LISTED_CONFLICTS = 50


@dataclass
class CleanResult:
    """The kept rows, the dropped rows (with ``reason``) and a JSON-ready report."""

    kept: pd.DataFrame
    dropped: pd.DataFrame
    report: dict = field(default_factory=dict)


def _apply_steps(series: pd.Series, steps: list[tuple[str, Step]]) -> tuple[pd.Series, dict]:
    """Run the steps over a text column (each distinct value once); count rows each step changed."""
    values = series.fillna("").tolist()
    rows_per_value = Counter(values)
    distinct = list(rows_per_value)
    current = distinct
    changed = {}
    for name, step in steps:
        after = [step(text) for text in current]
        changed[name] = sum(
            rows_per_value[raw]
            for raw, old, new in zip(distinct, current, after, strict=True)
            if old != new
        )
        current = after
    cleaned = dict(zip(distinct, current, strict=True))
    return pd.Series([cleaned[v] for v in values], index=series.index, dtype="string"), changed


def _clean_offset(raw_context: str, raw_start: float, steps: list[tuple[str, Step]]) -> int | None:
    """Translate a raw ``answer_start`` into the cleaned context (None when there is none)."""
    if pd.isna(raw_start):
        return None
    return len(clean_text(raw_context[: int(raw_start)], steps))


def _drop_reasons(frame: pd.DataFrame, max_context_chars: int | None) -> pd.Series:
    """The first reason each training row cannot be used (NA when it can), duplicates aside."""
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")
    checks = [
        ("empty_context", lambda f: f["context"] == ""),
        ("empty_question", lambda f: f["question"] == ""),
        ("empty_answer", lambda f: f["answer"] == ""),
    ]
    if max_context_chars:
        checks.append(("context_too_long", lambda f: f["context"].str.len() > max_context_chars))
    for name, check in checks:
        alive = frame[reason.isna()]
        reason[alive.index[check(alive).to_numpy()]] = name
    return reason


def _duplicates(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """For each row repeating an earlier row's context and question: the first such row's id (else
    NA), and whether its answer differs from that first row's answer."""
    repeated = frame.duplicated(["context", "question"])
    first = frame[~repeated].set_index(["context", "question"])
    keys = pd.MultiIndex.from_frame(frame.loc[repeated, ["context", "question"]])
    duplicate_of = pd.Series(pd.NA, index=frame.index, dtype="string")
    duplicate_of[repeated] = first["id"].reindex(keys).to_numpy()
    # a conflict is an answer other than the one of the row it is merged into
    kept_answer = first["answer"].reindex(keys).to_numpy()
    conflicting = pd.Series(False, index=frame.index)
    conflicting[repeated] = frame.loc[repeated, "answer"].to_numpy() != kept_answer
    return duplicate_of, conflicting


def _conflicts(cleaned: pd.DataFrame, conflicting: pd.Series) -> list[dict]:
    """Both ids, the question and both answers of each row that conflicts with an earlier one."""
    answers = cleaned.set_index("id")["answer"]
    return [
        {
            "id": row.id,
            "kept_id": row.duplicate_of,
            "question": row.question,
            "answer": row.answer,
            "kept_answer": answers[row.duplicate_of],
        }
        for row in cleaned[conflicting].head(MAX_LISTED_CONFLICTS).itertuples()
    ]


def _align(frame: pd.DataFrame, aligner: Aligner, starts: list[int | None]) -> pd.DataFrame:
    contexts, answers = frame["context"].tolist(), frame["answer"].tolist()
    alignments = [
        aligner(context, answer, start)
        for context, answer, start in zip(contexts, answers, starts, strict=True)
    ]
    out = frame.copy()
    out["answer_start"] = pd.array([a.start for a in alignments], dtype="Int64")
    out["align_method"] = pd.array([a.method for a in alignments], dtype="string")
    out["target"] = pd.array(
        [a.surface(c, t) for a, c, t in zip(alignments, contexts, answers, strict=True)],
        dtype="string",
    )
    return out


def _separate(out: pd.DataFrame, options: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Kept rows, dropped rows (with ``reason`` and ``duplicate_of``), and which rows conflict with
    an earlier row of the same context and question. Sets ``out["duplicate_of"]``."""
    reason = _drop_reasons(out, options["max_context_chars"])
    # duplicates are looked for among the rows that survive the other checks, so a row is never
    # merged into a row that was itself dropped
    out["duplicate_of"], conflicting = _duplicates(out[reason.isna()])
    conflicting = conflicting.reindex(out.index, fill_value=False)
    if options["merge_duplicates"]:
        reason[out["duplicate_of"].notna() & ~conflicting] = "duplicate"
        reason[conflicting] = "conflicting_duplicate"
    dropped = out[reason.notna()].assign(reason=reason[reason.notna()])
    return out[reason.isna()].drop(columns="duplicate_of"), dropped, conflicting


def _over_cap(kept: pd.DataFrame, caps: Mapping[str, int], seed: int) -> pd.Series:
    """Which kept rows a source's cap leaves out: all but the ``cap`` rows of the source whose
    seeded hash of their id is smallest."""
    over = pd.Series(False, index=kept.index)
    for name, cap in caps.items():
        rows = kept[kept["source"] == name]
        rank = rows["id"].map(lambda i: hashlib.sha256(f"{seed}\0{i}".encode()).hexdigest())
        over[rank.sort_values().index[cap:]] = True
    return over


def _source_report(frame: pd.DataFrame, kept: pd.DataFrame, dropped: pd.DataFrame) -> dict:
    """Rows in, kept and dropped (by reason) of each source, in the sources' order."""
    report = {}
    for name in frame["source"].unique():
        reasons = dropped.loc[dropped["source"] == name, "reason"]
        report[name] = {
            "rows_in": int((frame["source"] == name).sum()),
            "rows_kept": int((kept["source"] == name).sum()),
            "rows_dropped": len(reasons),
            "dropped_by_reason": dict(Counter(reasons)),
        }
    return report


def clean_synonyms(synonyms: Mapping[str, str], steps: list[tuple[str, Step]]) -> dict[str, str]:
    """The synonym table (variant -> canonical form) cleaned by the same steps as the text, so its
    entries match cleaned contexts and answers."""
    return {clean_text(v, steps): clean_text(c, steps) for v, c in synonyms.items()}


def clean_table(
    frame: pd.DataFrame,
    options: dict,
    labelled: bool,
    synonyms: Mapping[str, str] | None = None,
    caps: Mapping[str, int] | None = None,
    seed: int = 0,
) -> CleanResult:
    """Clean one ingested table (``labelled``: a training table with answers to align).

    ``synonyms`` (variant -> canonical form) is cleaned with the same steps as the text. ``caps``:
    the most rows each named source keeps, sampled with ``seed``.
    """
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

    kept, dropped, conflicting = _separate(out, options)
    if caps:
        over = _over_cap(kept, caps, seed)
        dropped = pd.concat([dropped, kept[over].assign(reason="over_cap")])
        kept = kept[~over]
    raw = frame.loc[kept.index]
    starts = [
        _clean_offset(c, s, steps)
        for c, s in zip(
            raw["context"].fillna("").tolist(), raw["answer_start"].tolist(), strict=True
        )
    ]
    cleaned_synonyms = clean_synonyms(synonyms or {}, steps)
    kept = _align(kept, Aligner(cleaned_synonyms, options["min_align_f1"]), starts)
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
        targets_differing_from_answer=int((kept["target"] != kept["answer"]).sum()),
        synonyms=len(cleaned_synonyms),
        duplicates=int(out["duplicate_of"].notna().sum()),
        conflicting_duplicates=int(conflicting.sum()),
        conflicts=_conflicts(out, conflicting),
    )
    if "source" in frame.columns:
        report["sources"] = _source_report(frame, kept, dropped)
    return CleanResult(kept.reset_index(drop=True), dropped.reset_index(drop=True), report)
