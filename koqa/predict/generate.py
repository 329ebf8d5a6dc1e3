"""Batched greedy generation: the answer tokens a variant produces for each tokenized prompt.

Prompts are the shards' prompt tokens (the exact ids the model was trained on). Decoding is greedy
with the KV cache; a row stops at EOS or at its first token whose text contains a newline (answers
are one line; the rest would be cut anyway), or after ``max_new_tokens``.

Little is computed twice, on padding, or for rows that are done:

- *shared prefixes*: the contest's prompts put the context first, and one context carries several
  questions. Prompts are grouped by a common prefix of at least ``MIN_SHARED_TOKENS`` tokens and
  at least ``SHARED_FRACTION`` of each prompt (every prompt shares the template's opening with
  every other; a group is the prompts of one context, not the whole set chained by that); a
  batch runs each distinct prefix once (left-padded), gives every row a copy of its prefix's cache,
  runs the rows' own suffixes (padded between prefix and suffix; positions come from the attention
  mask, so padding anywhere changes nothing) and then one token per step. A row that stops leaves
  the batch and the cache at once. Batches hold whole groups, sorted by prefix length; a group
  larger than ``batch_size`` is split into parts of at most ``batch_size`` rows, each part running
  the prefix once.
- *prefix and prompt tuning* are decoded by the same loop, not by peft's ``generate()``. For prompt
  tuning, peft drops the position ids that ``generate()`` derives from the attention mask, so a
  left-padded row's text sits a gap of padding away from its virtual tokens and its logits differ
  from the prompt's alone (by ~1e-3 to 1e-1 on tiny models); ``generate()`` would also forgo the
  shared prefixes and keep finished rows. Here the virtual tokens come from peft's ``get_prompt``:
  prompt tuning's embeddings go in front of each row's text, after its padding; prefix tuning's
  keys and values start the cache, the padding follows them. Positions always come from the
  attention mask, as in training.

With a constraint (:mod:`koqa.predict.constrain`), each step's logits are masked to the tokens
that keep a row's text a span of its prompt's context before the argmax; nothing else changes.

All of it gives, to float rounding, the logits of a step-by-step full forward pass of each prompt
alone (``tests/test_generation_equivalence.py`` and ``tests/test_architectures.py`` compare every
step's logits, for every adaptation method on every model family).

Sliding-window layers (Mistral, Gemma 2/3, EXAONE 4) count padding inside a row as part of the
window. While every row's virtual tokens, prompt and answer fit in the window (the contest's
prompts do), all of the above is exact. When they may not, prefixes are not shared, so padding
stays in front of each row and the result stays exact, except for prefix tuning, whose padding
follows its virtual tokens: a padded row then sees fewer of its oldest tokens than alone (a
warning says so).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd
import torch
from peft import PeftModel
from tokenizers import Tokenizer
from tqdm import tqdm
from transformers import Cache, PreTrainedModel

from koqa.predict.constrain import ContextConstraint
from koqa.train.loop import autocast

log = logging.getLogger("koqa")
MIN_SHARED_TOKENS = 16
SHARED_FRACTION = 0.5
# A batch: groups of (prefix length, prompt indices); all prompts of a group share that prefix.
Batch = list[tuple[int, list[int]]]
# Called at every decoding step with the prompt indices of the rows still generating and their
# next-token logits (one row each, before any constraint's mask): how a test sees what decoding
# computed.
StepLogits = Callable[[list[int], torch.Tensor], None]


@dataclass(frozen=True)
class VirtualTokens:
    """What prefix or prompt tuning puts before every prompt: ``count`` positions that every row
    attends to, given as input embeddings (prompt tuning: ``embeddings``, with the ``embed``
    function the model's own tokens go through) or as a key/value cache (prefix tuning: ``cache``
    builds one for a batch of rows). ``count`` 0: none."""

    count: int = 0
    embeddings: torch.Tensor | None = None
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None
    cache: Callable[[int], Cache] | None = None


def virtual_tokens(model: PreTrainedModel) -> VirtualTokens:
    """The virtual tokens of a prefix- or prompt-tuned peft model, from peft's own ``get_prompt``
    (as its forward pass builds them); none for any other model."""
    if not (isinstance(model, PeftModel) and model.active_peft_config.is_prompt_learning):
        return VirtualTokens()
    config = model.active_peft_config
    if config.peft_type == "PREFIX_TUNING":
        return VirtualTokens(config.num_virtual_tokens, cache=model.get_prompt)
    if config.peft_type == "PROMPT_TUNING":
        embeddings = model.get_prompt(batch_size=1)[0]
        return VirtualTokens(config.num_virtual_tokens, embeddings, embed=model.word_embeddings)
    raise ValueError(f"koqa cannot decode {config.peft_type} models")


@dataclass(frozen=True)
class Decoding:
    """How every batch is decoded: the network that runs (a peft model's base, whose adapter
    layers are in place), the virtual tokens before every prompt, the padding id, the stop
    tokens, the length cap, the device, who sees each step's logits, and the constraint to the
    prompts' contexts (none: free decoding)."""

    network: PreTrainedModel
    virtual: VirtualTokens
    pad_id: int
    stops: frozenset[int]
    max_new_tokens: int
    device: str
    on_step: StepLogits | None = None
    constraint: ContextConstraint | None = None


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
    its weights (the same function with fewer matrix products; a 4-bit base keeps its adapter).
    A model's own generation defaults (sampling, repetition penalty) play no part: koqa's loop
    takes the plain argmax."""
    if (
        isinstance(model, PeftModel)
        and model.active_peft_config.peft_type in ("LORA", "IA3")
        and getattr(model.get_base_model().config, "quantization_config", None) is None
    ):
        model = model.merge_and_unload()
    return model


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
    """Prompts grouped by a common prefix of at least ``min_shared`` tokens and ``SHARED_FRACTION``
    of each prompt's length, as (prefix length, indices); every prompt keeps at least one token
    after its group's prefix."""
    groups: list[list[int]] = []
    for i in sorted(range(len(prompts)), key=lambda i: prompts[i]):
        shared = _common_prefix(prompts[groups[-1][0]], prompts[i]) if groups else 0
        if shared >= max(min_shared, SHARED_FRACTION * len(prompts[i])):
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


