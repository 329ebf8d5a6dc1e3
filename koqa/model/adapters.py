"""Wrap a base model for one adaptation method, and load a trained variant back for inference.

Every method except ``full`` and ``zeroshot`` goes through peft: ``lora``, ``dora`` (LoRA with a
learned magnitude), ``qlora`` (LoRA on a 4-bit NF4 base), ``ia3``, ``prefix`` and ``prompt``. A
trained variant's directory holds ``koqa_variant.json`` (method, base model) and the weights: a peft
adapter, or the full model, both in safetensors; ``zeroshot`` holds only the JSON.
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
    PromptTuningInit,
    TaskType,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from peft.utils import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from koqa.files import atomic_path, read_json, write_json
from koqa.model.basemodel import load_base_model
from koqa.model.families import check_family_support
from koqa.train.loop import compute_dtype
from koqa.train.variants import LORA_METHODS, VariantError

MANIFEST = "koqa_variant.json"
# Non-reentrant checkpointing needs no input that requires grad and works with frozen bases.
_CHECKPOINTING = {"use_reentrant": False}


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
        # Start from embeddings of sampled vocabulary tokens: at the scale of the model's own
        # embeddings, unlike peft's default N(0, 1), which trains far slower.
        return PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=settings["num_virtual_tokens"],
            prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB,
        )
    raise VariantError(f"variants.{settings['name']}.method: {method!r} is not a peft method")


def check_target_modules(model: PreTrainedModel, settings: dict) -> None:
    """Every module a LoRA/IA3 variant lists must name linear layers of ``model``: ``Linear``,
    or the transposed ``Conv1D`` of the GPT-2 family (``c_attn``), which peft adapts too.
    ``"all-linear"`` and the family's defaults (no list) are peft's to resolve."""
    linear = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, Conv1D))
    }
    for key in ("target_modules", "feedforward_modules"):
        listed = settings.get(key)
        missing = sorted(set(listed) - linear) if isinstance(listed, list) else []
        if missing:
            raise VariantError(
                f"variants.{settings['name']}.{key}: {missing} are not linear layers of the model "
                f"(it has {sorted(linear)})"
            )


def trainable_model(
    base: PreTrainedModel, settings: dict, gradient_checkpointing: bool = False
) -> PreTrainedModel:
    """The model to train for ``settings['method']`` (``base`` is modified in place)."""
    method = settings["method"]
    check_family_support(settings, base.config.model_type)
    if method == "full":
        base.requires_grad_(True)
        if gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=_CHECKPOINTING)
        return base
    check_target_modules(base, settings)
    if method == "qlora":
        base = prepare_model_for_kbit_training(
            base,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs=_CHECKPOINTING,
        )
    elif gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=_CHECKPOINTING)
    return get_peft_model(base, _peft_config(settings))


def save_variant(
    model: PreTrainedModel | None, settings: dict, base_dir: str | Path, out_dir: str | Path
) -> None:
    """Write a variant's directory atomically: its weights in safetensors (none for zeroshot) and
    ``koqa_variant.json``."""
    manifest = {
        "variant": settings["name"],
        "method": settings["method"],
        "base_model": str(base_dir),
    }
    with atomic_path(out_dir) as tmp:
        if model is not None:
            _sort_config_sets(model)
            model.save_pretrained(tmp, safe_serialization=True)
        tmp.mkdir(exist_ok=True)
        write_json(manifest, tmp / MANIFEST)


def _check_safetensors_adapter(variant_dir: Path) -> None:
    """The adapter's weights must be safetensors: peft would fall back to a pickled
    ``adapter_model.bin``, and koqa loads no pickles."""
    if (variant_dir / SAFETENSORS_WEIGHTS_NAME).is_file():
        return
    pickled = f" (it has {WEIGHTS_NAME}, a pickle)" if (variant_dir / WEIGHTS_NAME).exists() else ""
    raise VariantError(
        f"{variant_dir}: no {SAFETENSORS_WEIGHTS_NAME}{pickled}; koqa loads adapter weights from "
        "safetensors only (if you trust a .bin, convert it with safetensors.torch.save_file)"
    )


def _sort_config_sets(model: PreTrainedModel) -> None:
    """peft keeps ``target_modules`` (and the like) as sets, which it writes to adapter_config.json
    in an order that changes from process to process; sorted lists make the file reproducible."""
    for config in getattr(model, "peft_config", {}).values():
        for key, value in vars(config).items():
            if isinstance(value, set):
                setattr(config, key, sorted(value))


def load_variant(
    variant_dir: str | Path,
    base_dir: str | Path,
    device: str,
    trust_remote_code: bool = False,
    precision: str = "auto",
    dtype: str = "auto",
) -> PreTrainedModel:
    """Load a trained variant for inference, in eval mode, on ``device``: weights in ``dtype`` (the
    config's ``model.dtype``, see :func:`load_base_model`), a QLoRA base's 4-bit layers computing in
    the dtype of ``precision`` (see :func:`koqa.train.loop.compute_dtype`)."""
    variant_dir = Path(variant_dir)
    method = read_json(variant_dir / MANIFEST)["method"]
    if method not in ("full", "zeroshot"):
        _check_safetensors_adapter(variant_dir)  # before the base model loads: fail fast
    if method == "full":
        return load_base_model(
            variant_dir, trust_remote_code=trust_remote_code, device=device, dtype=dtype
        ).eval()
    base = load_base_model(
        base_dir,
        trust_remote_code=trust_remote_code,
        quantize_4bit=method == "qlora",
        compute_dtype=compute_dtype(device, precision),
        device=device,
        dtype=dtype,
    )
    if method == "zeroshot":
        return base.eval()
    model = PeftModel.from_pretrained(base, variant_dir, is_trainable=False)
    return model.to(device).eval() if method != "qlora" else model.eval()
