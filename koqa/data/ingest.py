"""Read raw QA files in the shapes users bring them into one uniform table.

Shapes (detected from the file's content, or forced with ``fmt``):

- ``csv``: the Dacon trio, ``id,context,question[,answer]`` (``sample_submission.csv`` is ``id,answer``);
- ``json``: a JSON list of ``{id?, context, question, answer?, answer_start?}`` objects, or one
  such object on its own;
- ``jsonl``: the same objects, one per line (blank lines are skipped);
- ``squad``: SQuAD/KorQuAD JSON, ``data -> paragraphs -> qas -> answers`` (first answer, with
  its ``answer_start``); every level must be a list of objects (``answers`` may be absent).

Every row keeps ``source_row`` (1-based: the CSV data row, the JSON list index, the JSON Lines
line number, or the SQuAD question's position in the file) so later stages can name the row a
problem came from. ``answer_start``, where given, is a character offset (a whole number >= 0, or
empty). Problems that make a file unusable raise :class:`InputError` naming the file, row (or line;
in SQuAD the article, paragraph and question) and field.

Text fields are text as written, or nothing: a JSON number in ``context``, ``question`` or
``answer`` is an error, because reading it as text would change it (``1.50`` is the float 1.5), and
so is a lone surrogate (``"\\ud800"``, half of a UTF-16 pair: JSON can spell it, but it is no
character and no UTF-8 file can hold it). An ``id`` may also be a whole number: ids are labels, only
matched, and a JSON integer keeps all its digits.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

COLUMNS = ["id", "context", "question", "answer", "answer_start", "source_row"]
FORMATS = ("auto", "csv", "json", "jsonl", "squad")
_ENCODINGS = ("utf-8-sig", "cp949")
# Python's csv module refuses fields over 128 KiB by default; long articles are real data.
_MAX_FIELD_CHARS = 64 * 1024 * 1024
TEXT_FIELDS = ("id", "context", "question", "answer")
# json.loads joins an escaped surrogate pair into one character: any surrogate left is a lone half
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class InputError(ValueError):
    """A raw input file cannot be read; the message names the file, row and field."""


def read_text(path: Path, encoding: str = "auto") -> str:
    """Read a whole text file, trying UTF-8 (with or without BOM) then CP949 for ``auto``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    data = path.read_bytes()
    candidates = _ENCODINGS if encoding == "auto" else (encoding,)
    errors = []
    for name in candidates:
        try:
            # a BOM is dropped whatever the encoding, so it never sticks to the first column's name
            return data.decode(name).removeprefix("\ufeff").replace("\r\n", "\n")
        except UnicodeDecodeError as err:
            errors.append(err)
    # the encoding that read furthest is the file's: its error is at the bad bytes, the others'
    # at the file's first character outside ASCII
    start = max(err.start for err in errors)
    line = data[:start].count(b"\n") + 1
    raise InputError(
        f"{path}: line {line}: bytes {data[start : start + 4]!r} cannot be decoded as "
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


def _show(value: object) -> str:
    """A value's type and start for an error message (lone surrogates escaped, so the message can
    be written to a UTF-8 log)."""
    shown = "null" if value is None else json.dumps(value, ensure_ascii=False)[:60]
    shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")
    return shown if value is None else f"{type(value).__name__} {shown}"


# what one item of each SQuAD list is called in error messages
_SQUAD_ITEMS = {
    "data": "article",
    "paragraphs": "paragraph",
    "qas": "question",
    "answers": "answer",
}


def _squad_items(
    path: Path, where: str, node: dict, key: str, optional: bool = False
) -> list[tuple[str, dict]]:
    """The objects listed under ``node[key]``, each with its place (``where`` is ``node``'s, such
    as ``article 2, paragraph 1``; a question's place carries its id). A missing or null list is an
    error unless ``optional``, which reads it as empty."""
    items = node.get(key)
    if items is None and optional:
        return []
    if not isinstance(items, list):
        found = "nothing" if key not in node else _show(items)
        raise InputError(f"{path}: {where or 'top level'}: {key!r} must be a list, found {found}")
    places = []
    for index, item in enumerate(items, start=1):
        place = ", ".join(filter(None, (where, f"{_SQUAD_ITEMS[key]} {index}")))
        if not isinstance(item, dict):
            raise InputError(f"{path}: {place}: expected an object, found {_show(item)}")
        if "id" in item:
            place += f" (id {item['id']!r})"
        places.append((place, item))
    return places


def _records_squad(path: Path, data: object) -> tuple[list[dict], list[str]]:
    """The questions of a SQuAD document as records, and the place of each."""
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected SQuAD JSON with a top-level 'data' list")
    records, places = [], []
    for at_article, article in _squad_items(path, "", data, "data"):
        for at_paragraph, paragraph in _squad_items(path, at_article, article, "paragraphs"):
            for at_question, qa in _squad_items(path, at_paragraph, paragraph, "qas"):
                answers = _squad_items(path, at_question, qa, "answers", optional=True)
                first = answers[0][1] if answers else {}
                records.append(
                    {
                        "id": qa.get("id"),
                        "context": paragraph.get("context"),
                        "question": qa.get("question"),
                        "answer": first.get("text"),
                        "answer_start": first.get("answer_start"),
                    }
                )
                places.append(at_question)
    return records, places


def _records(
    path: Path, text: str, fmt: str, document: object
) -> tuple[list, list[int], list[str]]:
    """The file's records, the source row of each, and where each is in the file for messages
    (``row 3``, ``line 5``, ``article 1, paragraph 2, question 1 (id 'q7')``; ``document``: the
    parsed JSON, or None)."""
    if fmt == "jsonl":
        records, lines = _records_jsonl(path, text)
        return records, lines, [f"line {line}" for line in lines]
    if fmt == "csv":
        records = parse_csv(path, text)
    else:
        document = _parse_json(path, text) if document is None else document
        if fmt == "squad":
            records, places = _records_squad(path, document)
            return records, list(range(1, len(records) + 1)), places
        records = _records_json(path, document)
    rows = list(range(1, len(records) + 1))
    return records, rows, [f"row {row}" for row in rows]


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


def _missing(value: object) -> bool:
    """Null, or NaN (what Python's json module writes for a missing value in a pandas table)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text_problem(name: str, value: object) -> str | None:
    """What is wrong with ``value`` as the text field ``name`` (None: nothing). Text is a string
    without lone surrogates, or missing; an ``id`` may also be a whole number, read back exactly."""
    if isinstance(value, str):
        lone = _SURROGATE.search(value)
        if lone is None:
            return None
        return (
            f"a lone surrogate {lone.group()!r} at character {lone.start() + 1}: half of a UTF-16 "
            "pair (was the text cut inside an emoji?), not a character; fix it in the file"
        )
    if _missing(value) or (name == "id" and type(value) is int):
        return None
    expected = "text or a whole number" if name == "id" else "text"
    if isinstance(value, int | float) and not isinstance(value, bool):
        # JSON's 1.50 arrives here as 1.5 and 12345678901234567890.0 as 1.2345678901234567e+19
        return (
            f"expected {expected}, found the number {value!r}; write it as a JSON string "
            '("...") so that it is read exactly as written'
        )
    return f"expected {expected}, found {_show(value)}"


def _check_fields(
    path: Path, records: list, places: list[str], fields: tuple[str, ...], header: bool
) -> None:
    """Every record is an object carrying ``fields``, and every text field it has is text (see
    :func:`_text_problem`; ``places``: where each record is, such as ``row 3``)."""
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
        for name in TEXT_FIELDS:
            problem = _text_problem(name, record.get(name))
            if problem:
                raise InputError(f"{path}: {place}, field {name!r}: {problem}")


def _answer_start(path: Path, place: str, value: object) -> int | None:
    """One ``answer_start`` as a whole number >= 0; None when absent (null, NaN or empty)."""
    if _missing(value):
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
    records, rows, places = _records(path, text, fmt, document)
    if not records:
        raise InputError(f"{path}: contains no rows")
    _check_fields(path, records, places, ("context", "question", *required), header=fmt == "csv")
    # column by column from the checked fields alone: other fields are never read, and no column
    # passes through a float (a whole-number id keeps every digit)
    columns = {
        name: [None if _missing(r.get(name)) else str(r[name]) for r in records]
        for name in TEXT_FIELDS
    }
    frame = pd.DataFrame({name: pd.array(v, dtype="string") for name, v in columns.items()})
    frame["answer_start"] = pd.array(
        [
            _answer_start(path, p, r.get("answer_start"))
            for p, r in zip(places, records, strict=True)
        ],
        dtype="Int64",
    )
    frame["source_row"] = rows
    missing_id = frame["id"].isna() | (frame["id"].str.strip() == "")
    frame.loc[missing_id, "id"] = [
        f"{path.stem}_{row:05d}" for row in frame["source_row"][missing_id]
    ]
    duplicated = frame["id"].duplicated(keep="first")
    if duplicated.any():
        position = int(duplicated.to_numpy().argmax())
        raise InputError(
            f"{path}: {places[position]}, field 'id': duplicate id {frame['id'][position]!r}"
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
