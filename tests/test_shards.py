"""Tokenized shards: prompt layouts, answer-only labels, truncation, a lossless round trip."""

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from koqa.data.prompt import build_layout
from koqa.data.shards import IGNORE_INDEX, encode_rows, read_shards, write_shards
from koqa.data.tokenizer import TextTokenizer, load_text_tokenizer

TEMPLATE = "맥락: {context}\n질문: {question}\n답변:"
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA_LIKE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>user\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


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


def _row(table, index: int = 0) -> dict:
    return {name: table.column(name)[index].as_py() for name in table.column_names}


def _decode(tokenizer: TextTokenizer, ids: list[int], skip_special: bool = True) -> str:
    return tokenizer.tokenizer.decode(ids, skip_special_tokens=skip_special)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> TextTokenizer:
    return load_text_tokenizer(tokenizer_dir)


def test_labels_cover_only_the_answer_and_eos(tokenizer: TextTokenizer) -> None:
    layout = build_layout(TEMPLATE, tokenizer)
    row = _row(encode_rows(_rows(1), tokenizer, layout, max_seq_len=256))
    ids, labels, prompt_len = row["input_ids"], row["labels"], row["prompt_len"]
    assert ids[0] == tokenizer.bos_id
    assert labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == tokenizer.eos_id
    assert _decode(tokenizer, ids[prompt_len:-1]).strip() == "3,500억 원"
    assert _decode(tokenizer, ids[:prompt_len]) == (
        "맥락: 한빛전자는 올해 영업이익이 3,500억 원이다.\n질문: 영업이익은 얼마인가 0?\n답변:"
    )
    assert row["n_tokens"] == row["untruncated_tokens"] == len(ids)
    assert not row["context_truncated"]


def test_rows_sharing_a_context_encode_like_rows_alone(tokenizer: TextTokenizer) -> None:
    layout = build_layout(TEMPLATE, tokenizer)
    frame = pd.concat([_rows(3), _rows(2, "미래금융은 3,500억 원을 벌었다.")], ignore_index=True)
    together = encode_rows(frame, tokenizer, layout, 256)
    alone = [_row(encode_rows(frame.iloc[[i]], tokenizer, layout, 256)) for i in range(5)]
    assert together.to_pylist() == alone


def test_truncation_keeps_the_answer_in_the_window(tokenizer: TextTokenizer) -> None:
    filler = "세종바이오의 신임 대표로 김민수 대표가 선임되었다. " * 30
    context = filler + "한빛전자는 올해 영업이익이 3,500억 원이다. " + filler
    row = _row(encode_rows(_rows(1, context), tokenizer, build_layout(TEMPLATE, tokenizer), 96))
    assert row["n_tokens"] == 96 < row["untruncated_tokens"]
    assert row["context_truncated"]
    assert "3,500억 원" in _decode(tokenizer, row["input_ids"][: row["prompt_len"]])


