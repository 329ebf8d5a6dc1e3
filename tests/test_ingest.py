"""Reading every input shape, and clear errors for bad input."""

import json
from pathlib import Path

import pytest

from koqa.ingest import InputError, read_records

ROWS = [
    {"id": "A1", "context": "한빛전자는\n성장했다.", "question": "어디?", "answer": "한빛전자"},
    {"id": "A2", "context": "세종바이오", "question": "무엇?", "answer": "세종"},
]


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "text", "encoding"),
    [
        ("train.csv", _csv(ROWS), "utf-8"),
        ("train_bom.csv", _csv(ROWS).replace("\n", "\r\n"), "utf-8-sig"),
        ("train_cp949.csv", _csv(ROWS), "cp949"),
        ("train.json", json.dumps(ROWS, ensure_ascii=False), "utf-8"),
        ("train.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS), "utf-8"),
    ],
)
def test_shapes_and_encodings_read_the_same(
    tmp_path: Path, name: str, text: str, encoding: str
) -> None:
    frame = read_records(_write(tmp_path / name, text, encoding), required=("answer",))
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
    frame = read_records(_write(tmp_path / "s.json", json.dumps(squad, ensure_ascii=False)))
    assert frame.loc[0, ["id", "answer"]].tolist() == ["q1", "한빛전자"]
    assert frame.loc[0, "answer_start"] == 4


def test_missing_ids_are_generated(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "id"} for row in ROWS]
    frame = read_records(_write(tmp_path / "extra.json", json.dumps(rows)))
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
        ("cols.csv", "id,context,query\n1,a,b\n", r"cols\.csv: row 1: missing field 'question'"),
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
        read_records(_write(tmp_path / name, text))


def test_answer_required_for_training_files(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "id,context,question\n1,a,b\n")
    with pytest.raises(InputError, match=r"row 1: missing field 'answer'"):
        read_records(path, required=("answer",))


def test_undecodable_bytes_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"id,context,question\n1,\xff\xfe\xfa,b\n")
    with pytest.raises(InputError, match=r"bin\.csv: line 2: bytes .* cannot be decoded"):
        read_records(path)
    with pytest.raises(InputError, match="file does not exist"):
        read_records(tmp_path / "nope.csv")
