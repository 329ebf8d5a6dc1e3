"""Pieces of prediction: the answer-length budget, stop tokens, left padding, batching."""

import math
from pathlib import Path

import pyarrow as pa
import pytest

from koqa.data.shards import write_shards
from koqa.data.tokenizer import load_text_tokenizer
from koqa.predict.generate import (
    answer_token_budget,
    left_pad,
    plan_batches,
    prefix_groups,
    stop_token_ids,
)
from koqa.predict.job import resolve_max_new_tokens


def test_budget_is_a_high_quantile_of_answer_lengths_plus_margin() -> None:
    lengths = [3] * 190 + [10] * 9 + [40]
    assert answer_token_budget(lengths, 0.99, 4) == 14  # the one 40-token outlier is cut off
    assert answer_token_budget(lengths, 1.0, 0) == 40
    with pytest.raises(ValueError, match="no training answers"):
        answer_token_budget([], 0.99, 4)


def test_auto_budget_reads_the_training_shards(tmp_path: Path) -> None:
    rows = pa.table({"id": ["a", "b", "c"], "prompt_len": [2, 2, 1], "n_tokens": [4, 6, 3]})
    write_shards(rows, tmp_path / "train", shard_rows=2, metadata={})
    options = {"max_new_tokens": "auto", "max_new_tokens_quantile": 1.0, "max_new_tokens_margin": 2}
    assert resolve_max_new_tokens(options, tmp_path / "train") == 4 + 2
    assert resolve_max_new_tokens({**options, "max_new_tokens": 9}, tmp_path / "missing") == 9


def test_stop_tokens_are_eos_and_every_token_with_a_newline(tokenizer_dir: Path) -> None:
    tokenizer = load_text_tokenizer(tokenizer_dir)
    stops = stop_token_ids(tokenizer.tokenizer, tokenizer.eos_id)
    assert stops[0] == tokenizer.eos_id
    newline_tokens = tokenizer.encode("답변\n")
    assert newline_tokens[-1] in stops
    assert all("\n" in tokenizer.tokenizer.decode([token]) for token in stops[1:])
    assert not set(tokenizer.encode("한빛전자 3,500억 원")) & set(stops)


def test_left_pad_right_aligns_every_prompt() -> None:
    input_ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_prompts_sharing_a_prefix_are_grouped() -> None:
    context = list(range(100, 120))  # 20 shared tokens, like one context with several questions
    prompts = [[*context, 1, 2], [5, 6, 7], [*context, 3], [*context, 1, 2, 4]]
    groups = {tuple(sorted(group)): shared for shared, group in prefix_groups(prompts, 16)}
    # the common prefix, and every prompt keeps at least one token after it; alone: all but the last
    assert groups == {(0, 2, 3): 20, (1,): 2}


def test_a_shared_template_opening_alone_groups_nothing() -> None:
    """Every prompt starts with the template's opening; only prompts of one context form a group
    (chained by the opening, all prompts made one group sharing only it: no prefix saved)."""
    opening = list(range(900, 920))  # 20 tokens, more than MIN_SHARED_TOKENS
    contexts = [list(range(100 * k, 100 * k + 60)) for k in (1, 2, 3)]
    prompts = [[*opening, *context, q] for context in contexts for q in (1, 2)]
    groups = sorted((sorted(group), shared) for shared, group in prefix_groups(prompts, 16))
    assert groups == [([0, 1], 80), ([2, 3], 80), ([4, 5], 80)]


def test_batches_hold_whole_groups_up_to_the_batch_size() -> None:
    context = list(range(100, 120))
    prompts = [[*context, i] for i in range(5)] + [[7, 8], [9, 10, 11]]
    batches = plan_batches(prompts, batch_size=4, min_shared=16)
    assert all(sum(len(g) for _, g in batch) <= 4 for batch in batches)
    assert sorted(i for batch in batches for _, g in batch for i in g) == list(range(7))
    alone = plan_batches(prompts, batch_size=4, min_shared=math.inf)  # no sharing: each prompt
    assert all(shared == len(prompts[g[0]]) - 1 for b in alone for shared, g in b)  # runs whole
