"""Leaderboard across variants and the validated competition submission."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from koqa.ingest import InputError, parse_csv, read_text

LEADERBOARD_COLUMNS = ["variant", "method", "f1", "em", "n", "train_seconds", "predict_seconds"]


class SubmissionError(ValueError):
    """The submission would be rejected; the message says which ids or answers are wrong."""


def leaderboard(rows: list[dict]) -> pd.DataFrame:
    """One row per variant, best validation F1 first (ties: EM, then name)."""
    frame = pd.DataFrame(rows).reindex(columns=LEADERBOARD_COLUMNS)
    return frame.sort_values(["f1", "em", "variant"], ascending=[False, False, True]).reset_index(
        drop=True
    )


def choose_variant(board: pd.DataFrame, requested: str) -> str:
    """``best`` picks the top of the leaderboard; any other value must name a variant on it."""
    if requested == "best":
        return str(board["variant"].iloc[0])
    if requested not in set(board["variant"]):
        raise SubmissionError(f"submission.variant: {requested!r} is not on the leaderboard")
    return requested


def read_sample_ids(path: str | Path) -> list[str]:
    """The ids of the sample submission, in order."""
    path = Path(path)
    records = parse_csv(path, read_text(path))
    if not records or "id" not in records[0]:
        raise InputError(f"{path}: line 1: expected a header with an 'id' column")
    return [record["id"] for record in records]


def build_submission(
    predictions: pd.DataFrame, sample_ids: list[str], fallback: str
) -> pd.DataFrame:
    """Order predictions like the sample submission and validate them.

    Empty answers are replaced by ``fallback`` (an empty answer scores 0 anyway, and some graders
    reject empty cells); newlines inside answers become spaces. Raises :class:`SubmissionError`
    when an id is missing, unexpected or repeated.
    """
    by_id = predictions.drop_duplicates("id")
    if len(by_id) != len(predictions):
        raise SubmissionError(
            f"predictions repeat ids: {sorted(predictions['id'][predictions['id'].duplicated()])[:5]}"
        )
    missing = sorted(set(sample_ids) - set(by_id["id"]))
    extra = sorted(set(by_id["id"]) - set(sample_ids))
    if missing or extra:
        raise SubmissionError(
            f"prediction ids differ from the sample submission: missing {missing[:5]} "
            f"({len(missing)} in all), unexpected {extra[:5]} ({len(extra)} in all)"
        )
    answers = by_id.set_index("id")["answer"].reindex(sample_ids).fillna("").astype(str)
    answers = answers.str.replace(r"\s*\n\s*", " ", regex=True).str.strip()
    answers = answers.mask(answers == "", fallback)
    submission = pd.DataFrame({"id": sample_ids, "answer": answers.to_numpy()})
    validate_submission(submission, sample_ids)
    return submission


def validate_submission(submission: pd.DataFrame, sample_ids: list[str]) -> None:
    """Every sample id exactly once and in order, no empty answer, no newline."""
    if submission["id"].tolist() != list(sample_ids):
        raise SubmissionError("submission ids are not the sample submission's ids in order")
    empty = submission["id"][submission["answer"].str.strip() == ""]
    if len(empty):
        raise SubmissionError(f"empty answers for {empty.tolist()[:5]}")
    newline = submission["id"][submission["answer"].str.contains("\n")]
    if len(newline):
        raise SubmissionError(f"answers with newlines for {newline.tolist()[:5]}")
