"""Tokenized shards: answer-only labels, truncation around the answer, a lossless round trip."""

from pathlib import Path

import pandas as pd
import pytest

from koqa.shards import IGNORE_INDEX, encode_rows, read_shards, template_hash, write_shards
from koqa.tokenizer import load_text_tokenizer

TEMPLATE = "맥락: {context}\n질문: {question}\n답변:"


def _rows(n: int = 5, context: str = "한빛전자는 올해 영업이익이 3,500억 원이다.") -> pd.DataFrame:
    start = context.find("3,500억 원")
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "context": [context] * n,
            "question": [f"영업이익은 얼마인가 {i}?" for i in range(n)],
            "target": ["3,500억 원"] * n,
            "answer_start": pd.array([start] * n, dtype="Int64"),
        }
    )


def test_labels_cover_only_the_answer_and_eos(tokenizer_dir: Path) -> None:
    tokenizer = load_text_tokenizer(tokenizer_dir)
    rows = encode_rows(_rows(1), tokenizer, TEMPLATE, max_seq_len=256)
    ids, labels, prompt_len = (
        rows.loc[0, "input_ids"],
        rows.loc[0, "labels"],
        rows.loc[0, "prompt_len"],
    )
    assert ids[0] == tokenizer.bos_id
    assert labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == tokenizer.eos_id
    assert tokenizer.tokenizer.decode(ids[prompt_len:-1]).strip() == "3,500억 원"
    assert tokenizer.tokenizer.decode(ids[:prompt_len], skip_special_tokens=True).endswith("답변:")


def test_truncation_keeps_the_answer_in_the_window(tokenizer_dir: Path) -> None:
    tokenizer = load_text_tokenizer(tokenizer_dir)
    filler = "세종바이오의 신임 대표로 김민수 대표가 선임되었다. " * 30
    context = filler + "한빛전자는 올해 영업이익이 3,500억 원이다. " + filler
    rows = encode_rows(_rows(1, context), tokenizer, TEMPLATE, max_seq_len=96)
    row = rows.iloc[0]
    assert row["n_tokens"] <= 96
    assert row["context_truncated"]
    prompt = tokenizer.tokenizer.decode(row["input_ids"][: row["prompt_len"]])
    assert "3,500억 원" in prompt


def test_unlabelled_rows_keep_the_start_of_the_context(tokenizer_dir: Path) -> None:
    tokenizer = load_text_tokenizer(tokenizer_dir)
    frame = _rows(1, "미래금융은 2024년 3월 " + "공급계약을 체결했다. " * 50).drop(
        columns=["target", "answer_start"]
    )
    row = encode_rows(frame, tokenizer, TEMPLATE, max_seq_len=64).iloc[0]
    assert row["labels"] == [IGNORE_INDEX] * row["n_tokens"]
    assert tokenizer.tokenizer.decode(row["input_ids"]).startswith("맥락: 미래금융은")


def test_shards_round_trip_with_metadata(tokenizer_dir: Path, tmp_path: Path) -> None:
    tokenizer = load_text_tokenizer(tokenizer_dir)
    rows = encode_rows(_rows(7), tokenizer, TEMPLATE, max_seq_len=256)
    metadata = {
        "tokenizer": tokenizer.fingerprint,
        "template": template_hash(TEMPLATE),
        "max_seq_len": 256,
    }
    assert write_shards(rows, tmp_path / "shards", shard_rows=3, metadata=metadata) == 3
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    back, meta = read_shards(tmp_path / "shards")
    assert meta == {k: str(v) for k, v in metadata.items()}
    pd.testing.assert_series_equal(back["id"], rows["id"], check_dtype=False)
    assert [list(x) for x in back["input_ids"]] == rows["input_ids"].tolist()
    assert [list(x) for x in back["labels"]] == rows["labels"].tolist()


def test_template_must_place_context_before_question() -> None:
    with pytest.raises(ValueError, match="template"):
        from koqa.shards import template_parts

        template_parts("{question} {context}")
