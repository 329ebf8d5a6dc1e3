"""Tiny random-weight stand-ins for the model families Korean QA teams bring, built offline.

Each family is a transformers config class with real architectural features at tiny size (grouped-query
attention, qkv bias, q/k norm, soft-capping, sliding windows, fused projections, post-norms) and the
tokenizer kind and chat template its published checkpoints ship:

- ``bpe``: byte-level BPE behind a Llama-3-style regex split (Llama-3, kanana, Qwen, EXAONE, HyperCLOVA X);
  a BOS token only where the family adds one (Llama-3 does, Qwen does not);
- ``spm``: SentencePiece-style BPE as ``tokenizer.json`` carries it for Llama-2, Mistral, SOLAR/EEVE, Phi-3
  and Gemma: a normalizer that turns spaces into ``▁`` (and prepends one, except Gemma), no pre-tokenizer,
  byte fallback (``<0x00>``..``<0xFF>``) for characters outside the learned alphabet, BOS added.

The chat templates reproduce each family's published turn layout and end-of-turn token (checked against
the model cards; shortened where the real template only adds tool-calling branches). With ``chat=False``
the tokenizer has no chat template and its EOS is the base model's end-of-text token; with ``chat=True``
the EOS is the end-of-turn token, as instruct checkpoints ship it.

``make_model_dir(path, family)`` writes a directory that loads like a downloaded checkpoint:
``config.json``, ``model.safetensors`` (stored in ``dtype``, bf16 by default like real checkpoints),
``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``, ``generation_config.json``.
Weights are random but seeded: the same arguments give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
import transformers
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

SAMPLE_TRAIN = Path(__file__).resolve().parents[1] / "resources" / "sample" / "train.csv"
# Llama-3's (and, but for digit grouping, Qwen2's) pre-tokenization pattern
_BPE_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]

# -- chat templates -----------------------------------------------------------------------------
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# Qwen2.5: ChatML with a default system message
QWEN2_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n"
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen3: ChatML; the last assistant turn carries a (here empty) think block, which the generation
# prompt opens only when thinking is switched off
QWEN3_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' and loop.last %}<think>\n\n</think>\n\n{% endif %}"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)
# Gemma 2 and 3: no system role, the assistant is "model"
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
    "else message['role'] %}<start_of_turn>{{ role }}\n{{ message['content'] | trim }}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# Mistral Instruct v0.2/v0.3: no generation prompt, the answer ends with EOS
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "[INST] {{ message['content'] }} [/INST]{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
PHI3_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# EXAONE 3.5 / 4.0 turn layout
EXAONE_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}[|system|]"
    "{{ message['content'] }}[|endofturn|]\n{% elif message['role'] == 'user' %}[|user|]"
    "{{ message['content'] }}\n{% else %}[|assistant|]{{ message['content'] }}[|endofturn|]\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}[|assistant|]{% endif %}"
)
# HyperCLOVA X SEED: ChatML-like turns, the assistant's turn ends with <|im_end|><|endofturn|>
HYPERCLOVAX_TEMPLATE = (
    "<|im_start|>tool_list\n<|im_end|>\n{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>"
    "{% if message['role'] == 'assistant' %}<|endofturn|>{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# EEVE-Korean-Instruct (SOLAR): a plain-text turn layout whose answer ends with EOS
EEVE_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}Human: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)


@dataclass(frozen=True)
class TokenizerSpec:
    """A family's tokenizer: its kind, special tokens, and chat template."""

    kind: str  # "bpe" | "spm"
    bos: str | None  # added in front of every encoded text (None: no BOS, as Qwen)
    eos: str  # the base model's end of text
    pad: str | None
    template: str
    end_of_turn: str  # what ends an assistant turn in the chat template (EOS of instruct models)
    extra: tuple[str, ...] = ()  # further special tokens the template uses
    prepend_space: bool = True  # spm only: Llama-2 style "▁" before the text (Gemma: no)


@dataclass(frozen=True)
class Family:
    """A model family: how to build its tiny config, and its tokenizer."""

    model_type: str
    config: Callable[..., transformers.PretrainedConfig]
    arch: dict
    tokenizer: TokenizerSpec
    notes: str = ""
    extra_arch: dict = field(default_factory=dict)