class _CountingTokenizer:
    """A ``tokenizers.Tokenizer`` that records the texts ``encode`` (with offsets) was called on."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.encoded = tokenizer, []

    def encode(self, text: str, **kwargs):
        self.encoded.append(text)
        return self.tokenizer.encode(text, **kwargs)

    def encode_batch_fast(self, texts: list[str], **kwargs):
        return self.tokenizer.encode_batch_fast(texts, **kwargs)


def test_truncated_rows_sharing_a_context_get_its_offsets_once(tokenizer: TextTokenizer) -> None:
    filler = "세종바이오의 신임 대표로 김민수 대표가 선임되었다. " * 30
    context = filler + "한빛전자는 올해 영업이익이 3,500억 원이다. " + filler
    frame = _rows(3, context)
    frame.loc[1, ["target", "answer_start"]] = ["김민수", context.find("김민수")]
    counting = _CountingTokenizer(tokenizer.tokenizer)
    layout = build_layout(TEMPLATE, tokenizer)
    together = encode_rows(frame, replace(tokenizer, tokenizer=counting), layout, 96)
    assert counting.encoded.count(context) == 1
    alone = [_row(encode_rows(frame.iloc[[i]], tokenizer, layout, 96)) for i in range(3)]
    assert together.to_pylist() == alone
    assert all(row["context_truncated"] for row in alone)


def test_validation_prompts_do_not_follow_the_answer(tokenizer: TextTokenizer) -> None:
    filler = "세종바이오의 신임 대표로 김민수 대표가 선임되었다. " * 30
    context = filler + "한빛전자는 올해 영업이익이 3,500억 원이다."
    layout = build_layout(TEMPLATE, tokenizer)
    row = _row(encode_rows(_rows(1, context), tokenizer, layout, 96, center_on_answer=False))
    prompt = _decode(tokenizer, row["input_ids"][: row["prompt_len"]])
    assert row["context_truncated"] and prompt.startswith("맥락: 세종바이오의")
    assert "3,500억 원" not in prompt
    assert _decode(tokenizer, row["input_ids"][row["prompt_len"] : -1]).strip() == "3,500억 원"


def test_unlabelled_rows_keep_the_start_of_the_context(tokenizer: TextTokenizer) -> None:
    frame = _rows(1, "미래금융은 2024년 3월 " + "공급계약을 체결했다. " * 50).drop(
        columns=["target", "answer_start"]
    )
    row = _row(encode_rows(frame, tokenizer, build_layout(TEMPLATE, tokenizer), max_seq_len=64))
    assert row["n_tokens"] == 64 and row["context_truncated"]
    assert row["labels"] == [IGNORE_INDEX] * row["n_tokens"]
    assert _decode(tokenizer, row["input_ids"]).startswith("맥락: 미래금융은")
    assert _decode(tokenizer, row["input_ids"]).endswith("\n질문: 영업이익은 얼마인가 0?\n답변:")


def test_a_100k_character_context_is_cut_around_its_answer(tokenizer: TextTokenizer) -> None:
    context = "가나다라 " * 25_000 + "한빛전자는 올해 영업이익이 3,500억 원이다."
    row = _row(encode_rows(_rows(1, context), tokenizer, build_layout(TEMPLATE, tokenizer), 128))
    assert row["n_tokens"] == 128 and row["untruncated_tokens"] > 25_000
    assert "3,500억 원" in _decode(tokenizer, row["input_ids"][: row["prompt_len"]])


def test_too_small_max_seq_len_is_a_clear_error(tokenizer: TextTokenizer) -> None:
    with pytest.raises(ValueError, match=r"row r0: question and answer alone need \d+ tokens"):
        encode_rows(_rows(1), tokenizer, build_layout(TEMPLATE, tokenizer), max_seq_len=16)


def _with_chat_template(tokenizer_dir: Path, tmp_path: Path, template: str) -> Path:
    model_dir = tmp_path / "chat"
    model_dir.mkdir()
    (model_dir / "tokenizer.json").write_bytes((tokenizer_dir / "tokenizer.json").read_bytes())
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = template
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return model_dir


@pytest.mark.parametrize("template", [CHATML, GEMMA_LIKE])
def test_chat_template_renders_like_transformers(
    tokenizer_dir: Path, tmp_path: Path, template: str
) -> None:
    from transformers import AutoTokenizer

    model_dir = _with_chat_template(tokenizer_dir, tmp_path, template)
    tokenizer = load_text_tokenizer(model_dir)
    layout = build_layout(TEMPLATE, tokenizer, chat_template=True)
    row = _row(encode_rows(_rows(1), tokenizer, layout, max_seq_len=256))
    user = "맥락: 한빛전자는 올해 영업이익이 3,500억 원이다.\n질문: 영업이익은 얼마인가 0?\n답변:"
    expected = AutoTokenizer.from_pretrained(model_dir).apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    prompt = _decode(tokenizer, row["input_ids"][: row["prompt_len"]], skip_special=False)
    assert prompt == expected
    assert not layout.add_bos and layout.answer_separator == ""
    assert _decode(tokenizer, row["input_ids"][row["prompt_len"] :]) == "3,500억 원"
    assert layout.fingerprint() != build_layout(TEMPLATE, tokenizer).fingerprint()


def test_chat_template_errors_are_clear(tokenizer_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tokenizer has no chat template"):
        build_layout(TEMPLATE, load_text_tokenizer(tokenizer_dir), chat_template=True)
    tokenizer = load_text_tokenizer(_with_chat_template(tokenizer_dir, tmp_path, GEMMA_LIKE))
    with pytest.raises(ValueError, match="refused the prompt: System role not supported"):
        build_layout(TEMPLATE, tokenizer, chat_template=True, system="너는 도우미다.")


def test_chat_template_changes_the_tokenizer_fingerprint(
    tokenizer_dir: Path, tmp_path: Path
) -> None:
    chat = load_text_tokenizer(_with_chat_template(tokenizer_dir, tmp_path, CHATML))
    assert chat.fingerprint != load_text_tokenizer(tokenizer_dir).fingerprint


def test_shards_round_trip_with_metadata(tokenizer: TextTokenizer, tmp_path: Path) -> None:
    layout = build_layout(TEMPLATE, tokenizer)
    rows = encode_rows(_rows(7), tokenizer, layout, max_seq_len=256)
    metadata = {"tokenizer": tokenizer.fingerprint, "template": layout.fingerprint()}
    assert write_shards(rows, tmp_path / "shards", shard_rows=3, metadata=metadata) == 3
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    back, meta = read_shards(tmp_path / "shards")
    assert meta == metadata
    assert back["id"].tolist() == rows.column("id").to_pylist()
    assert [list(x) for x in back["input_ids"]] == rows.column("input_ids").to_pylist()
    assert [list(x) for x in back["labels"]] == rows.column("labels").to_pylist()
    lengths, meta = read_shards(tmp_path / "shards", columns=["n_tokens", "prompt_len"])
    assert meta == metadata
    assert lengths.columns.tolist() == ["n_tokens", "prompt_len"]
    assert lengths["n_tokens"].tolist() == rows.column("n_tokens").to_pylist()


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
