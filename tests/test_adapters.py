"""Trained variants: loaded from safetensors only, reproducible byte for byte, checked against the
model; trained prefix and prompt tuning change generation.

Each method is trained a few steps on the tiny task (``tests/tiny_task.py``) the way the train job
trains it, then saved and loaded back the way the predict job loads it. That a reloaded variant
gives the trained model's logits, left-padded, for every method, is checked by the architecture
matrix (``tests/test_architectures.py``, every family, the tiny Llama among them).
"""

from pathlib import Path

import pytest
import torch
from generation_check import alone_logits, batched_vs_alone
from safetensors.torch import load_file
from tiny_task import TinyTask, encode, make_trainer, settings
from transformers import GPT2Config, GPT2LMHeadModel
from zoo import make_model_dir

from koqa.model.adapters import check_target_modules, load_variant, save_variant, trainable_model
from koqa.model.basemodel import load_base_model
from koqa.predict.generate import prepare_for_inference
from koqa.train.job import run_training
from koqa.train.variants import VariantError

SHORT = {"epochs": 1, "batch_size": 16}  # 6 steps


class _Payload:
    """Unpickling this runs code: it writes the file ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.path, "code ran"))


@pytest.mark.parametrize("method", ["lora", "prefix"])
def test_adapter_weights_load_from_safetensors_only(
    method: str, tiny_task: TinyTask, tmp_path: Path
) -> None:
    """A variant directory whose adapter is a pickle (``adapter_model.bin``) is refused before
    anything is unpickled, even where the pickle holds plain tensors, which peft would load."""
    base = load_base_model(tiny_task.base_dir)
    variant = tmp_path / "variant"
    save_variant(
        trainable_model(base, settings(method)), settings(method), tiny_task.base_dir, variant
    )
    weights = load_file(variant / "adapter_model.safetensors")
    (variant / "adapter_model.safetensors").unlink()
    torch.save(weights, variant / "adapter_model.bin")
    with pytest.raises(VariantError, match=r"variant: no adapter_model\.safetensors.* pickle"):
        load_variant(variant, tiny_task.base_dir, "cpu")
    marker = tmp_path / "marker"
    torch.save({"weight": _Payload(marker)}, variant / "adapter_model.bin")
    with pytest.raises(VariantError, match=r"adapter_model\.bin"):
        load_variant(variant, tiny_task.base_dir, "cpu")
    assert not marker.exists()


def _train_job(task: TinyTask, method: str, out: Path, **overrides: object) -> dict:
    return run_training(
        settings(method, **{**SHORT, **overrides}),
        shard_dir=task.train_dir,
        base_dir=task.base_dir,
        out_dir=out / "adapter",
        checkpoint_dir=out / "checkpoints",
        metrics_path=out / "metrics.csv",
        summary_path=out / "summary.json",
    )


@pytest.mark.parametrize("method", ["lora", "qlora", "prefix"])
def test_same_config_gives_identical_adapter_bytes(
    method: str, tiny_task: TinyTask, tmp_path: Path
) -> None:
    for run in ("first", "second"):
        _train_job(tiny_task, method, tmp_path / run)
    weights = sorted(p.name for p in (tmp_path / "first/adapter").glob("*.safetensors"))
    assert weights
    for name in weights:
        first = (tmp_path / "first/adapter" / name).read_bytes()
        assert first == (tmp_path / "second/adapter" / name).read_bytes()
    # and the bytes depend on the config: another seed gives other weights
    _train_job(tiny_task, method, tmp_path / "other", seed=7)
    assert (tmp_path / "other/adapter" / weights[0]).read_bytes() != first


def test_target_module_missing_from_the_model_fails_naming_variant_and_key(
    tiny_task: TinyTask, tmp_path: Path
) -> None:
    with pytest.raises(VariantError, match=r"variants\.lora\.target_modules: \['c_attn'\]"):
        _train_job(tiny_task, "lora", tmp_path, target_modules=["q_proj", "c_attn"])
    assert not (tmp_path / "adapter").exists()


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_gpt2_conv1d_layers_are_valid_targets(method: str) -> None:
    """GPT-2's attention and MLP projections are transformers' ``Conv1D``, which peft adapts."""
    config = GPT2Config(vocab_size=32, n_positions=16, n_embd=8, n_layer=1, n_head=2)
    targets = ["c_attn", "c_fc"]
    if method == "ia3":
        variant = settings(method, target_modules=targets, feedforward_modules=["c_fc"])
    else:
        variant = settings(method, r=2, target_modules=targets)
    model = trainable_model(GPT2LMHeadModel(config), variant)
    assert {n for n, p in model.named_parameters() if p.requires_grad}
    with pytest.raises(VariantError, match=r"\['q_proj'\] are not linear layers"):
        check_target_modules(GPT2LMHeadModel(config), {**variant, "target_modules": ["q_proj"]})


def test_default_lora_adapts_every_linear_layer_of_a_fused_family(tmp_path: Path) -> None:
    """Phi-3 fuses q/k/v into ``qkv_proj`` and gate/up into ``gate_up_proj``: Llama's module names
    would miss them; the default ("all-linear") adapts them and leaves the output head alone."""
    model = trainable_model(load_base_model(make_model_dir(tmp_path, "phi3")), settings("lora"))
    adapted = {
        n.split(".lora_A")[0].rsplit(".", 1)[-1]
        for n, _ in model.named_parameters()
        if ".lora_A" in n
    }
    assert adapted == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_gradient_checkpointing_gives_the_same_gradients(method: str, tiny_task: TinyTask) -> None:
    """Checkpointing recomputes activations in the backward pass; the gradients must not change."""
    variant = settings(method, dropout=0.0) if method != "full" else settings(method)
    batch = tiny_task.train_rows.iloc[:4]
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        base = load_base_model(tiny_task.base_dir, quantize_4bit=method == "qlora")
        model = trainable_model(base, variant, gradient_checkpointing=checkpointing).train()
        input_ids = torch.tensor([list(ids[:20]) for ids in batch["input_ids"]], dtype=torch.long)
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        gradients.append(
            {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        )
    assert gradients[0].keys() == gradients[1].keys()
    for name, grad in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_trained_prefix_and_prompt_change_generation(
    method: str, tiny_task: TinyTask, tmp_path: Path
) -> None:
    """A trained prefix or prompt variant, decoded the way the predict job decodes it (left-padded
    batches, KV cache), gives at every step the logits of a full forward pass of each prompt alone
    through peft, and those differ from the base model's: the learned tokens are not ignored."""
    rows = encode(tiny_task.train.iloc[:16].assign(target="서울"), tiny_task.tokenizer)
    trainer = make_trainer(tiny_task, method, rows=rows, epochs=5)
    trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    save_variant(trainer.model, settings(method), tiny_task.base_dir, tmp_path / "variant")
    model = prepare_for_inference(load_variant(tmp_path / "variant", tiny_task.base_dir, "cpu"))
    validation = tiny_task.validation_rows.iloc[:6]
    prompts = [
        list(ids[:n])
        for ids, n in zip(validation["input_ids"], validation["prompt_len"], strict=True)
    ]
    assert len({len(p) for p in prompts}) > 1, "prompts of different lengths: real padding"
    eos = tiny_task.tokenizer.eos_id
    options = {"stop_ids": [eos], "pad_id": eos, "batch_size": 6, "max_new_tokens": 6}
    generated, worst = batched_vs_alone(model, prompts, device="cpu", **options)
    assert worst <= 1e-5
    base = load_base_model(tiny_task.base_dir).eval()
    for prompt, tokens in zip(prompts, generated, strict=True):
        variant_logits = alone_logits(model, prompt, tokens[:1])
        base_logits = alone_logits(base, prompt, tokens[:1])
        assert (variant_logits - base_logits).abs().max() > 0.01, "generation ignores the variant"
