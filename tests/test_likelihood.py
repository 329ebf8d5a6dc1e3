"""The likelihood ensemble's scores: batched, right-padded mean log-probabilities equal those of a
forward pass of each candidate alone (logits level, every method whose forward pass differs:
none, LoRA, prefix and prompt tuning), and candidates are encoded as the pipeline encodes
validation targets, after the prompts the variant answered."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tiny_task import ARCH
from transformers import PreTrainedTokenizerFast

from koqa.data.prompt import build_layout
from koqa.data.shards import IGNORE_INDEX, encode_rows, write_shards
from koqa.data.tokenizer import load_text_tokenizer
from koqa.files import write_json
from koqa.model.adapters import MANIFEST, trainable_model
from koqa.model.basemodel import build_tiny_llama
from koqa.predict.likelihood import (
    candidate_table,
    check_prompts,
    encode_candidates,
    mean_logprobs,
    run_likelihood,
)
from koqa.train.variants import resolve_variant

CONFIG = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text(encoding="utf-8"))
TEMPLATE = "맥락: {context}\n질문: {question}\n답변:"
TOLERANCE = 1e-5  # fp32 on the CPU: observed ~1e-6


def _model(tokenizer_dir: Path, method: str) -> torch.nn.Module:
    """A seeded tiny Llama with ``method``'s adapter, its trainable weights moved off their
    initial values (LoRA starts as a no-op)."""
    base = build_tiny_llama(PreTrainedTokenizerFast.from_pretrained(tokenizer_dir), ARCH, seed=5)
    if method == "zeroshot":
        return base.eval()
    settings = resolve_variant({"train": {}, "variants": {method: {"method": method}}}, method)
    model = trainable_model(base, settings)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in (p for p in model.parameters() if p.requires_grad):
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


def _encoded(rows: list[tuple[list[int], list[int]]]) -> pd.DataFrame:
    """Shard-like rows from (prompt ids, candidate ids)."""
    return pd.DataFrame(
        {
            "input_ids": [np.array(p + c) for p, c in rows],
            "labels": [np.array([IGNORE_INDEX] * len(p) + c) for p, c in rows],
            "prompt_len": [len(p) for p, _ in rows],
            "n_tokens": [len(p) + len(c) for p, c in rows],
        }
    )


@torch.no_grad()
def _alone(model: torch.nn.Module, prompt: list[int], candidate: list[int]) -> float:
    """The mean log-probability of ``candidate`` after ``prompt`` the obvious way: one forward
    pass of the two alone, no padding, no batch."""
    tokens = prompt + candidate
    logits = model(input_ids=torch.tensor([tokens])).logits[0, -len(tokens) :]
    logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
    return float(logprobs[torch.arange(len(candidate)), torch.tensor(candidate)].mean())


@pytest.mark.parametrize("method", ["zeroshot", "lora", "prefix", "prompt"])
def test_batched_mean_logprobs_equal_each_candidate_alone(tokenizer_dir: Path, method: str) -> None:
    model = _model(tokenizer_dir, method)
    generator = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(3, 400, (n,), generator=generator).tolist()

    # prompts and candidates of several lengths: each batch of 3 is right-padded, and two
    # candidates share a prompt as a row's candidates do
    shared = ids(9)
    rows = [
        (ids(12), ids(3)),
        (shared, ids(1)),
        (shared, ids(5)),
        (ids(4), ids(2)),
        (ids(20), ids(4)),
    ]
    batched = mean_logprobs(
        model, _encoded(rows), pad_id=0, batch_size=3, device="cpu", precision="fp32"
    )
    alone = np.array([_alone(model, prompt, candidate) for prompt, candidate in rows])
    assert np.abs(batched - alone).max() < TOLERANCE
    assert len(set(np.round(alone, 3))) == len(rows)  # distinct values: a mix-up would show


def test_candidates_are_each_members_distinct_answers_encoded_as_validation_targets(
    tokenizer_dir: Path,
) -> None:
    tokenizer = load_text_tokenizer(tokenizer_dir)
    layout = build_layout(TEMPLATE, tokenizer)
    rows = pd.DataFrame(
        {
            "id": ["q1", "q2"],
            "context": [
                "한빛전자는 올해 1분기 영업이익이 3,500억 원으로 집계됐다고 밝혔다.",
                "세종바이오의 신임 대표로 김민수 대표가 선임되었다.",
            ],
            "question": ["얼마인가?", "누가"],
        }
    )
    members = [
        {"q1": "3,500억 원", "q2": "김민수"},
        {"q1": "３,５００억 원", "q2": "?"},  # a raw surface; an answer that abstains
        {"q1": "3,500억 원", "q2": "김민수 대표"},
    ]
    table = candidate_table(rows, members, CONFIG["clean"])
    assert table[["id", "candidate"]].values.tolist() == [
        ["q1", "3,500억 원"],
        ["q1", "３,５００억 원"],
        ["q2", "김민수"],
        ["q2", "김민수 대표"],
    ]
    assert table["target"].tolist() == ["3,500억 원", "3,500억 원", "김민수", "김민수 대표"]
    encoded = encode_candidates(table, tokenizer, layout, max_seq_len=256)
    for row, tokens, n in zip(
        table.itertuples(), encoded["input_ids"], encoded["prompt_len"], strict=True
    ):
        prompt_text = layout.prompt_text(row.context, row.question)
        whole = tokenizer.tokenizer.encode(prompt_text + layout.target_text(row.target)).ids
        assert tokens.tolist() == whole + list(layout.end_ids)
        assert whole[:n] == tokenizer.tokenizer.encode(prompt_text).ids
    # the prompts are those of the split's shards (test rows: prompts only)
    shards = encode_rows(rows, tokenizer, layout, max_seq_len=256).to_pandas()
    check_prompts(encoded, table["id"].tolist(), shards)
    shards.loc[1, "input_ids"] = shards.loc[1, "input_ids"][::-1].copy()
    with pytest.raises(ValueError, match="row q2: the candidate's prompt differs"):
        check_prompts(encoded, table["id"].tolist(), shards)


def test_the_job_writes_each_candidates_score_in_table_order(
    tokenizer_dir: Path, tmp_path: Path
) -> None:
    """The whole job on a saved tiny Llama and split shards: every (id, candidate) gets the score
    of its own prompt and candidate alone, whatever order the batches ran in."""
    base_dir, variant_dir = tmp_path / "base", tmp_path / "variant"
    model = _model(tokenizer_dir, "zeroshot")
    model.save_pretrained(base_dir, safe_serialization=True)
    PreTrainedTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(base_dir)
    variant_dir.mkdir()
    write_json({"variant": "zeroshot", "method": "zeroshot"}, variant_dir / MANIFEST)
    tokenizer = load_text_tokenizer(base_dir)
    prompt = {
        "template": TEMPLATE,
        "chat_template": False,
        "system": None,
        "chat_template_kwargs": {},
        "max_seq_len": 256,
    }
    layout = build_layout(TEMPLATE, tokenizer)
    rows = pd.DataFrame(
        {
            "id": ["q1", "q2", "q3"],
            "context": [
                "한빛전자는 올해 1분기 영업이익이 3,500억 원으로 집계됐다고 밝혔다.",
                "세종바이오의 신임 대표로 김민수 대표가 선임되었다.",
                "미래금융은 2024년 3월 부산에서 공급계약을 체결했다.",
            ],
            "question": ["얼마인가?", "누가", "언제 어디서"],
        }
    )
    shard_dir = tmp_path / "shards"
    write_shards(encode_rows(rows, tokenizer, layout, 256), shard_dir, 2, {})
    members = [
        {"q1": "3,500억 원", "q2": "김민수", "q3": "2024년 3월 부산에서 공급계약을 체결했다"},
        {"q1": "1분기", "q2": "-", "q3": "부산"},
    ]
    out = tmp_path / "scores.parquet"
    result = run_likelihood(
        variant_dir=variant_dir,
        base_dir=base_dir,
        rows=rows,
        shard_dir=shard_dir,
        answers=members,
        prompt=prompt,
        clean_options=CONFIG["clean"],
        out_path=out,
        batch_size=2,
        device="cpu",
        precision="fp32",
    )
    assert pd.read_parquet(out).equals(result)
    assert result[["id", "candidate"]].values.tolist() == [
        ["q1", "3,500억 원"], ["q1", "1분기"], ["q2", "김민수"],
        ["q3", "2024년 3월 부산에서 공급계약을 체결했다"], ["q3", "부산"],
    ]  # fmt: skip
    frame = rows.set_index("id")
    for row in result.itertuples():
        prompt_text = layout.prompt_text(frame.at[row.id, "context"], frame.at[row.id, "question"])
        prompt_ids = tokenizer.tokenizer.encode(prompt_text).ids
        whole = tokenizer.tokenizer.encode(prompt_text + layout.target_text(row.candidate)).ids
        candidate_ids = whole[len(prompt_ids) :] + list(layout.end_ids)
        assert row.tokens == len(candidate_ids)
        assert abs(row.logprob - _alone(model, prompt_ids, candidate_ids)) < TOLERANCE
