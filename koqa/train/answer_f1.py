"""Validation F1 while training: greedy answers on a fixed subset of the validation shards, scored by
the contest's metric, so that the weights kept are those that answer best (``train.select_by: f1``).

The subset is ``train.eval_rows`` rows drawn once with a fixed seed: the same rows for every variant
and every evaluation. Answers come from koqa's own batched greedy decoding
(:func:`koqa.predict.generate.greedy_generate`, on the model as it trains, adapters unmerged),
stop at EOS, a line break or the shards' end-of-turn token, and are cut and trimmed as the
answers rule does before its post-processing steps (:func:`koqa.predict.answers.cut_answer`; prompt
labels on the same line are not cut). The gold is each row's target as the shards hold it (its answer tokens, decoded): the
text training teaches, not the uncleaned answer the score rule compares with. ``max_new_tokens``
is the training answers' 99th-percentile token count plus 4, as ``predict.max_new_tokens: auto``
sizes it with its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from tokenizers import Tokenizer

from koqa.data.tokenizer import TextTokenizer
from koqa.predict.answers import cut_answer
from koqa.predict.generate import (
    answer_token_budget,
    decode_answers,
    greedy_generate,
    stop_token_ids,
)
from koqa.score.metric import char_f1

SUBSET_SEED = 0
BUDGET_QUANTILE, BUDGET_MARGIN = 0.99, 4


@dataclass(frozen=True)
class AnswerF1:
    """Called with the model in training, returns the mean character F1 of its greedy answers to
    ``prompts`` against ``gold``."""

    prompts: list[list[int]]
    gold: list[str]
    tokenizer: Tokenizer
    stop_ids: list[int]
    pad_id: int
    max_new_tokens: int
    batch_size: int
    device: str
    precision: str

    def __call__(self, model: torch.nn.Module) -> float:
        model.eval()
        generated = greedy_generate(
            model,
            self.prompts,
            stop_ids=self.stop_ids,
            pad_id=self.pad_id,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            device=self.device,
            precision=self.precision,
        )
        answers = [cut_answer(text, []) for text in decode_answers(self.tokenizer, generated)]
        return sum(map(char_f1, answers, self.gold)) / len(self.gold)


def eval_subset(rows: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` of ``rows`` (all when there are fewer), drawn with a fixed seed, in their order."""
    if len(rows) <= n:
        return rows
    return rows.sample(n=n, random_state=SUBSET_SEED).sort_index()


def answer_f1_evaluator(
    settings: dict,
    validation_rows: pd.DataFrame,
    train_rows: pd.DataFrame,
    tokenizer: TextTokenizer,
    *,
    stop_ids: list[int],
    pad_id: int,
    device: str,
) -> AnswerF1:
    """The evaluator of variant ``settings`` on ``settings['eval_rows']`` of the validation shard
    rows; ``stop_ids``: the shards' end-of-turn tokens (EOS and line breaks are added)."""
    subset = eval_subset(validation_rows, settings["eval_rows"])
    lengths = zip(subset["input_ids"], subset["prompt_len"], strict=True)
    prompts, answers = zip(
        *(([int(t) for t in ids[:n]], [int(t) for t in ids[n:]]) for ids, n in lengths),
        strict=True,
    )
    stops = sorted({*stop_token_ids(tokenizer.tokenizer, tokenizer.eos_id), *stop_ids})
    budget = answer_token_budget(
        train_rows["n_tokens"] - train_rows["prompt_len"], BUDGET_QUANTILE, BUDGET_MARGIN
    )
    return AnswerF1(
        prompts=list(prompts),
        gold=decode_answers(tokenizer.tokenizer, list(answers)),
        tokenizer=tokenizer.tokenizer,
        stop_ids=stops,
        pad_id=pad_id,
        max_new_tokens=budget,
        batch_size=settings["batch_size"],
        device=device,
        precision=settings["precision"],
    )