_SMALL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # grouped-query attention, as every current family
    "max_position_embeddings": 1024,
}
_LLAMA3_TOKENS = TokenizerSpec(
    "bpe",
    "<|begin_of_text|>",
    "<|end_of_text|>",
    None,
    LLAMA3_TEMPLATE,
    "<|eot_id|>",
    ("<|start_header_id|>", "<|end_header_id|>"),
)
_CHATML = ("<|im_start|>",)
_SPM_LLAMA2 = TokenizerSpec("spm", "<s>", "</s>", None, EEVE_TEMPLATE, "</s>")
_GEMMA_TOKENS = TokenizerSpec(
    "spm",
    "<bos>",
    "<eos>",
    "<pad>",
    GEMMA_TEMPLATE,
    "<end_of_turn>",
    ("<start_of_turn>",),
    prepend_space=False,
)

FAMILIES: dict[str, Family] = {
    # Llama-3-Open-Ko-8B, kanana: grouped-query attention, byte-level BPE, BOS
    "llama": Family("llama", transformers.LlamaConfig, _SMALL, _LLAMA3_TOKENS),
    # SOLAR-10.7B / EEVE-Korean-10.8B / POLAR: the Llama architecture with a SentencePiece tokenizer
    "solar": Family("llama", transformers.LlamaConfig, _SMALL, _SPM_LLAMA2),
    "mistral": Family(
        "mistral",
        transformers.MistralConfig,
        {**_SMALL, "sliding_window": 512},
        TokenizerSpec("spm", "<s>", "</s>", None, MISTRAL_TEMPLATE, "</s>"),
    ),
    # qkv bias
    "qwen2": Family(
        "qwen2",
        transformers.Qwen2Config,
        _SMALL,
        TokenizerSpec(
            "bpe", None, "<|endoftext|>", "<|endoftext|>", QWEN2_TEMPLATE, "<|im_end|>", _CHATML
        ),
    ),
    # q/k RMSNorm
    "qwen3": Family(
        "qwen3",
        transformers.Qwen3Config,
        {**_SMALL, "head_dim": 8},
        TokenizerSpec(
            "bpe", None, "<|endoftext|>", "<|endoftext|>", QWEN3_TEMPLATE, "<|im_end|>", _CHATML
        ),
    ),
    # attention and final-logit soft-capping, alternating sliding-window layers, its own cache
    "gemma2": Family(
        "gemma2",
        transformers.Gemma2Config,
        {
            **_SMALL,
            "head_dim": 8,
            "sliding_window": 512,
            "query_pre_attn_scalar": 8,
            "final_logit_softcapping": 30.0,
            "attn_logit_softcapping": 50.0,
        },
        _GEMMA_TOKENS,
    ),
    "gemma3": Family(
        "gemma3_text",
        transformers.Gemma3TextConfig,
        {**_SMALL, "head_dim": 8, "sliding_window": 512, "query_pre_attn_scalar": 8},
        _GEMMA_TOKENS,
    ),
    # fused qkv_proj and gate_up_proj
    "phi3": Family(
        "phi3",
        transformers.Phi3Config,
        {**_SMALL, "num_key_value_heads": 4},
        TokenizerSpec(
            "spm",
            "<s>",
            "<|endoftext|>",
            "<|endoftext|>",
            PHI3_TEMPLATE,
            "<|end|>",
            ("<|user|>", "<|assistant|>", "<|system|>"),
        ),
    ),
    "exaone4": Family(
        "exaone4",
        transformers.Exaone4Config,
        {**_SMALL, "sliding_window": 512, "sliding_window_pattern": 2},
        TokenizerSpec(
            "bpe",
            "[BOS]",
            "[|endofturn|]",
            "[PAD]",
            EXAONE_TEMPLATE,
            "[|endofturn|]",
            ("[|system|]", "[|user|]", "[|assistant|]"),
        ),
    ),
    # post-norms and muP-style multipliers
    "hyperclovax": Family(
        "hyperclovax",
        transformers.HyperCLOVAXConfig,
        {**_SMALL, "head_dim": 8},
        TokenizerSpec(
            "bpe",
            None,
            "<|endoftext|>",
            "<|endoftext|>",
            HYPERCLOVAX_TEMPLATE,
            "<|endofturn|>",
            ("<|im_start|>", "<|im_end|>"),
        ),
    ),
}


