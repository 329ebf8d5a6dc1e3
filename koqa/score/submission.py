"""Leaderboard across variants, and the competition submission: drafted, then validated as a file.

The draft takes the chosen variant's test answers in the sample submission's order, writes a space
for each newline and ``fallback`` for each empty answer (an empty cell scores 0 like any wrong
answer, and some graders reject it). The check then reads the draft back as bytes and rejects it,
naming rows, unless it is UTF-8 CSV with exactly the header ``id,answer``, the sample's ids in the
sample's order, and non-empty, single-line answers. It warns, in the log, of answers that a
spreadsheet program would run as formulas (``=HYPERLINK(...)``, ``@SUM(...)``): escaping them would
change the graded answers, so the file is submitted as it is.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path

import pandas as pd

from koqa.data.ingest import InputError, parse_csv, read_text

log = logging.getLogger("koqa")
# Excel reads a cell that starts with one of these as a formula (OWASP, "CSV injection"); a sign
# followed by nothing but a number (``-``, ``-3.5%``, ``+1,000``) is a number or text everywhere.
_FORMULA_STARTS = ("=", "+", "-", "@")
_SIGNED_NUMBER = re.compile(r"[+-][\d.,% ]*")
# how many ids of formula-like answers the warning names
_SHOWN_IDS = 20
LEADERBOARD_COLUMNS = [
    "variant",
    "method",
    "f1",
    "em",
    "n",
    "postprocess",
    "snap",
    "f1_unsnapped",
    "f1_snapped",
    "train_seconds",
    "predict_seconds",
]


class SubmissionError(ValueError):
    """The submission would be rejected; the message says which ids or answers are wrong."""


def leaderboard(rows: list[dict]) -> pd.DataFrame:
    """One row per variant, best validation F1 first (ties: EM, then name)."""
    frame = pd.DataFrame(rows).reindex(columns=LEADERBOARD_COLUMNS)
    return frame.sort_values(["f1", "em", "variant"], ascending=[False, False, True]).reset_index(
        drop=True
    )


def read_leaderboard(path: str | Path) -> pd.DataFrame:
    """The leaderboard TSV, variant names as written: ``1``, ``NA`` or ``None`` stay names, not
    numbers or missing values; an empty cell (a cost the ensemble has no figure for) is missing."""
    return pd.read_csv(
        path, sep="\t", dtype={"variant": str}, keep_default_na=False, na_values=[""]
    )


def choose_variant(board: pd.DataFrame, requested: str) -> str:
    """``best`` picks the top of the leaderboard; any other value must name a variant on it."""
    if requested == "best":
        return str(board["variant"].iloc[0])
    if requested not in set(board["variant"]):
        raise SubmissionError(
            f"submission.variant: {requested!r} is not on the leaderboard "
            f"(have {sorted(board['variant'])})"
        )
    return requested


def read_sample_ids(path: str | Path) -> list[str]:
    """The ids of the sample submission, in order."""
    path = Path(path)
    records = parse_csv(path, read_text(path))
    if not records or "id" not in records[0]:
        raise InputError(f"{path}: line 1: expected a header with an 'id' column")
    return [record["id"] for record in records]


def draft_submission(
    predictions: pd.DataFrame, sample_ids: list[str], fallback: str
) -> pd.DataFrame:
    """Order predictions like the sample submission, newlines as spaces, ``fallback`` for empties.

    Raises :class:`SubmissionError` when an id is missing, unexpected or repeated.
    """
    repeated = predictions["id"][predictions["id"].duplicated()]
    if len(repeated):
        raise SubmissionError(f"predictions repeat ids: {sorted(repeated)[:5]}")
    missing = sorted(set(sample_ids) - set(predictions["id"]))
    extra = sorted(set(predictions["id"]) - set(sample_ids))
    if missing or extra:
        raise SubmissionError(
            f"prediction ids differ from the sample submission: missing {missing[:5]} "
            f"({len(missing)} in all), unexpected {extra[:5]} ({len(extra)} in all)"
        )
    answers = predictions.set_index("id")["answer"].reindex(sample_ids).fillna("").astype(str)
    answers = answers.str.replace(r"\s*[\r\n]+\s*", " ", regex=True).str.strip()
    answers = answers.mask(answers == "", fallback)
    return pd.DataFrame({"id": sample_ids, "answer": answers.to_numpy()})


def check_submission_file(path: str | Path, sample_ids: list[str]) -> int:
    """Validate a submission file as the grader will read it; return its row count.

    Raises :class:`SubmissionError` naming the file and the offending rows.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SubmissionError(f"{path}: not UTF-8 (byte {err.start}: {err.reason})") from None
    if text.startswith("\ufeff"):
        raise SubmissionError(f"{path}: starts with a byte-order mark")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or rows[0] != ["id", "answer"]:
        raise SubmissionError(f"{path}: header is {rows[:1]}, expected ['id', 'answer']")
    body = rows[1:]
    problems = []
    if [row[0] if row else "" for row in body] != list(sample_ids):
        first = next(
            (
                i
                for i, (row, want) in enumerate(zip(body, sample_ids, strict=False))
                if row[:1] != [want]
            ),
            min(len(body), len(sample_ids)),
        )
        problems.append(
            f"ids differ from the sample submission's from row {first + 1} on "
            f"({len(body)} rows, sample has {len(sample_ids)})"
        )
    ragged = [i for i, row in enumerate(body, start=1) if len(row) != 2]
    empty = [i for i, row in enumerate(body, start=1) if len(row) == 2 and not row[1].strip()]
    broken = [i for i, row in enumerate(body, start=1) if any(c in "".join(row) for c in "\r\n")]
    for rows_found, what in (
        (ragged, "not two fields"),
        (empty, "empty answer"),
        (broken, "line break"),
    ):
        if rows_found:
            problems.append(f"{what} in rows {rows_found[:5]} ({len(rows_found)} in all)")
    if problems:
        raise SubmissionError(f"{path}: " + "; ".join(problems))
    _warn_of_formulas(path, body)
    return len(body)


def _warn_of_formulas(path: Path, body: list[list[str]]) -> None:
    """Log the ids of answers a spreadsheet program would take for formulas."""
    ids = [
        row_id
        for row_id, answer in body
        if answer.startswith(_FORMULA_STARTS) and not _SIGNED_NUMBER.fullmatch(answer)
    ]
    if ids:
        shown = ", ".join(ids[:_SHOWN_IDS])
        if len(ids) > _SHOWN_IDS:
            shown += f" (first {_SHOWN_IDS} of {len(ids)})"
        log.warning(
            "%s: %d answers start with %s and would run as formulas if the file were opened in a "
            "spreadsheet program (the grader reads them as text; they are submitted unchanged): %s",
            path,
            len(ids),
            " ".join(_FORMULA_STARTS),
            shown,
        )
