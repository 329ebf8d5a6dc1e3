"""Batched greedy generation: the answer tokens a variant produces for each tokenized prompt.

Prompts are the shards' prompt tokens (the exact ids the model was trained on). Decoding is greedy
with the KV cache; a row stops at EOS or at its first token whose text contains a newline (answers
are one line; the rest would be cut anyway), or after ``max_new_tokens``.

Little is computed twice, on padding, or for rows that are done:

- *shared prefixes*: the contest's prompts put the context first, and one context carries several
  questions. Prompts are grouped by a common prefix of at least ``MIN_SHARED_TOKENS`` tokens; a
  batch runs each distinct prefix once (left-padded), gives every row a copy of its prefix's cache,
  runs the rows' own suffixes (padded between prefix and suffix; positions come from the attention
  mask, so padding anywhere changes nothing) and then one token per step. A row that stops leaves
  the batch and the cache at once. Batches hold whole groups, sorted by prefix length; a group
  larger than ``batch_size`` is split into parts of at most ``batch_size`` rows, each part running
  the prefix once.
- prefix and prompt tuning exist only inside peft's ``generate()``: their prompts are sorted by
  length, left-padded and handed to it whole.

Both give token for token what a step-by-step argmax over full forward passes of each prompt alone
gives (``tests/test_generation_equivalence.py`` checks it for every adaptation method).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import torch
from peft import PeftModel
from tokenizers import Tokenizer
from tqdm import tqdm
from transformers import GenerationConfig, PreTrainedModel

from koqa.train.loop import autocast

MIN_SHARED_TOKENS = 16
# A batch: groups of (prefix length, prompt indices); all prompts of a group share that prefix.
Batch = list[tuple[int, list[int]]]


@dataclass(frozen=True)
class Decoding:
    """How every batch is decoded: the padding id, the stop tokens, the length cap, the device."""

    pad_id: int
    stops: frozenset[int]
    max_new_tokens: int
    device: str


def answer_token_budget(answer_lengths: Iterable[int], quantile: float, margin: int) -> int:
    """``max_new_tokens`` from the training answers: their ``quantile`` token count (EOS included)
    plus ``margin``. Longer answers are rare, and a cap near the real lengths keeps a model that
    never stops from spending most of the prediction time on text that gets cut."""
    lengths = pd.Series(list(answer_lengths), dtype="int64")
    if lengths.empty:
        raise ValueError("no training answers to size max_new_tokens from")
    return math.ceil(lengths.quantile(quantile)) + margin


def stop_token_ids(tokenizer: Tokenizer, eos_id: int) -> list[int]:
    """EOS and every token whose text contains a newline."""
    vocab = range(tokenizer.get_vocab_size())
    texts = tokenizer.decode_batch([[i] for i in vocab], skip_special_tokens=True)
    newline = (i for i, text in zip(vocab, texts, strict=True) if "\n" in text and i != eos_id)
    return [eos_id, *newline]


def prepare_for_inference(model: PreTrainedModel) -> PreTrainedModel:
    """The model to generate with: a LoRA, DoRA or IA3 adapter on a full-precision base folded into
    its weights (the same function with fewer matrix products; a 4-bit base keeps its adapter), and
    the model's own generation defaults (a hub model may ship a repetition penalty or sampling
    settings) replaced so that every token is the plain argmax."""
    if (
        isinstance(model, PeftModel)
        and model.active_peft_config.peft_type in ("LORA", "IA3")
        and getattr(model.get_base_model().config, "quantization_config", None) is None
    ):
        model = model.merge_and_unload()
    inner = model.get_base_model() if isinstance(model, PeftModel) else model
    inner.generation_config = GenerationConfig()
    return model


def uses_peft_prompts(model: PreTrainedModel) -> bool:
    """Prefix or prompt tuning: peft adds them inside ``generate()`` only."""
    return isinstance(model, PeftModel) and model.active_peft_config.is_prompt_learning


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts into (input_ids, attention_mask), padding on the left."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, prompt in enumerate(prompts):
        if prompt:
            input_ids[i, width - len(prompt) :] = torch.as_tensor(prompt)
            attention_mask[i, width - len(prompt) :] = 1
    return input_ids, attention_mask


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def prefix_groups(prompts: list[list[int]], min_shared: float) -> list[tuple[int, list[int]]]:
    """Prompts grouped by a common prefix of at least ``min_shared`` tokens, as (prefix length,
    indices); every prompt keeps at least one token after its group's prefix."""
    groups: list[list[int]] = []
    for i in sorted(range(len(prompts)), key=lambda i: prompts[i]):
        if groups and _common_prefix(prompts[groups[-1][0]], prompts[i]) >= min_shared:
            groups[-1].append(i)
        else:
            groups.append([i])
    result = []
    for group in groups:
        first = prompts[group[0]]
        shared = min(len(prompts[i]) for i in group) - 1
        for i in group[1:]:
            shared = min(shared, _common_prefix(first, prompts[i]))
        result.append((shared, group))
    return result


