"""Read raw QA files in the shapes users bring them into one uniform table.

Shapes (detected from the file's content, or forced with ``fmt``):

- ``csv``: the Dacon trio, ``id,context,question[,answer]`` (``sample_submission.csv`` is ``id,answer``);
- ``json``: a JSON list of ``{id?, context, question, answer?}`` objects;
- ``jsonl``: the same objects, one per line;
- ``squad``: SQuAD/KorQuAD JSON, ``data -> paragraphs -> qas -> answers`` (first answer, with
  its ``answer_start``).

Every row keeps ``source_row`` (1-based data row, JSON list index or line number) so later stages
can name the row a problem came from. Problems that make a file unusable raise :class:`InputError`
naming the file, row and field.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

COLUMNS = ["id", "context", "question", "answer", "answer_start", "source_row"]
FORMATS = ("auto", "csv", "json", "jsonl", "squad")
_ENCODINGS = ("utf-8-sig", "cp949")
# Python's csv module refuses fields over 128 KiB by default; long articles are real data.
_MAX_FIELD_CHARS = 64 * 1024 * 1024


class InputError(ValueError):
    """A raw input file cannot be read; the message names the file, row and field."""


def read_text(path: Path, encoding: str = "auto") -> str:
    """Read a whole text file, trying UTF-8 (with or without BOM) then CP949 for ``auto``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    data = path.read_bytes()
    candidates = _ENCODINGS if encoding == "auto" else (encoding,)
    for name in candidates:
        try:
            return data.decode(name).replace("\r\n", "\n")
        except UnicodeDecodeError as err:
            last = err
    line = data[: last.start].count(b"\n") + 1
    raise InputError(
        f"{path}: line {line}: bytes {data[last.start : last.start + 4]!r} cannot be decoded as "
        f"{' or '.join(candidates)}; set data.encoding in config.yaml"
    )


def detect_format(path: Path, text: str) -> str:
    """Guess the shape of a file from its content (first non-blank character, top-level keys)."""
    head = text.lstrip()[:1]
    if head == "[":
        return "json"
    if head == "{":
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            return "jsonl"  # several JSON objects, one per line
        if "data" in document:
            return "squad"
        if "context" in document:
            return "jsonl"  # a single record
        raise InputError(
            f"{path}: line 1: a JSON object with keys {sorted(document)[:8]}; expected a list of "
            "records, JSON Lines, or SQuAD JSON with a top-level 'data' list"
        )
    if Path(path).suffix.lower() in {".json", ".jsonl"}:
        raise InputError(f"{path}: line 1: expected JSON (a list, objects per line or SQuAD)")
    return "csv"


def _parse_json(path: Path, text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: line {err.lineno}, column {err.colno}: invalid JSON: {err.msg}"
        ) from None


def parse_csv(path: Path, text: str) -> list[dict]:
    """CSV rows as dicts; ragged or malformed rows raise :class:`InputError` with the line."""
    csv.field_size_limit(_MAX_FIELD_CHARS)
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = list(reader)
    except csv.Error as err:
        raise InputError(f"{path}: line {reader.line_num}: malformed CSV: {err}") from None
    for index, row in enumerate(rows, start=1):
        if None in row or None in row.values():
            raise InputError(
                f"{path}: row {index}: wrong number of fields for header {reader.fieldnames}"
            )
    return rows


def _records_json(path: Path, text: str) -> list[dict]:
    data = _parse_json(path, text)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of objects, found {type(data).__name__}")
    return data


def _records_jsonl(path: Path, text: str) -> list[dict]:
    records = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise InputError(f"{path}: line {line_no}: invalid JSON: {err.msg}") from None
    return records


def _records_squad(path: Path, text: str) -> list[dict]:
    data = _parse_json(path, text)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InputError(f"{path}: expected SQuAD JSON with a top-level 'data' list")
    records = []
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                answers = qa.get("answers") or [{}]
                records.append(
                    {
                        "id": qa.get("id"),
                        "context": paragraph.get("context"),
                        "question": qa.get("question"),
                        "answer": answers[0].get("text"),
                        "answer_start": answers[0].get("answer_start"),
                    }
                )
    return records


