"""QLoRA: LoRA gradients on the 4-bit NF4 base equal those on an fp32 copy of the dequantized
weights, before and after a generate/evaluation pass on the same model.

The hazard (field-notes.md): bitsandbytes 0.50 on CPUs with AVX512-BF16 repacks 4-bit weights for an
inference-only kernel after any no-grad forward, after which LoRA gradients are silently wrong.
``koqa.model.basemodel.load_base_model`` turns the repacking off; the last test shows, on this machine's
CPU, whether the guard is what keeps the first test passing.
"""

import bitsandbytes as bnb
import pytest
import torch
from bitsandbytes.functional import dequantize_4bit, has_avx512bf16
from tiny_task import TinyTask, settings

from koqa.model.adapters import trainable_model
from koqa.model.basemodel import load_base_model

LORA = {
    "r": 4,
    "alpha": 8,
    "dropout": 0.0,
    "target_modules": ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
}


def _lora_pair(task: TinyTask) -> tuple[torch.nn.Module, torch.nn.Module]:
    """QLoRA as koqa trains it, and the same LoRA on an fp32 model holding the dequantized
    weights; both adapters start from the same non-zero values so every gradient is non-trivial."""
    variant = settings("qlora", **LORA)
    quantized = trainable_model(load_base_model(task.base_dir, quantize_4bit=True), variant)
    reference = load_base_model(task.base_dir)
    four_bit = {
        name.removeprefix("base_model.model.").removesuffix(".base_layer"): module
        for name, module in quantized.named_modules()
        if isinstance(module, bnb.nn.Linear4bit)
    }
    assert len(four_bit) == 7 * 2  # every linear layer of both blocks (the tied head stays fp32)
    with torch.no_grad():
        for name, module in reference.named_modules():
            if name in four_bit:
                weight = four_bit.pop(name).weight
                module.weight.copy_(dequantize_4bit(weight.data, weight.quant_state).float())
    assert not four_bit, f"no fp32 counterpart for {sorted(four_bit)}"
    reference = trainable_model(reference, settings("lora", **LORA))
    generator = torch.Generator().manual_seed(0)
    reference_params = dict(reference.named_parameters())
    with torch.no_grad():
        for name, param in quantized.named_parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
                reference_params[name].copy_(param)
    return quantized, reference


def _lora_gradients(model: torch.nn.Module, task: TinyTask) -> dict[str, torch.Tensor]:
    rows = task.train_rows.iloc[:4]
    width = int(rows["n_tokens"].min())
    input_ids = torch.tensor([list(ids[:width]) for ids in rows["input_ids"]], dtype=torch.long)
    model.train()
    model.zero_grad()
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    return {
        name: param.grad.clone() if param.grad is not None else torch.zeros_like(param)
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def _inference_pass(model: torch.nn.Module, task: TinyTask) -> None:
    """What prediction and validation do to the model: eval mode, no-grad forward, generate."""
    prompt = torch.tensor([list(task.validation_rows["input_ids"][0][:20])], dtype=torch.long)
    model.eval()
    with torch.no_grad():
        model(input_ids=prompt)
        model.generate(input_ids=prompt, max_new_tokens=3, do_sample=False, pad_token_id=0)


def _worst_relative_error(got: dict, expected: dict) -> float:
    return max(float((got[k] - v).norm() / v.norm()) for k, v in expected.items())


def test_qlora_gradients_match_a_dequantized_fp32_reference(tiny_task: TinyTask) -> None:
    quantized, reference = _lora_pair(tiny_task)
    expected = _lora_gradients(reference, tiny_task)
    assert all(g.abs().sum() > 0 for g in expected.values())
    assert _worst_relative_error(_lora_gradients(quantized, tiny_task), expected) < 1e-4
    _inference_pass(quantized, tiny_task)
    assert _worst_relative_error(_lora_gradients(quantized, tiny_task), expected) < 1e-4


def test_koqa_turns_off_cpu_repacking_on_every_4bit_layer(tiny_task: TinyTask) -> None:
    model = load_base_model(tiny_task.base_dir, quantize_4bit=True)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and not any(layer.support_avx512bf16_for_cpu for layer in layers)


def test_4bit_layers_compute_in_the_dtype_asked_for(tiny_task: TinyTask) -> None:
    model = load_base_model(tiny_task.base_dir, quantize_4bit=True, compute_dtype=torch.bfloat16)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(layer.compute_dtype == torch.bfloat16 for layer in layers)


@pytest.mark.parametrize("repacking", [False, True])
def test_the_guard_is_what_keeps_gradients_right_on_this_cpu(
    repacking: bool, tiny_task: TinyTask
) -> None:
    """With bitsandbytes' default (repacking on), gradients after an inference pass are wrong exactly
    when this CPU has AVX512-BF16; with koqa's setting they are right on any CPU."""
    quantized, reference = _lora_pair(tiny_task)
    for module in quantized.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = repacking
    expected = _lora_gradients(reference, tiny_task)
    _inference_pass(quantized, tiny_task)
    wrong = _worst_relative_error(_lora_gradients(quantized, tiny_task), expected) > 0.01
    assert wrong == (repacking and has_avx512bf16())
