"""Tokenized shards on the pipeline's own byte-level BPE (BOS added by its post-processor): token ids
equal to whole-text encodings by transformers, answer-only labels, truncation inside the context,
validation prompts built like test prompts, drops with their reason, a lossless round trip."""

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from token_checks import cut_at_tokens
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from koqa.data.prompt import build_layout
from koqa.data.shards import (
    IGNORE_INDEX,
    encode_rows,
    encode_split,
    encode_to_shards,
    read_shards,
    stop_ids,
    write_shards,
)
from koqa.data.tokenizer import TextTokenizer, load_text_tokenizer

TEMPLATE = "맥락: {context}\n질문: {question}\n답변:"
FILLER = "세종바이오의 신임 대표로 김민수 대표가 선임되었다. " * 30
FACT = "한빛전자는 올해 영업이익이 3,500억 원이다."


def _rows(n: int = 5, context: str = FACT, answer: str = "3,500억 원") -> pd.DataFrame:
    start = context.find(answer)
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "context": [context] * n,
            "question": [f"영업이익은 얼마인가 {i}?" for i in range(n)],
            "target": [answer] * n,
            "answer_start": pd.array([start] * n, dtype="Int64"),
        }
    )


def _row(table, index: int = 0) -> dict:
    return {name: table.column(name)[index].as_py() for name in table.column_names}


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> TextTokenizer:
    return load_text_tokenizer(tokenizer_dir)


@pytest.fixture(scope="module")
def reference(tokenizer_dir: Path) -> PreTrainedTokenizerFast:
    """The same tokenizer as transformers loads it for a user: the ids koqa must match."""
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def _expected(reference, row: dict, frame_row: pd.Series) -> tuple[list[int], list[int]]:
    """Whole-text encodings of the row's prompt (its kept context) and of prompt + answer + EOS."""
    window = frame_row["context"][row["context_start"] : row["context_end"]]
    prompt = TEMPLATE.format(context=window, question=frame_row["question"])
    whole = reference(prompt + " " + frame_row["target"])["input_ids"]
    return reference(prompt)["input_ids"], [*whole, reference.eos_token_id]


def test_ids_are_whole_text_encodings_and_labels_cover_the_answer(
    tokenizer: TextTokenizer, reference
) -> None:
    frame = _rows(1, context="미래금융 관계자는 " + FACT, answer="한빛전자")
    row = _row(encode_rows(frame, tokenizer, build_layout(TEMPLATE, tokenizer), max_seq_len=256))
    prompt, whole = _expected(reference, row, frame.iloc[0])
    ids, labels, prompt_len = row["input_ids"], row["labels"], row["prompt_len"]
    assert ids == whole and ids[:prompt_len] == prompt
    assert ids[0] == reference.bos_token_id  # the tokenizer's post-processor adds BOS
    assert labels == [IGNORE_INDEX] * prompt_len + ids[prompt_len:]
    assert ids[-1] == reference.eos_token_id
    # the answer's first token carries its space (" 한빛..."), as in the whole text
    assert reference.convert_ids_to_tokens(ids[prompt_len]).startswith("Ġ")
    assert row["n_tokens"] == row["untruncated_tokens"] == len(ids)
    assert not row["context_truncated"]
    assert (row["context_start"], row["context_end"]) == (0, len(frame["context"][0]))


def test_a_template_ending_in_a_space_gives_the_same_rows(tokenizer: TextTokenizer) -> None:
    frame = _rows(2)
    plain = encode_rows(frame, tokenizer, build_layout(TEMPLATE, tokenizer), 256)
    spaced = encode_rows(frame, tokenizer, build_layout(TEMPLATE + " ", tokenizer), 256)
    assert spaced.to_pylist() == plain.to_pylist()


def test_rows_sharing_a_context_encode_like_rows_alone(tokenizer: TextTokenizer) -> None:
    layout = build_layout(TEMPLATE, tokenizer)
    frame = pd.concat([_rows(3), _rows(2, "미래금융은 3,500억 원을 벌었다.")], ignore_index=True)
    together = encode_rows(frame, tokenizer, layout, 256)
    alone = [_row(encode_rows(frame.iloc[[i]], tokenizer, layout, 256)) for i in range(5)]
    assert together.to_pylist() == alone


