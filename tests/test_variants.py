"""Variant settings: defaults merged in order, impossible combinations refused by name."""

import copy
import importlib.util
from pathlib import Path

import pytest

from koqa.config import load_config
from koqa.train.variants import (
    METHODS,
    VariantError,
    check_all,
    check_variant,
    resolve_variant,
    uses_gradient_checkpointing,
)

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


def test_submission_must_name_a_variant() -> None:
    config = _config(v={"method": "lora"})
    config["submission"]["variant"] = "w"
    with pytest.raises(VariantError, match=r"submission\.variant"):
        check_all(config)
