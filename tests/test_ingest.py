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
    squad = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "서울의 한빛전자",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "회사?",
                                "answers": [{"text": "한빛전자", "answer_start": 4}],
                            }
                        ],
                    }
                ]
            }
        ]
    }
    frame = read_records(write_file(tmp_path / "s.json", json.dumps(squad, ensure_ascii=False)))
    assert frame.loc[0, ["id", "answer"]].tolist() == ["q1", "한빛전자"]
    assert frame.loc[0, "answer_start"] == 4


def test_missing_ids_are_generated(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "id"} for row in ROWS]
    frame = read_records(write_file(tmp_path / "extra.json", json.dumps(rows)))
    assert frame["id"].tolist() == ["extra_00001", "extra_00002"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
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
    ],
)
def test_bad_input_names_file_row_and_field(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        read_records(write_file(tmp_path / name, text))


def test_field_types_and_forced_format(tmp_path: Path) -> None:
    rows = [{"id": 7, "context": "매출은 3500억 원", "question": "얼마?", "answer": 3500}]
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
