"""Reading every input shape, and clear errors for bad input."""

import json
from pathlib import Path

import pandas as pd
import pytest
from input_files import csv_text, write_file

from koqa.data.ingest import InputError, check_sample_ids, read_records

ROWS = [
    {"id": "A1", "context": "한빛전자는\n성장했다.", "question": "어디?", "answer": "한빛전자"},
    {"id": "A2", "context": "세종바이오", "question": "무엇?", "answer": "세종"},
]


def _squad(answers: object = None) -> dict:
    """A one-question SQuAD document (id ``q1``), with ``answers`` or one answer at offset 4."""
    if answers is None:
        answers = [{"text": "한빛전자", "answer_start": 4}]
    qa = {"id": "q1", "question": "회사?", "answers": answers}
    return {"data": [{"title": "t", "paragraphs": [{"context": "서울의 한빛전자", "qas": [qa]}]}]}


SQUAD_PLACE = r"article 1, paragraph 1, question 1 \(id 'q1'\)"


@pytest.mark.parametrize(
    ("name", "text", "encoding"),
    [
        ("train.csv", csv_text(ROWS), "utf-8"),
        ("train_bom.csv", csv_text(ROWS).replace("\n", "\r\n"), "utf-8-sig"),
        ("train_cp949.csv", csv_text(ROWS), "cp949"),
        ("train.json", json.dumps(ROWS, ensure_ascii=False), "utf-8"),
        ("train.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS), "utf-8"),
    ],
)
def test_shapes_and_encodings_read_the_same(
    tmp_path: Path, name: str, text: str, encoding: str
) -> None:
    frame = read_records(write_file(tmp_path / name, text, encoding), required=("answer",))
    assert frame["id"].tolist() == ["A1", "A2"]
    assert frame["context"].tolist() == ["한빛전자는\n성장했다.", "세종바이오"]
    assert frame["source_row"].tolist() == [1, 2]


def test_squad_json_keeps_answer_start(tmp_path: Path) -> None:
    text = json.dumps(_squad(), ensure_ascii=False)
    frame = read_records(write_file(tmp_path / "s.json", text))
    assert frame.loc[0, ["id", "answer"]].tolist() == ["q1", "한빛전자"]
    assert frame.loc[0, "answer_start"] == 4


def test_missing_ids_are_generated(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "id"} for row in ROWS]
    frame = read_records(write_file(tmp_path / "extra.json", json.dumps(rows)))
    assert frame["id"].tolist() == ["extra_00001", "extra_00002"]


