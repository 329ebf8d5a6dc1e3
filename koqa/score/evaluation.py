"""Scoring files: read ``id,answer`` CSVs safely, take the gold answers as the grader has them,
build the score record and list the worst predictions.

The metric itself is :mod:`koqa.score.metric`; this module is the layer that reads and writes tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from koqa.data.ingest import InputError, parse_csv, read_text
from koqa.score.metric import RowScore, mean_score, row_scores, score_by_length

WORST_COLUMNS = ["id", "f1", "answer", "gold", "question", "context"]


def read_answers(path: str | Path, column: str = "answer") -> dict[str, str]:
    """``id -> column`` of a CSV (UTF-8, UTF-8 with BOM or CP949) with at least those two columns.

    Fails naming the file and row on a missing column, a repeated or empty id.
    """
    path = Path(path)
    records = parse_csv(path, read_text(path))
    if not records:
        raise InputError(f"{path}: no rows")
    for field in ("id", column):
        if field not in records[0]:
            raise InputError(f"{path}: line 1: no {field!r} column (found {list(records[0])})")
    answers: dict[str, str] = {}
    for row_number, record in enumerate(records, start=1):
        row_id = record["id"].strip()
        if not row_id:
            raise InputError(f"{path}: row {row_number}, field 'id': empty")
        if row_id in answers:
            raise InputError(f"{path}: row {row_number}, field 'id': repeated id {row_id!r}")
        answers[row_id] = record[column]
    return answers


def raw_gold(rows: pd.DataFrame, raw: pd.DataFrame) -> dict[str, str]:
    """``id -> answer`` for each of ``rows``' ids as written in ``raw``, the ingested, uncleaned
    training table: the answers the grader scores against.

    Cleaning changes what the metric sees (it folds ``“타임”`` to ``"타임"``, whose quotes the metric
    deletes, and removes zero-width spaces), so scoring against cleaned answers would overstate F1.
    Merged duplicates keep the first row's id, so every kept row has its raw row.
    """
    answers = raw.set_index("id")["answer"]
    unknown = sorted(set(rows["id"]) - set(answers.index))
    if unknown:
        raise ValueError(
            f"rows with no raw training row: ids {unknown[:5]} ({len(unknown)} in all)"
        )
    return {row_id: str(answers[row_id]) for row_id in rows["id"]}


def _record(rows: Mapping[str, RowScore], gold: Mapping[str, str]) -> dict:
    """The score record (F1, EM, n, missing, and the same ``by_length``) from row scores."""
    return {
        **asdict(mean_score(rows)),
        "by_length": {
            label: asdict(bucket) for label, bucket in score_by_length(rows, gold).items()
        },
    }


def score_record(predictions: Mapping[str, str], gold: Mapping[str, str]) -> dict:
    """F1, EM, n and missing over all rows, and the same per gold-answer length bucket."""
    return _record(row_scores(predictions, gold), gold)


def evaluate(
    predictions: Mapping[str, str],
    gold: Mapping[str, str],
    rows: pd.DataFrame,
    count: int = 20,
) -> tuple[dict, pd.DataFrame]:
    """The :func:`score_record` and the ``count`` lowest-F1 predictions (ties: longer gold answer
    first, then id) with the question and context of ``rows``, scoring each row once.

    ``gold`` holds the answers scored against (see :func:`raw_gold`), ``rows`` the same ids.
    """
    scores = row_scores(predictions, gold)
    f1 = {row_id: row[0] if row else 0.0 for row_id, row in scores.items()}
    table = rows.assign(
        f1=rows["id"].map(f1).round(4),
        answer=rows["id"].map(predictions),
        gold=rows["id"].map(gold),
    )
    table = table.assign(length=table["gold"].map(len))
    table = table.sort_values(["f1", "length", "id"], ascending=[True, False, True])
    worst = table.head(count).reindex(columns=WORST_COLUMNS).reset_index(drop=True)
    return _record(scores, gold), worst