def plan_batches(
    prompts: list[list[int]], batch_size: int, min_shared: float | None
) -> list[Batch]:
    """Batches of at most ``batch_size`` prompts: prefix groups (``min_shared``, see
    :func:`prefix_groups`) sorted by prefix length, whole where they fit and a group larger than
    ``batch_size`` split into parts of ``batch_size``; with ``None``, single prompts sorted by
    length with no prefix (for ``generate()``)."""
    if min_shared is None:
        groups = [(0, [i]) for i in sorted(range(len(prompts)), key=lambda i: len(prompts[i]))]
    else:
        groups = sorted(prefix_groups(prompts, min_shared), key=lambda g: g[0])
    batches: list[Batch] = [[]]
    for shared, group in groups:
        for start in range(0, len(group), batch_size):
            part = group[start : start + batch_size]
            if sum(len(g) for _, g in batches[-1]) + len(part) > batch_size:
                batches.append([])
            batches[-1].append((shared, part))
    return [batch for batch in batches if batch]


def cut_at_stop(tokens: list[int], stop_ids: set[int]) -> list[int]:
    """``tokens`` up to and including the first stop token (what follows is padding)."""
    for position, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[: position + 1]
    return tokens


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip padding wherever it is (left, or between prefix and suffix)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def _decode_batch(
    model: PreTrainedModel, prompts: list[list[int]], batch: Batch, how: Decoding
) -> dict[int, list[int]]:
    """Greedy tokens for the prompts of ``batch``: each distinct prefix runs once, every row gets a
    copy of its prefix's cache and runs its own suffix, then one token per step; a row that has
    stopped leaves the batch (and the cache) at once."""
    rows = [i for _, group in batch for i in group]
    owner = torch.tensor(
        [k for k, (_, group) in enumerate(batch) for _ in group], device=how.device
    )
    prefix_ids, prefix_mask = left_pad([prompts[g[0]][:shared] for shared, g in batch], how.pad_id)
    prefix_ids, prefix_mask = prefix_ids.to(how.device), prefix_mask.to(how.device)
    cache = None
    if prefix_ids.shape[1]:
        cache = model(
            input_ids=prefix_ids,
            attention_mask=prefix_mask,
            position_ids=_positions(prefix_mask),
            use_cache=True,
            logits_to_keep=1,
        ).past_key_values
        cache.reorder_cache(owner)  # row i gets the cache of its group's prefix
    suffix_ids, suffix_mask = left_pad([prompts[i][n:] for n, g in batch for i in g], how.pad_id)
    inputs = suffix_ids.to(how.device)
    mask = torch.cat([prefix_mask[owner], suffix_mask.to(how.device)], dim=1)
    positions = _positions(mask)[:, -inputs.shape[1] :]
    alive = list(range(len(rows)))  # positions in `rows` of the rows still generating
    generated: list[list[int]] = [[] for _ in rows]
    for step in range(how.max_new_tokens):
        output = model(
            input_ids=inputs,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = output.past_key_values
        tokens = output.logits[:, -1].argmax(-1)
        keep = []
        for k, (row, token) in enumerate(zip(alive, tokens.tolist(), strict=True)):
            generated[row].append(token)
            if token not in how.stops:
                keep.append(k)
        if not keep or step == how.max_new_tokens - 1:
            break
        if len(keep) < len(alive):
            index = torch.tensor(keep, device=how.device)
            cache.reorder_cache(index)
            alive, tokens, mask, positions = (
                [alive[k] for k in keep],
                tokens[index],
                mask[index],
                positions[index],
            )
        mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
        positions = positions[:, -1:] + 1
        inputs = tokens[:, None]
    return dict(zip(rows, generated, strict=True))


def _generate_batch(
    model: PreTrainedModel, prompts: list[list[int]], batch: Batch, how: Decoding
) -> dict[int, list[int]]:
    """Greedy tokens for the prompts of ``batch`` from ``generate()``, left-padded: the way peft
    injects prefix and prompt tuning."""
    rows = [i for _, group in batch for i in group]
    input_ids, attention_mask = left_pad([prompts[i] for i in rows], how.pad_id)
    config = GenerationConfig(
        max_new_tokens=how.max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=sorted(how.stops),
        pad_token_id=how.pad_id,
    )
    output = model.generate(
        input_ids=input_ids.to(how.device),
        attention_mask=attention_mask.to(how.device),
        generation_config=config,
    )
    new_tokens = output[:, input_ids.shape[1] :].tolist()
    return {i: cut_at_stop(tokens, how.stops) for i, tokens in zip(rows, new_tokens, strict=True)}


@torch.inference_mode()
def greedy_generate(
    model: PreTrainedModel,
    prompts: list[list[int]],
    *,
    stop_ids: list[int],
    pad_id: int,
    batch_size: int,
    max_new_tokens: int,
    device: str,
    precision: str = "auto",
    share_prefixes: bool = True,
) -> list[list[int]]:
    """The generated tokens of every prompt, in prompt order, each up to and including its stop token.

    ``model`` comes from :func:`prepare_for_inference`.
    """
    if uses_peft_prompts(model):
        batches, step = plan_batches(prompts, batch_size, None), _generate_batch
    else:
        min_shared = MIN_SHARED_TOKENS if share_prefixes else math.inf
        batches, step = plan_batches(prompts, batch_size, min_shared), _decode_batch
    how = Decoding(pad_id, frozenset(stop_ids), max_new_tokens, device)
    generated: list[list[int]] = [[] for _ in prompts]
    for batch in tqdm(batches, desc="predict", mininterval=5):
        with autocast(device, precision):
            tokens = step(model, prompts, batch, how)
        for i, row_tokens in tokens.items():
            generated[i] = row_tokens
    return generated


def decode_answers(tokenizer: Tokenizer, generated: list[list[int]]) -> list[str]:
    """The text of each generation (special tokens such as EOS dropped)."""
    return tokenizer.decode_batch(generated, skip_special_tokens=True)
