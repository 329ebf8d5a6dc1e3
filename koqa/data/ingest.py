"""Read raw QA files in the shapes users bring them into one uniform table.

Shapes (detected from the file's content, or forced with ``fmt``):

- ``csv``: the Dacon trio, ``id,context,question[,answer]`` (``sample_submission.csv`` is ``id,answer``);
- ``json``: a JSON list of ``{id?, context, question, answer?, answer_start?}`` objects, or one
  such object on its own;
- ``jsonl``: the same objects, one per line (blank lines are skipped);
- ``squad``: SQuAD/KorQuAD JSON, ``data -> paragraphs -> qas -> answers`` (first answer, with
  its ``answer_start``).

Every row keeps ``source_row`` (1-based: the CSV data row, the JSON list index, or the JSON Lines
line number) so later stages can name the row a problem came from. ``answer_start``, where given, is
a character offset (a whole number >= 0, or empty). Problems that make a file unusable raise
:class:`InputError` naming the file, row (or line) and field.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
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
            # a BOM is dropped whatever the encoding, so it never sticks to the first column's name
            return data.decode(name).removeprefix("\ufeff").replace("\r\n", "\n")
        except UnicodeDecodeError as err:
            last = err
    line = data[: last.start].count(b"\n") + 1
    raise InputError(
        f"{path}: line {line}: bytes {data[last.start : last.start + 4]!r} cannot be decoded as "
        f"{' or '.join(candidates)}; set data.encoding in config.yaml"
    )


def _invalid_json(path: Path, err: json.JSONDecodeError) -> InputError:
    return InputError(f"{path}: line {err.lineno}, column {err.colno}: invalid JSON: {err.msg}")


def _parse_json(path: Path, text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _invalid_json(path, err) from None


def _first_line_is_json(text: str) -> bool:
    line = next(line for line in text.split("\n") if line.strip())
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def detect_format(path: Path, text: str) -> tuple[str, object]:
    """Guess the shape of a file from its content (first non-blank character, top-level keys).

    Returns the shape and, for ``json`` and ``squad``, the JSON document, parsed once here; ``None``
    for the shapes read line by line.
    """
    head = text.lstrip()[:1]
    if head not in ("[", "{"):
        if Path(path).suffix.lower() in {".json", ".jsonl"}:
            raise InputError(f"{path}: line 1: expected JSON (a list, objects per line or SQuAD)")
        return "csv", None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        # several objects, one per line, make the whole text invalid JSON but each line valid
        if head == "{" and _first_line_is_json(text):
            return "jsonl", None
        raise _invalid_json(path, err) from None
    if isinstance(document, list):
        return "json", document
    if "data" in document:
        return "squad", document
    if "context" in document:
        return "json", document  # a single record
    raise InputError(
        f"{path}: line 1: a JSON object with keys {sorted(document)[:8]}; expected a list of "
        "records, JSON Lines, or SQuAD JSON with a top-level 'data' list"
    )


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


def _records_json(path: Path, data: object) -> list:
    if isinstance(data, dict):
        return [data]  # a single record
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of objects, found {type(data).__name__}")
    return data


def _records_jsonl(path: Path, text: str) -> tuple[list, list[int]]:
    """The records of a JSON Lines text and the line number of each."""
    records, lines = [], []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise InputError(f"{path}: line {line_no}: invalid JSON: {err.msg}") from None
            lines.append(line_no)
    return records, lines


def _records_squad(path: Path, data: object) -> list[dict]:
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


def _records(path: Path, text: str, fmt: str, document: object) -> tuple[list, list[int]]:
    """The file's records and the source row of each (``document``: the parsed JSON, or None)."""
    if fmt == "jsonl":
        return _records_jsonl(path, text)
    if fmt == "csv":
        records = parse_csv(path, text)
    else:
        if document is None:
            document = _parse_json(path, text)
        records = (_records_json if fmt == "json" else _records_squad)(path, document)
    return records, list(range(1, len(records) + 1))


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


def _check_fields(
    path: Path, records: list, places: list[str], fields: tuple[str, ...], header: bool
) -> None:
    """Every record is an object carrying ``fields``, whose values are text, numbers or null
    (``places``: where each record is, such as ``row 3``)."""
    for place, record in zip(places, records, strict=True):
        if not isinstance(record, dict):
            raise InputError(
                f"{path}: {place}: expected an object with fields {list(fields)}, "
                f"found {type(record).__name__}"
            )
        for name in fields:
            if name not in record:
                where = "line 1: header has no column" if header else f"{place}: missing field"
                raise InputError(
                    f"{path}: {where} {name!r} (found {sorted(record)}){_hint(name, list(record))}"
                )
        for name in ("id", *fields):
            value = record.get(name)
            if isinstance(value, bool) or not isinstance(value, str | int | float | None):
                raise InputError(
                    f"{path}: {place}, field {name!r}: expected text, "
                    f"found {type(value).__name__} {json.dumps(value, ensure_ascii=False)[:60]}"
                )


def _answer_start(path: Path, place: str, value: object) -> int | None:
    """One ``answer_start`` as a whole number >= 0; None when absent (null, NaN or empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        number = float(text)  # also reads "4.0", as pandas writes an integer column holding NA
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not number.is_integer() or number < 0:
        raise InputError(
            f"{path}: {place}, field 'answer_start': expected a whole number >= 0 (a character "
            f"offset) or nothing, found {text[:60]!r}"
        )
    return int(number)


def read_records(
    path: Path, fmt: str = "auto", encoding: str = "auto", required: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Read one raw file into a table with :data:`COLUMNS`.

    ``required`` names the fields every record must carry (``answer`` for training files).
    Missing ids are filled with ``<file stem>_<row>``; duplicate ids are an error.
    """
    path = Path(path)
    text = read_text(path, encoding)
    document = None
    if fmt == "auto":
        fmt, document = detect_format(path, text)
    if fmt not in FORMATS:
        raise InputError(f"{path}: unknown format {fmt!r}; expected one of {FORMATS}")
    records, rows = _records(path, text, fmt, document)
    if not records:
        raise InputError(f"{path}: contains no rows")
    unit = "line" if fmt == "jsonl" else "row"
    places = [f"{unit} {row}" for row in rows]
    _check_fields(path, records, places, ("context", "question", *required), header=fmt == "csv")
    frame = pd.DataFrame.from_records(records)
    frame["source_row"] = rows
    frame = frame.reindex(columns=COLUMNS)
    for column in ("id", "context", "question", "answer"):
        frame[column] = frame[column].astype("string")
    frame["answer_start"] = pd.array(
        [_answer_start(path, p, v) for p, v in zip(places, frame["answer_start"], strict=True)],
        dtype="Int64",
    )
    missing_id = frame["id"].isna() | (frame["id"].str.strip() == "")
    frame.loc[missing_id, "id"] = [
        f"{path.stem}_{row:05d}" for row in frame["source_row"][missing_id]
    ]
    duplicated = frame["id"].duplicated(keep="first")
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise InputError(
            f"{path}: {unit} {first.source_row}, field 'id': duplicate id {first.id!r}"
        )
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
