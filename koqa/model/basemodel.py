"""The base model: build and pretrain the embedded tiny Llama, or load a real one from a path.

The tiny model exists so the whole pipeline runs on a laptop CPU with no download: a byte-level
BPE tokenizer trained on the cleaned training text, a small seeded Llama, and a short causal-LM
pretraining on the training contexts so that the adapters have a language model to adapt.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm import tqdm
from transformers import (
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from koqa.train.loop import lr_factor

log = logging.getLogger("koqa")
# model.dtype names (auto: the checkpoint's own dtype, as transformers reads it from its config)
DTYPES: dict[str, str | torch.dtype] = {
    "auto": "auto",
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
}
SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}


def train_bpe_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (every byte representable, so no unknown tokens) on ``texts``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, padding_side="left", add_bos_token=True, **SPECIAL_TOKENS
    )


def build_tiny_llama(tokenizer: PreTrainedTokenizerFast, arch: dict, seed: int) -> LlamaForCausalLM:
    """A freshly initialized small Llama sized by ``arch`` (seeded: same seed, same weights)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch["hidden_size"],
        intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["num_layers"],
        num_attention_heads=arch["num_heads"],
        num_key_value_heads=arch["num_heads"],
        max_position_embeddings=arch["max_position_embeddings"],
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def pretrain(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    texts: list[str],
    settings: dict,
) -> list[float]:
    """Causal-LM pretraining on ``texts`` packed into blocks; returns the loss of every step."""
    ids: list[int] = []
    for encoding in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids += [tokenizer.bos_token_id, *encoding, tokenizer.eos_token_id]
    block = settings["block_size"]
    n_blocks = len(ids) // block
    if n_blocks == 0:
        raise ValueError(f"pretraining text has {len(ids)} tokens, fewer than one block of {block}")
    blocks = torch.tensor(ids[: n_blocks * block]).view(n_blocks, block)
    steps, batch_size = settings["steps"], settings["batch_size"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor("cosine", warmup=max(1, steps // 10), total=steps)
    )
    order = random.Random(settings["seed"])
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc="pretrain", mininterval=5):
        batch = blocks[[order.randrange(n_blocks) for _ in range(batch_size)]]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def load_base_model(
    model_dir: str | Path,
    *,
    trust_remote_code: bool = False,
    quantize_4bit: bool = False,
    compute_dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    dtype: str | torch.dtype = "auto",
) -> PreTrainedModel:
    """Load a causal LM from a local directory of safetensors weights onto ``device`` (4-bit NF4 for
    QLoRA, its layers computing in ``compute_dtype``: see :func:`koqa.train.loop.compute_dtype`).

    ``dtype`` (the config's ``model.dtype``): ``auto`` keeps the checkpoint's own dtype (its
    config's ``dtype``: bf16 for current 7-14B models, so an 8B model takes 16 GB, not 32), else a
    name of :data:`DTYPES` or a torch dtype. For QLoRA it is the dtype of the layers left
    unquantized (embeddings, norms, head)."""
    quantization = None
    if quantize_4bit:
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        use_safetensors=True,
        local_files_only=True,
        trust_remote_code=trust_remote_code,
        quantization_config=quantization,
        device_map=device,  # straight onto the device: no copy of the weights in CPU memory
        dtype=DTYPES[dtype] if isinstance(dtype, str) else dtype,
    )
    if quantize_4bit:
        _disable_cpu_bf16_repacking(model)
    return model


def _disable_cpu_bf16_repacking(model: torch.nn.Module) -> None:
    """bitsandbytes 0.50 repacks 4-bit weights for an inference-only kernel on AVX512-BF16 CPUs
    after any no-grad forward, after which LoRA gradients are silently wrong. Turn that off."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
