"""Wrap a base model for one adaptation method, and load a trained variant back for inference.

Every method except ``full`` and ``zeroshot`` goes through peft. A trained variant's directory holds
``koqa_variant.json`` (method, base model) and the weights: a peft adapter, or the full model, both in
safetensors; ``zeroshot`` holds only the JSON.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import (
    IA3Config,
    LoraConfig,
    PeftConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    TaskType,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from transformers import PreTrainedModel

from koqa.basemodel import load_base_model
from koqa.files import read_json
from koqa.variants import LORA_METHODS, VariantError

MANIFEST = "koqa_variant.json"


def _peft_config(settings: dict) -> PeftConfig:
    method = settings["method"]
    if method in LORA_METHODS:
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=settings["r"],
            lora_alpha=settings["alpha"],
            lora_dropout=settings["dropout"],
            target_modules=settings["target_modules"],
            use_dora=method == "dora",
        )
    if method == "ia3":
        return IA3Config(
            task_type=TaskType.CAUSAL_LM,
            target_modules=settings["target_modules"],
            feedforward_modules=settings["feedforward_modules"],
        )
    if method == "prefix":
        return PrefixTuningConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=settings["num_virtual_tokens"]
        )
    if method == "prompt":
        return PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=settings["num_virtual_tokens"]
        )
    raise VariantError(f"variants.{settings['name']}.method: {method!r} is not a peft method")


def _check_target_modules(model: PreTrainedModel, settings: dict) -> None:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for key in ("target_modules", "feedforward_modules"):
        missing = sorted(set(settings.get(key) or []) - names)
        if missing and settings["method"] in (*LORA_METHODS, "ia3"):
            raise VariantError(
                f"variants.{settings['name']}.{key}: {missing} not in the model "
                f"(its linear layers include {sorted(n for n in names if n.endswith('proj'))})"
            )


def trainable_model(base: PreTrainedModel, settings: dict) -> PreTrainedModel:
    """The model to train for ``settings['method']`` (``base`` is modified in place)."""
    method = settings["method"]
    if method == "full":
        base.requires_grad_(True)
        if settings.get("gradient_checkpointing"):
            base.gradient_checkpointing_enable()
        return base
    _check_target_modules(base, settings)
    if method == "qlora":
        base = prepare_model_for_kbit_training(
            base, use_gradient_checkpointing=bool(settings.get("gradient_checkpointing"))
        )
    elif settings.get("gradient_checkpointing"):
        base.gradient_checkpointing_enable()
        base.enable_input_require_grads()
    return get_peft_model(base, _peft_config(settings))


def load_variant(
    variant_dir: str | Path, base_dir: str | Path, device: str, trust_remote_code: bool = False
) -> PreTrainedModel:
    """Load a trained variant for inference, in eval mode, on ``device``."""
    variant_dir = Path(variant_dir)
    method = read_json(variant_dir / MANIFEST)["method"]
    if method == "full":
        return load_base_model(
            variant_dir, trust_remote_code=trust_remote_code, device=device
        ).eval()
    base = load_base_model(
        base_dir,
        trust_remote_code=trust_remote_code,
        quantize_4bit=method == "qlora",
        device=device,
    )
    if method == "zeroshot":
        return base.eval()
    model = PeftModel.from_pretrained(base, variant_dir, is_trainable=False)
    return model.to(device).eval() if method != "qlora" else model.eval()


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (what a checkpoint must carry)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