def test_truncation_cuts_inside_the_context_around_the_answer(
    tokenizer: TextTokenizer, reference
) -> None:
    frame = _rows(1, FILLER + FACT + " " + FILLER)
    row = _row(encode_rows(frame, tokenizer, build_layout(TEMPLATE, tokenizer), 96))
    prompt, whole = _expected(reference, row, frame.iloc[0])
    assert row["input_ids"] == whole and row["input_ids"][: row["prompt_len"]] == prompt
    assert row["n_tokens"] <= 96 < row["untruncated_tokens"]
    uncut = TEMPLATE.format(context=frame["context"][0], question=frame["question"][0])
    assert row["untruncated_tokens"] == len(reference(uncut + " 3,500억 원")["input_ids"]) + 1
    assert row["context_truncated"]
    start = frame["answer_start"][0]
    assert row["context_start"] <= start and start + 8 <= row["context_end"]
    assert cut_at_tokens(reference, frame["context"][0], row["context_start"], row["context_end"])


def test_a_100k_character_context_is_cut_around_its_answer(
    tokenizer: TextTokenizer, reference
) -> None:
    frame = _rows(1, "가나다라 " * 25_000 + FACT)
    row = _row(encode_rows(frame, tokenizer, build_layout(TEMPLATE, tokenizer), 128))
    prompt, whole = _expected(reference, row, frame.iloc[0])
    assert row["input_ids"] == whole and row["input_ids"][: row["prompt_len"]] == prompt
    assert row["n_tokens"] <= 128 and row["untruncated_tokens"] > 25_000
    assert row["context_end"] == len(frame["context"][0])  # the answer is at the very end