# bad files: (name, text, the error expected)
MALFORMED = [
    (
        "bad.json",
        '[{"context": "a", "question": "b"',
        r"bad\.json: line 1, column \d+: invalid JSON",
    ),
    (
        "bad.jsonl",
        '{"context": "a", "question": "b"}\n{oops}',
        r"bad\.jsonl: line 2: invalid JSON",
    ),
    (
        "cols.csv",
        "id,context,query\n1,a,b\n",
        r"cols\.csv: line 1: header has no column 'question' .*did you mean 'query'\?",
    ),
    (
        "korean.csv",
        "id,지문,question\n1,a,b\n",
        r"korean\.csv: line 1: header has no column 'context' .*did you mean '지문'\?",
    ),
    (
        "rows.json",
        '[{"context": "a", "question": "b"}, {"context": "c", "Question": "d"}]',
        r"rows\.json: row 2: missing field 'question' .*did you mean 'Question'\?",
    ),
    (
        "nested.json",
        '[{"context": "a", "question": ["b", "c"]}]',
        r"nested\.json: row 1, field 'question': expected text, found list",
    ),
    (
        "object.json",
        '{"rows": [{"context": "a", "question": "b"}]}',
        r"object\.json: line 1: a JSON object with keys \['rows'\]",
    ),
    ("notjson.json", "context,question\na,b\n", r"notjson\.json: line 1: expected JSON"),
    (
        "ragged.csv",
        "id,context,question\n1,a,b\n2,a\n",
        r"ragged\.csv: row 2: wrong number of fields",
    ),
    (
        "dup.csv",
        "id,context,question\n1,a,b\n1,c,d\n",
        r"dup\.csv: row 2, field 'id': duplicate id '1'",
    ),
    ("empty.csv", "id,context,question\n", r"empty\.csv: contains no rows"),
]
# a lone surrogate in every JSON shape
LONE_SURROGATES = [
    (
        "lone.json",
        '[{"context": "a", "question": "회사\\ud800?"}]',
        r"lone\.json: row 1, field 'question': a lone surrogate '\\ud800' at character 3",
    ),
    (
        "lone.jsonl",
        '{"context": "a", "question": "b"}\n\n{"context": "\\udc00", "question": "b"}',
        r"lone\.jsonl: line 3, field 'context': a lone surrogate '\\udc00' at character 1",
    ),
    (
        "lone_id.json",
        '[{"id": "x\\ud83d", "context": "a", "question": "b"}]',
        r"lone_id\.json: row 1, field 'id': a lone surrogate '\\ud83d' at character 2",
    ),
    (
        "lone_squad.json",
        json.dumps(_squad(answers=[{"text": "한빛\ud800", "answer_start": 4}])),
        rf"lone_squad\.json: {SQUAD_PLACE}, field 'answer': a lone surrogate '\\ud800'",
    ),
]
# a number where text belongs, in every JSON shape
NUMBERS_AS_TEXT = [
    (
        "float.json",
        '[{"context": "a", "question": "b", "answer": 1.50}]',
        r"float\.json: row 1, field 'answer': expected text, found the number 1\.5; ",
    ),
    (
        "big.jsonl",
        '{"context": "a", "question": "b"}\n{"context": "a", "question": "b", '
        '"answer": 12345678901234567890}',
        r"big\.jsonl: line 2, field 'answer': expected text, found the number 1234567890",
    ),
    (
        "context.json",
        '[{"context": 2024, "question": "b"}]',
        r"context\.json: row 1, field 'context': expected text, found the number 2024",
    ),
    (
        "infinity.json",  # NaN, as Python's json module writes a missing value, is missing
        '[{"context": "a", "question": Infinity}]',
        r"infinity\.json: row 1, field 'question': expected text, found the number inf",
    ),
    (
        "squad_answer.json",
        json.dumps(_squad(answers=[{"text": 3500, "answer_start": 0}])),
        rf"squad_answer\.json: {SQUAD_PLACE}, field 'answer': expected text, found the number",
    ),
    (
        "float_id.json",
        '[{"id": 7.0, "context": "a", "question": "b"}]',
        r"float_id\.json: row 1, field 'id': expected text or a whole number, found the number",
    ),
    (
        "bool_id.json",
        '[{"id": true, "context": "a", "question": "b"}]',
        r"bool_id\.json: row 1, field 'id': expected text or a whole number, found bool true",
    ),
    (
        "test_answer.json",  # checked when present even where no answer is required
        '[{"context": "a", "question": "b", "answer": 0.5}]',
        r"test_answer\.json: row 1, field 'answer': expected text, found the number 0\.5",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), MALFORMED + LONE_SURROGATES + NUMBERS_AS_TEXT)
