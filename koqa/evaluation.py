"""Scoring files: read ``id,answer`` CSVs safely, build the score record, list the worst predictions.

The metric itself is :mod:`koqa.metric`; this module is the layer that reads and writes tables.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from koqa.ingest import InputError, parse_csv, read_text
from koqa.metric import row_scores, score, score_by_length

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


def score_record(predictions: dict[str, str], gold: dict[str, str]) -> dict:
    """F1, EM, n and missing over all rows, and the same per gold-answer length bucket."""
    return {
        **asdict(score(predictions, gold)),
        "by_length": {
            label: asdict(bucket) for label, bucket in score_by_length(predictions, gold).items()
        },
    }


def worst_predictions(
    predictions: dict[str, str], gold_rows: pd.DataFrame, count: int = 20
) -> pd.DataFrame:
    """The ``count`` lowest-F1 rows (ties: longer gold answer first, then id), with the question and
    context for error analysis."""
    gold = dict(zip(gold_rows["id"], gold_rows["answer"], strict=True))
    f1 = {row_id: row[0] if row else 0.0 for row_id, row in row_scores(predictions, gold).items()}
    table = gold_rows.assign(
        f1=gold_rows["id"].map(f1).round(4),
        answer=gold_rows["id"].map(predictions),
        gold=gold_rows["answer"],
        length=gold_rows["answer"].map(len),
    )
    table = table.sort_values(["f1", "length", "id"], ascending=[True, False, True])
    return table.head(count).reindex(columns=WORST_COLUMNS).reset_index(drop=True)
