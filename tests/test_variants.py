"""Variant settings: defaults merged in order, impossible combinations refused by name."""

import copy
from pathlib import Path

import pytest
import yaml

from koqa.variants import METHODS, VariantError, check_all, check_variant, resolve_variant

with open(Path(__file__).parents[1] / "config.yaml", encoding="utf-8") as handle:
    CONFIG = yaml.safe_load(handle)


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
    ],
)
def test_impossible_combinations_name_variant_and_key(variant: dict, message: str) -> None:
    config = _config(v=variant)
    with pytest.raises(VariantError, match=message):
        check_variant(resolve_variant(config, "v"))


def test_submission_must_name_a_variant() -> None:
    config = _config(v={"method": "lora"})
    config["submission"]["variant"] = "w"
    with pytest.raises(VariantError, match=r"submission\.variant"):
        check_all(config)