class _CountingTokenizer:
    """A ``tokenizers.Tokenizer`` that records the texts it computed offsets for."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.with_offsets = tokenizer, []

    def encode_batch(self, texts: list[str], **kwargs):
        self.with_offsets.extend(texts)
        return self.tokenizer.encode_batch(texts, **kwargs)

    def encode_batch_fast(self, texts: list[str], **kwargs):
        return self.tokenizer.encode_batch_fast(texts, **kwargs)


def test_offsets_only_for_contexts_that_are_cut_and_once(tokenizer: TextTokenizer) -> None:
    context = FILLER + FACT + " " + FILLER
    frame = pd.concat([_rows(3, context), _rows(2, FACT)], ignore_index=True)
    frame.loc[1, ["target", "answer_start"]] = ["김민수", context.find("김민수")]
    counting = _CountingTokenizer(tokenizer.tokenizer)
    layout = build_layout(TEMPLATE, tokenizer)
    together = encode_rows(frame, replace(tokenizer, tokenizer=counting), layout, 96)
    assert counting.with_offsets == [context]
    alone = [_row(encode_rows(frame.iloc[[i]], tokenizer, layout, 96)) for i in range(5)]
    assert together.to_pylist() == alone
    assert [row["context_truncated"] for row in alone] == [True, True, True, False, False]


def test_validation_prompts_are_test_prompts(tokenizer: TextTokenizer, reference) -> None:
    layout = build_layout(TEMPLATE, tokenizer)
    frame = _rows(1, FILLER + FACT)
    validation = _row(encode_split(frame, tokenizer, layout, 96, "validation").rows)
    test = _row(encode_split(frame.drop(columns="target"), tokenizer, layout, 96, "test").rows)
    # a much longer gold answer changes nothing before it: the window does not depend on it
    longer = frame.assign(target="3,500억 원으로 집계됐다고 회사 관계자가 밝혔다")
    other = _row(encode_split(longer, tokenizer, layout, 96, "validation").rows)
    n = test["prompt_len"]
    assert validation["input_ids"][:n] == test["input_ids"] == other["input_ids"][:n]
    assert validation["prompt_len"] == other["prompt_len"] == n
    assert n <= 96 < validation["n_tokens"]  # the prompt fills the budget, the answer follows
    assert validation["context_start"] == 0 and validation["context_truncated"]
    prompt, whole = _expected(reference, validation, frame.iloc[0])
    assert validation["input_ids"] == whole and test["input_ids"] == prompt
    assert test["labels"] == [IGNORE_INDEX] * n


def test_too_long_questions(tokenizer: TextTokenizer) -> None:
    layout = build_layout(TEMPLATE, tokenizer)
    frame = _rows(3)
    frame.loc[1, "question"] = "영업이익은 얼마인가? " * 20
    train = encode_split(frame, tokenizer, layout, 64, "train")
    assert train.rows.column("id").to_pylist() == ["r0", "r2"]
    assert train.dropped["id"].tolist() == ["r1"]
    assert train.dropped["reason"].tolist() == ["question_too_long"]
    assert "and the answer needs" in train.dropped["detail"][0]
    validation = encode_split(frame, tokenizer, layout, 64, "validation")
    assert validation.dropped["id"].tolist() == ["r1"]
    with pytest.raises(ValueError, match=r"row r1: the question is too long: .* needs \d+ tokens"):
        encode_split(frame.drop(columns="target"), tokenizer, layout, 64, "test")
    with pytest.raises(ValueError, match=r"row r1: question_too_long"):
        encode_rows(frame, tokenizer, layout, 64)


def test_shards_round_trip_with_metadata(tokenizer: TextTokenizer, tmp_path: Path) -> None:
    layout = build_layout(TEMPLATE, tokenizer)
    rows = encode_rows(_rows(7), tokenizer, layout, max_seq_len=256)
    metadata = {
        "tokenizer": tokenizer.fingerprint,
        "template": layout.fingerprint(),
        "stop_ids": "[2, 7]",
    }
    assert write_shards(rows, tmp_path / "shards", shard_rows=3, metadata=metadata) == 3
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    back, meta = read_shards(tmp_path / "shards")
    assert meta == metadata and stop_ids(meta) == [2, 7]
    assert back["id"].tolist() == rows.column("id").to_pylist()
    assert [list(x) for x in back["input_ids"]] == rows.column("input_ids").to_pylist()
    assert [list(x) for x in back["labels"]] == rows.column("labels").to_pylist()
    lengths, meta = read_shards(tmp_path / "shards", columns=["n_tokens", "prompt_len"])
    assert meta == metadata
    assert lengths.columns.tolist() == ["n_tokens", "prompt_len"]
    assert lengths["n_tokens"].tolist() == rows.column("n_tokens").to_pylist()


def test_the_tokenize_job_writes_a_shard_per_chunk_as_it_goes(
    tokenizer: TextTokenizer, tmp_path: Path
) -> None:
    """encode_to_shards (the tokenize job, reading its rows a chunk at a time) writes the token ids
    the whole split's encode_split gives, row for row, and collects every chunk's dropped rows."""
    layout = build_layout(TEMPLATE, tokenizer)
    frame = _rows(8)
    frame.loc[[1, 6], "question"] = "영업이익은 얼마인가? " * 20  # dropped: too long for 64 tokens
    frame.to_parquet(tmp_path / "rows.parquet")
    whole = encode_split(frame, tokenizer, layout, 64, "train")
    meta = {"tokenizer": tokenizer.fingerprint}
    written = encode_to_shards(
        tmp_path / "rows.parquet", tokenizer, layout, 64, "train", tmp_path / "shards", 3, meta
    )
    back, back_meta = read_shards(tmp_path / "shards")
    assert back_meta == meta
    assert (written.rows, written.shards) == (6, 3)  # chunks r0-r2, r3-r5, r6-r7 less r1, r6
    assert back["id"].tolist() == whole.rows.column("id").to_pylist()
    for column in ("input_ids", "labels"):
        assert [list(x) for x in back[column]] == whole.rows.column(column).to_pylist()
    assert written.dropped["id"].tolist() == whole.dropped["id"].tolist() == ["r1", "r6"]
    assert written.longest == max(back["n_tokens"])
    frame.iloc[:0].to_parquet(tmp_path / "none.parquet")
    empty = encode_to_shards(
        tmp_path / "none.parquet", tokenizer, layout, 64, "train", tmp_path / "empty", 3, meta
    )
    assert (empty.rows, empty.shards, len(read_shards(tmp_path / "empty")[0])) == (0, 1, 0)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{question} {context}", r"must put \{context\} before \{question\}"),
        ("맥락: {context}", r"must contain \{question\} exactly once, found it 0 times"),
        ("{context}{context} {question}", r"must contain \{context\} exactly once, found it 2"),
        ("{context} {question} {question}", r"must contain \{question\} exactly once, found it 2"),
    ],
)
def test_template_must_place_context_before_question(
    tokenizer: TextTokenizer, template: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_layout(template, tokenizer)


def test_a_system_message_needs_a_chat_template(tokenizer: TextTokenizer) -> None:
    with pytest.raises(
        ValueError, match=r"prompt\.system is set but prompt\.chat_template is false"
    ):
        build_layout(TEMPLATE, tokenizer, system="너는 도우미다.")