_READERS = {
    "csv": parse_csv,
    "json": _records_json,
    "jsonl": _records_jsonl,
    "squad": _records_squad,
}


# what people call the fields, for the hint in a missing-field error
_FIELD_ALIASES = {
    "context": ("지문", "본문", "맥락", "passage", "paragraph", "document", "text"),
    "question": ("질문", "query", "q"),
    "answer": ("정답", "답변", "답", "answers", "label", "a"),
}


def _hint(field: str, found: Sequence[str]) -> str:
    """A hint naming the found column that looks like ``field`` (same name in other case, a usual
    alias such as ``질문`` for ``question``, or a near spelling), or ``""``."""
    by_lower = {name.strip().lower(): name for name in found}
    candidates = [by_lower[a] for a in (field, *_FIELD_ALIASES.get(field, ())) if a in by_lower]
    candidates += difflib.get_close_matches(field, list(found), n=1, cutoff=0.6)
    return f"; did you mean {candidates[0]!r}? rename it to {field!r}" if candidates else ""


def _check_fields(path: Path, records: list, fields: tuple[str, ...], header: bool) -> None:
    """Every record is an object carrying ``fields``, whose values are text, numbers or null."""
    for index, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise InputError(
                f"{path}: row {index}: expected an object with fields {list(fields)}, "
                f"found {type(record).__name__}"
            )
        for name in fields:
            if name not in record:
                where = "line 1: header has no column" if header else f"row {index}: missing field"
                raise InputError(
                    f"{path}: {where} {name!r} (found {sorted(record)}){_hint(name, list(record))}"
                )
        for name in ("id", *fields):
            value = record.get(name)
            if isinstance(value, bool) or not isinstance(value, str | int | float | None):
                raise InputError(
                    f"{path}: row {index}, field {name!r}: expected text, "
                    f"found {type(value).__name__} {json.dumps(value, ensure_ascii=False)[:60]}"
                )


def read_records(
    path: Path, fmt: str = "auto", encoding: str = "auto", required: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Read one raw file into a table with :data:`COLUMNS`.

    ``required`` names the fields every record must carry (``answer`` for training files).
    Missing ids are filled with ``<file stem>_<row>``; duplicate ids are an error.
    """
    path = Path(path)
    text = read_text(path, encoding)
    if fmt == "auto":
        fmt = detect_format(path, text)
    if fmt not in _READERS:
        raise InputError(f"{path}: unknown format {fmt!r}; expected one of {FORMATS}")
    records = _READERS[fmt](path, text)
    if not records:
        raise InputError(f"{path}: contains no rows")
    _check_fields(path, records, ("context", "question", *required), header=fmt == "csv")
    frame = pd.DataFrame.from_records(records)
    frame["source_row"] = range(1, len(frame) + 1)
    frame = frame.reindex(columns=COLUMNS)
    for column in ("id", "context", "question", "answer"):
        frame[column] = frame[column].astype("string")
    missing_id = frame["id"].isna() | (frame["id"].str.strip() == "")
    frame.loc[missing_id, "id"] = [
        f"{path.stem}_{row:05d}" for row in frame["source_row"][missing_id]
    ]
    duplicated = frame["id"].duplicated(keep="first")
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise InputError(f"{path}: row {first.source_row}, field 'id': duplicate id {first.id!r}")
    return frame


def check_sample_ids(
    frame: pd.DataFrame, path: Path, sample_ids: Sequence[str], sample_path: Path
) -> None:
    """The test ids and the sample submission's ids must be the same set: a test row the sample
    does not know could not be submitted, a sample id without a test row could not be answered."""
    unknown = frame[~frame["id"].isin(set(sample_ids))]
    if len(unknown):
        first = unknown.iloc[0]
        raise InputError(
            f"{path}: row {first.source_row}, field 'id': {first.id!r} is not in {sample_path} "
            f"({len(unknown)} test ids are not)"
        )
    test_ids = set(frame["id"])
    absent = [(row, i) for row, i in enumerate(sample_ids, start=1) if i not in test_ids]
    if absent:
        raise InputError(
            f"{sample_path}: row {absent[0][0]}, field 'id': {absent[0][1]!r} has no row in {path} "
            f"({len(absent)} sample ids have none)"
        )