def test_bad_input_names_file_row_and_field(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        read_records(write_file(tmp_path / name, text))


def test_field_types_and_forced_format(tmp_path: Path) -> None:
    rows = [{"id": 7, "context": "매출은 3500억 원", "question": "얼마?", "answer": "3500"}]
    path = write_file(tmp_path / "data.txt", json.dumps(rows, ensure_ascii=False))
    frame = read_records(path, fmt="json", required=("answer",))
    assert frame.loc[0, ["id", "answer"]].tolist() == ["7", "3500"]
    with pytest.raises(InputError, match=r"data\.txt: line 1, column 2: invalid JSON"):
        read_records(write_file(tmp_path / "data.txt", "[oops"), fmt="json")


def test_test_ids_must_match_the_sample_submission(tmp_path: Path) -> None:
    frame = read_records(write_file(tmp_path / "test.csv", "id,context,question\nT1,a,b\nT2,c,d\n"))
    check_sample_ids(frame, tmp_path / "test.csv", ["T1", "T2"], tmp_path / "sample.csv")
    with pytest.raises(InputError, match=r"test\.csv: row 2, field 'id': 'T2' is not in .*sample"):
        check_sample_ids(frame, tmp_path / "test.csv", ["T1", "T3"], tmp_path / "sample.csv")
    with pytest.raises(InputError, match=r"sample\.csv: row 3, field 'id': 'T4' has no row in"):
        check_sample_ids(frame, tmp_path / "test.csv", ["T1", "T2", "T4"], tmp_path / "sample.csv")


def test_answer_required_for_training_files(tmp_path: Path) -> None:
    path = write_file(tmp_path / "t.csv", "id,context,question\n1,a,b\n")
    with pytest.raises(InputError, match=r"t\.csv: line 1: header has no column 'answer'"):
        read_records(path, required=("answer",))


def test_undecodable_bytes_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"id,context,question\n1,\xff\xfe\xfa,b\n")
    with pytest.raises(InputError, match=r"bin\.csv: line 2: bytes .* cannot be decoded"):
        read_records(path)
    with pytest.raises(InputError, match="file does not exist"):
        read_records(tmp_path / "nope.csv")


def test_answer_start_becomes_a_nullable_integer(tmp_path: Path) -> None:
    rows = [
        {"id": "S1", "context": "서울의 한빛전자", "question": "회사?", "answer": "한빛전자"},
        {"id": "S2", "context": "서울의 한빛전자", "question": "도시?", "answer": "서울"},
        {"id": "S3", "context": "서울의 한빛전자", "question": "어디?", "answer": "한빛"},
    ]
    starts = ["4", "", "4.0"]  # an empty cell, and the float form pandas writes beside NA
    text = csv_text([{**row, "answer_start": s} for row, s in zip(rows, starts, strict=True)])
    frame = read_records(write_file(tmp_path / "s.csv", text), required=("answer",))
    assert str(frame["answer_start"].dtype) == "Int64"
    assert frame["answer_start"].tolist() == [4, pd.NA, 4]
    mixed = [{**rows[0], "answer_start": 0}, {**rows[1], "answer_start": "0"}]
    frame = read_records(write_file(tmp_path / "m.json", json.dumps(mixed)))
    assert frame["answer_start"].tolist() == [0, 0]


@pytest.mark.parametrize("start", ["네번째", "4.5", "-1"])
def test_a_bad_answer_start_names_file_row_and_field(tmp_path: Path, start: str) -> None:
    rows = [dict(ROWS[0], answer_start="4"), dict(ROWS[1], answer_start=start)]
    path = write_file(tmp_path / "s.csv", csv_text(rows))
    with pytest.raises(InputError, match=rf"s\.csv: row 2, field 'answer_start': .*'{start}'"):
        read_records(path)


def test_a_bom_is_dropped_when_the_encoding_is_forced(tmp_path: Path) -> None:
    path = write_file(tmp_path / "bom.csv", csv_text(ROWS), "utf-8-sig")
    frame = read_records(path, encoding="utf-8")
    assert frame["id"].tolist() == ["A1", "A2"]


def test_pretty_printed_json_reads_once_and_reports_its_own_errors(tmp_path: Path) -> None:
    record = json.dumps(ROWS[0], ensure_ascii=False, indent=2)
    frame = read_records(write_file(tmp_path / "one.json", record), required=("answer",))
    assert (frame["id"].tolist(), frame["source_row"].tolist()) == (["A1"], [1])
    squad = json.dumps({"data": [{"paragraphs": []}]}, indent=2).splitlines()
    squad[3] += ","  # a syntax error deep inside a pretty-printed SQuAD file
    path = write_file(tmp_path / "squad.json", "\n".join(squad))
    with pytest.raises(InputError, match=r"squad\.json: line 5, column \d+: invalid JSON"):
        read_records(path)