def plan_batches(prompts: list[list[int]], batch_size: int, min_shared: float) -> list[Batch]:
    """Batches of at most ``batch_size`` prompts: prefix groups (``min_shared``, see
    :func:`prefix_groups`) sorted by prefix length, whole where they fit and a group larger than
    ``batch_size`` split into parts of ``batch_size``."""
    groups = sorted(prefix_groups(prompts, min_shared), key=lambda g: g[0])
    batches: list[Batch] = [[]]
    for shared, group in groups:
        for start in range(0, len(group), batch_size):
            part = group[start : start + batch_size]
            if sum(len(g) for _, g in batches[-1]) + len(part) > batch_size:
                batches.append([])
            batches[-1].append((shared, part))
    return [batch for batch in batches if batch]


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip padding wherever it is (left, or between prefix and suffix)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def _with_virtual_embeddings(ids: torch.Tensor, virtual: VirtualTokens) -> torch.Tensor:
    """Input embeddings of ``ids``, in which ``-count .. -1`` stand for the virtual tokens."""
    embeds = virtual.embed(ids.clamp(min=0))
    slots = ids < 0
    embeds[slots] = virtual.embeddings[ids[slots] + virtual.count].to(embeds.dtype)
    return embeds


def _start(prefixes: list[list[int]], how: Decoding) -> tuple[Cache | None, torch.Tensor]:
    """Run the virtual tokens and each group's shared prefix once, left-padded: the cache (None
    while nothing has run) and the attention mask, one row per group."""
    virtual, n = how.virtual, len(prefixes)
    if virtual.embeddings is not None:  # prompt tuning: the padding goes before the virtual tokens
        ids, mask = left_pad([[*range(-virtual.count, 0), *p] for p in prefixes], how.pad_id)
        ids, mask = ids.to(how.device), mask.to(how.device)
        inputs, cache = {"inputs_embeds": _with_virtual_embeddings(ids, virtual)}, None
    else:  # prefix tuning: the virtual keys and values start the cache, the padding follows
        ids, mask = left_pad(prefixes, how.pad_id)
        ids, mask = ids.to(how.device), mask.to(how.device)
        inputs, cache = {"input_ids": ids}, virtual.cache(n) if virtual.cache else None
        mask = torch.cat([mask.new_ones((n, virtual.count)), mask], dim=1)
    if not ids.shape[1]:
        return cache, mask
    output = how.network(
        **inputs,
        attention_mask=mask,
        position_ids=_positions(mask)[:, -ids.shape[1] :],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return output.past_key_values, mask


def _decode_batch(prompts: list[list[int]], batch: Batch, how: Decoding) -> dict[int, list[int]]:
    """Greedy tokens for the prompts of ``batch``: each distinct prefix runs once, every row gets a
    copy of its prefix's cache and runs its own suffix, then one token per step; a row that has
    stopped leaves the batch (and the cache) at once."""
    rows = [i for _, group in batch for i in group]
    owner = torch.tensor(
        [k for k, (_, group) in enumerate(batch) for _ in group], device=how.device
    )
    cache, prefix_mask = _start([prompts[g[0]][:shared] for shared, g in batch], how)
    if cache is not None:
        cache.reorder_cache(owner)  # row i gets the cache of its group's prefix
    suffix_ids, suffix_mask = left_pad([prompts[i][n:] for n, g in batch for i in g], how.pad_id)
    inputs = suffix_ids.to(how.device)
    mask = torch.cat([prefix_mask[owner], suffix_mask.to(how.device)], dim=1)
    positions = _positions(mask)[:, -inputs.shape[1] :]
    alive = list(range(len(rows)))  # positions in `rows` of the rows still generating
    generated: list[list[int]] = [[] for _ in rows]
    spans = how.constraint.state(rows, how.device) if how.constraint else None
    for step in range(how.max_new_tokens):
        output = how.network(
            input_ids=inputs,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = output.past_key_values
        logits = output.logits[:, -1]
        if how.on_step:
            how.on_step([rows[k] for k in alive], logits)
        if spans is not None:
            live = torch.tensor(alive, device=how.device)
            steps_left = how.max_new_tokens - 1 - step
            allowed = spans.allowed(live, logits.shape[-1], steps_left)
            logits = logits.masked_fill(~allowed, -math.inf)
        tokens = logits.argmax(-1)
        if spans is not None:
            spans.advance(live, tokens)
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


def _past_the_window(how: Decoding, longest_prompt: int) -> bool:
    """Whether a row can reach past the model's sliding window (its virtual tokens, prompt and
    answer together); then padding inside a row would shift what the window holds, so prefixes are
    not shared (prefix tuning pads after its virtual tokens anyway: a warning says so)."""
    window = getattr(how.network.config, "sliding_window", None)
    if not window or how.virtual.count + longest_prompt + how.max_new_tokens <= window:
        return False
    log.warning(
        "prompts reach past the model's %d-token sliding window: no shared prefixes%s",
        window,
        "; prefix tuning's padded rows may differ from each prompt alone"
        if how.virtual.cache
        else "",
    )
    return True


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
    on_step: StepLogits | None = None,
    constraint: ContextConstraint | None = None,
) -> list[list[int]]:
    """The generated tokens of every prompt, in prompt order, each up to and including its stop token.

    ``model`` comes from :func:`prepare_for_inference`; ``on_step`` sees every step's logits;
    ``constraint``: only spans of each prompt's context are generated (:mod:`koqa.predict.constrain`).
    """
    how = Decoding(
        network=model.get_base_model() if isinstance(model, PeftModel) else model,
        virtual=virtual_tokens(model),
        pad_id=pad_id,
        stops=frozenset(stop_ids),
        max_new_tokens=max_new_tokens,
        device=device,
        on_step=on_step,
        constraint=constraint,
    )
    if share_prefixes and _past_the_window(how, max(map(len, prompts), default=0)):
        share_prefixes = False
    min_shared = MIN_SHARED_TOKENS if share_prefixes else math.inf
    generated: list[list[int]] = [[] for _ in prompts]
    for batch in tqdm(plan_batches(prompts, batch_size, min_shared), desc="predict", mininterval=5):
        with autocast(device, precision):
            tokens = _decode_batch(prompts, batch, how)
        for i, row_tokens in tokens.items():
            generated[i] = row_tokens
    return generated


def decode_answers(tokenizer: Tokenizer, generated: list[list[int]]) -> list[str]:
    """The text of each generation (special tokens such as EOS dropped)."""
    return tokenizer.decode_batch(generated, skip_special_tokens=True)