# -- tokenizers ---------------------------------------------------------------------------------
@cache
def korean_corpus() -> tuple[str, ...]:
    """Training text for the tiny tokenizers: the sample's contexts, questions and answers, plus
    the prompt words of koqa's default template."""
    import pandas as pd

    rows = pd.read_csv(SAMPLE_TRAIN, dtype=str, keep_default_na=False)
    texts = [*rows["context"].unique(), *rows["question"], *rows["answer"]]
    return (*texts, "맥락: 질문: 답변:") * 2


def _special_tokens(spec: TokenizerSpec) -> list[str]:
    names = [spec.bos, spec.eos, spec.pad, spec.end_of_turn, *spec.extra, "<unk>"]
    return list(dict.fromkeys(name for name in names if name))


def _bpe_tokenizer(spec: TokenizerSpec, vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_BPE_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_special_tokens(spec),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(korean_corpus(), trainer=trainer)
    return tokenizer


def _spm_tokenizer(spec: TokenizerSpec, vocab_size: int) -> Tokenizer:
    """SentencePiece-style BPE: learned on whole words (pieces never hold a ``▁`` inside, as real
    SentencePiece vocabularies), then saved the way converted Llama-2 tokenizers are: a normalizer,
    no pre-tokenizer, byte fallback for the characters left out of the alphabet."""
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Metaspace(
        prepend_scheme="first" if spec.prepend_space else "never"
    )
    learner.train_from_iterator(
        korean_corpus(),
        trainer=trainers.BpeTrainer(vocab_size=vocab_size, limit_alphabet=500, show_progress=False),
    )
    learned = json.loads(learner.to_str())["model"]
    specials = _special_tokens(spec)
    vocab = {token: i for i, token in enumerate([*specials, *_BYTE_TOKENS])}
    for token in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tokenizer = Tokenizer(
        models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    steps = [normalizers.Replace(" ", "▁")]
    if spec.prepend_space:
        steps.insert(0, normalizers.Prepend("▁"))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if spec.prepend_space else [])
    )
    tokenizer.add_special_tokens(specials)
    return tokenizer


def build_tokenizer(
    spec: TokenizerSpec, chat: bool, vocab_size: int = 1000
) -> PreTrainedTokenizerFast:
    """The family's tokenizer; with ``chat`` its chat template, and EOS = the end-of-turn token."""
    tokenizer = (_bpe_tokenizer if spec.kind == "bpe" else _spm_tokenizer)(spec, vocab_size)
    if spec.bos:
        bos_id = tokenizer.token_to_id(spec.bos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{spec.bos} $A",
            pair=f"{spec.bos} $A {spec.bos} $B",
            special_tokens=[(spec.bos, bos_id)],
        )
    eos = spec.end_of_turn if chat else spec.eos
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=spec.bos,
        eos_token=eos,
        pad_token=spec.pad,
        unk_token="<unk>",
        additional_special_tokens=[
            t for t in _special_tokens(spec) if t not in (spec.bos, eos, spec.pad, "<unk>")
        ],
    )
    if chat:
        wrapped.chat_template = spec.template
    return wrapped


# -- models -------------------------------------------------------------------------------------
def build_config(
    family: str, tokenizer: PreTrainedTokenizerFast, **overrides: object
) -> transformers.PretrainedConfig:
    """The family's tiny config sized to ``tokenizer``'s vocabulary."""
    spec = FAMILIES[family]
    return spec.config(
        **{**spec.arch, **overrides},
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def make_model_dir(
    path: str | Path,
    family: str,
    *,
    chat: bool = False,
    tokenizer_kind: str | None = None,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
    **arch_overrides: object,
) -> Path:
    """Write a tiny random-weight checkpoint of ``family`` to ``path`` (created) and return it.

    ``tokenizer_kind`` ("bpe" or "spm") replaces the family's own tokenizer kind, to cross the two;
    ``arch_overrides`` replace config fields (e.g. ``num_hidden_layers=1``)."""
    spec = FAMILIES[family]
    tokens = spec.tokenizer
    if tokenizer_kind and tokenizer_kind != tokens.kind:
        tokens = TokenizerSpec(**{**tokens.__dict__, "kind": tokenizer_kind})
    tokenizer = build_tokenizer(tokens, chat)
    config = build_config(family, tokenizer, **arch_overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