def test_json_lines_rows_are_their_line_numbers(tmp_path: Path) -> None:
    lines = [json.dumps(ROWS[0]), "", json.dumps(ROWS[1]), "", '{"context": "c"}']
    path = write_file(tmp_path / "gaps.jsonl", "\n".join(lines[:3]))
    assert read_records(path)["source_row"].tolist() == [1, 3]
    with pytest.raises(InputError, match=r"gaps\.jsonl: line 5: missing field 'question'"):
        read_records(write_file(path, "\n".join(lines)))


def test_surrogates_that_are_not_an_error(tmp_path: Path) -> None:
    # an escaped pair is one character (an emoji); a field koqa does not read is never looked at
    text = '[{"context": "\\ud83d\\ude00 a", "question": "b", "note": "\\ud800"}]'
    frame = read_records(write_file(tmp_path / "pair.json", text))
    assert frame["context"].tolist() == ["\U0001f600 a"]


def test_a_csv_cannot_carry_a_surrogate_and_the_error_points_at_its_bytes(tmp_path: Path) -> None:
    # UTF-8 text with an encoded surrogate (CESU-8 style): the strict UTF-8 decoder refuses it, and
    # the error points at those bytes on line 3, not at the first Korean character CP949 trips on
    path = tmp_path / "cesu.csv"
    path.write_bytes("id,context,question\n1,한빛전자,b\n2,세종".encode() + b"\xed\xa0\x80,b\n")
    with pytest.raises(InputError, match=r"cesu\.csv: line 3: bytes b'\\xed\\xa0\\x80"):
        read_records(path)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_squad(answers="한빛전자"), rf"{SQUAD_PLACE}: 'answers' must be a list, found str"),
        (_squad(answers=["한빛전자"]), rf"{SQUAD_PLACE}, answer 1: expected an object, found str"),
        ({"data": [{"paragraphs": None}]}, r"article 1: 'paragraphs' must be a list, found null"),
        ({"data": [{"title": "t"}]}, r"article 1: 'paragraphs' must be a list, found nothing"),
        ({"data": [{"paragraphs": []}, "기사"]}, r"article 2: expected an object, found str"),
        ({"data": [{"paragraphs": [["x"]]}]}, r"article 1, paragraph 1: expected an object"),
        (
            {"data": [{"paragraphs": [{"context": "c", "qas": {"id": "q"}}]}]},
            r"article 1, paragraph 1: 'qas' must be a list, found dict",
        ),
        (
            {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "q9"}, 3]}]}]},
            r"article 1, paragraph 1, question 2: expected an object, found int 3",
        ),
    ],
)
def test_squad_nesting_errors_name_article_paragraph_and_question(
    tmp_path: Path, document: dict, message: str
) -> None:
    path = write_file(tmp_path / "nest.json", json.dumps(document, ensure_ascii=False))
    with pytest.raises(InputError, match=rf"nest\.json: {message}"):
        read_records(path)


def test_squad_questions_without_answers_are_rows_without_answer(tmp_path: Path) -> None:
    document = _squad(answers=[])
    qas = document["data"][0]["paragraphs"][0]["qas"]
    qas.append({"id": "q2", "question": "도시?", "answers": None})
    qas.append({"id": "q3", "question": "어디?"})
    frame = read_records(write_file(tmp_path / "s.json", json.dumps(document)))
    assert frame["id"].tolist() == ["q1", "q2", "q3"]
    assert frame["answer"].isna().all() and frame["answer_start"].isna().all()


def test_whole_number_ids_keep_every_digit(tmp_path: Path) -> None:
    rows = [
        {"id": 12345678901234567890, "context": "a", "question": "b"},
        {"id": None, "context": "c", "question": "d"},
        {"id": 7, "context": "e", "question": "f"},
    ]
    frame = read_records(write_file(tmp_path / "ids.json", json.dumps(rows)))
    assert frame["id"].tolist() == ["12345678901234567890", "ids_00002", "7"]
