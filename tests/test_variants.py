"""Variant settings: defaults merged in order, impossible combinations refused by name."""

import copy
import importlib.util
from pathlib import Path

import pytest
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from koqa.config import load_config
from koqa.train.variants import (
    METHODS,
    VariantError,
    check_all,
    check_variant,
    resolve_variant,
    uses_gradient_checkpointing,
)

SCHEMA = Path(__file__).parents[1] / "schemas/config.schema.yaml"
CONFIG = load_config(Path(__file__).parents[1] / "config.yaml")


def _config(**variants: dict) -> dict:
    config = copy.deepcopy(CONFIG)
    config["variants"] = variants
    return config


def test_variant_keys_override_method_and_train_defaults() -> None:
    config = _config(lora_r64={"method": "lora", "r": 64, "lr": 0.01})
    settings = resolve_variant(config, "lora_r64")
    assert (settings["r"], settings["alpha"], settings["lr"]) == (64, 16, 0.01)
    assert settings["epochs"] == CONFIG["train"]["epochs"]
    assert settings["name"] == "lora_r64"


@pytest.mark.parametrize("method", METHODS)
def test_every_method_with_defaults_is_valid(method: str) -> None:
    check_all(_config(v={"method": method}))


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        (
            {"method": "prefix", "gradient_checkpointing": True},
            r"variants\.v\.gradient_checkpointing",
        ),
        (
            {"method": "prompt", "gradient_checkpointing": True},
            r"variants\.v\.gradient_checkpointing",
        ),
        ({"method": "full", "r": 8}, r"variants\.v\.r: the full method does not use"),
        ({"method": "lora", "num_virtual_tokens": 8}, r"variants\.v\.num_virtual_tokens"),
        (
            {"method": "ia3", "target_modules": ["k_proj"], "feedforward_modules": ["down_proj"]},
            r"variants\.v\.feedforward_modules: \['down_proj'\] must also be in target_modules",
        ),
        (
            {"method": "ia3", "target_modules": ["k_proj"]},
            r"variants\.v\.feedforward_modules: set target_modules and feedforward_modules together",
        ),
        (
            {"method": "ia3", "feedforward_modules": []},
            r"variants\.v\.target_modules: set target_modules and feedforward_modules together",
        ),
        ({"method": "lora", "precision": "fp16", "device": "cpu"}, r"variants\.v\.precision"),
        ({"method": "lora", "early_stopping_patience": 2}, r"variants\.v\.early_stopping_patience"),
    ],
)
def test_impossible_combinations_name_variant_and_key(variant: dict, message: str) -> None:
    config = _config(v=variant)
    with pytest.raises(VariantError, match=message):
        check_variant(resolve_variant(config, "v"))


def test_qlora_without_bitsandbytes_fails_naming_variant_and_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "bitsandbytes" else real_find_spec(name, *args),
    )
    with pytest.raises(VariantError, match=r"variants\.q\.method: qlora needs the bitsandbytes"):
        check_variant(resolve_variant(_config(q={"method": "qlora"}), "q"))


@pytest.mark.parametrize(
    ("method", "choice", "device", "expected"),
    [
        ("lora", "auto", "cuda", True),
        ("lora", "auto", "cuda:1", True),
        ("lora", "auto", "cpu", False),
        ("prefix", "auto", "cuda", False),
        ("prompt", "auto", "cuda", False),
        ("full", True, "cpu", True),
        ("qlora", False, "cuda", False),
    ],
)
def test_gradient_checkpointing_auto_means_gpu_and_allowed(
    method: str, choice: object, device: str, expected: bool
) -> None:
    settings = resolve_variant(_config(v={"method": method, "gradient_checkpointing": choice}), "v")
    check_variant(settings)
    assert uses_gradient_checkpointing(settings, device) is expected


def test_target_modules_default_to_every_linear_layer_or_the_family_defaults() -> None:
    """LoRA-family methods adapt every linear layer whatever the family calls them (Phi-3's fused
    qkv_proj); IA3 takes peft's modules for the model's family; a variant's own list wins."""
    config = _config(lora={"method": "lora"}, ia3={"method": "ia3"}, mine={"method": "dora"})
    config["variants"]["mine"]["target_modules"] = ["q_proj"]
    assert resolve_variant(config, "lora")["target_modules"] == "all-linear"
    ia3 = resolve_variant(config, "ia3")
    assert (ia3["target_modules"], ia3["feedforward_modules"]) == (None, None)
    assert resolve_variant(config, "mine")["target_modules"] == ["q_proj"]
    check_all(config)


@pytest.mark.parametrize(
    ("value", "valid"), [("all-linear", True), (["qkv_proj"], True), ("all", False), ([], False)]
)
def test_the_schema_takes_all_linear_or_a_list(value: object, valid: bool) -> None:
    config = _config(v={"method": "lora", "target_modules": value})
    if valid:
        validate(config, str(SCHEMA))
    else:
        with pytest.raises(WorkflowError, match=r"target_modules|is not valid"):
            validate(config, str(SCHEMA))


def test_submission_must_name_a_variant() -> None:
    config = _config(v={"method": "lora"})
    config["submission"]["variant"] = "w"
    with pytest.raises(VariantError, match=r"submission\.variant"):
        check_all(config)
