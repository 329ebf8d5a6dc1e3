"""Batched greedy answer generation from tokenized prompts, and answer post-processing.

Prompts are the shards' prompt tokens (the exact ids the model was trained on), sorted by length so
each batch pads little, left-padded so every row's next token sits in the last column, decoded
greedily with the KV cache until EOS or ``max_new_tokens``.
"""

from __future__ import annotations

import re

import pandas as pd
import torch
from tokenizers import Tokenizer
from tqdm import tqdm

from koqa.train import autocast

_WRAPPERS = re.compile(
    r'^[\s"\'“”‘’「」『』\[\]()<>《》〈〉]+|[\s"\'“”‘’「」『』\[\]()<>《》〈〉.]+$'
)
_STOP_MARKERS = ("\n", "질문:", "맥락:", "답변:")


def clean_answer(text: str) -> str:
    """Cut at a newline or an echoed prompt marker, strip wrapping quotes/brackets and whitespace."""
    for marker in _STOP_MARKERS:
        text = text.split(marker, 1)[0]
    return _WRAPPERS.sub("", text).strip()


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts into (input_ids, attention_mask), padding on the left."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, prompt in enumerate(prompts):
        input_ids[i, width - len(prompt) :] = torch.as_tensor(prompt)
        attention_mask[i, width - len(prompt) :] = 1
    return input_ids, attention_mask


@torch.inference_mode()
def generate_answers(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    rows: pd.DataFrame,
    *,
    eos_id: int,
    pad_id: int,
    batch_size: int,
    max_new_tokens: int,
    device: str,
    precision: str = "auto",
) -> pd.DataFrame:
    """Generate an answer for each shard row (prompt = ``input_ids[:prompt_len]``)."""
    prompts = [
        ids[:n].tolist() for ids, n in zip(rows["input_ids"], rows["prompt_len"], strict=True)
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    raw: dict[int, str] = {}
    for start in tqdm(range(0, len(order), batch_size), desc="predict", mininterval=5):
        batch = order[start : start + batch_size]
        input_ids, attention_mask = left_pad([prompts[i] for i in batch], pad_id)
        with autocast(device, precision):
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eos_id,
                pad_token_id=pad_id,
            )
        new_tokens = output[:, input_ids.shape[1] :].tolist()
        for i, tokens in zip(batch, new_tokens, strict=True):
            if eos_id in tokens:
                tokens = tokens[: tokens.index(eos_id)]
            raw[i] = tokenizer.decode(tokens, skip_special_tokens=True)
    answers = [clean_answer(raw[i]) for i in range(len(prompts))]
    return pd.DataFrame({"id": rows["id"].tolist(), "answer": answers})
