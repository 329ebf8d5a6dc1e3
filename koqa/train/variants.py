"""Variant settings: merge a variant over the ``train`` defaults and reject impossible combinations.

Pure Python (no torch) so the Snakefile can check every variant before any job starts. A variant
names its ``method``; several variants may share one method with different settings
(``lora_r8``, ``lora_r64``). Checks that need the model itself (do the target modules exist?) run
at the start of the training job, in :mod:`koqa.model.adapters`.
"""

from __future__ import annotations

import importlib.util

METHODS = ("zeroshot", "full", "lora", "qlora", "dora", "ia3", "prefix", "prompt")
LORA_METHODS = ("lora", "qlora", "dora")
VIRTUAL_TOKEN_METHODS = ("prefix", "prompt")


# Settings each method needs, used when the variant does not set them.
METHOD_DEFAULTS: dict[str, dict] = {
    "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
    "ia3": {
        "target_modules": ["k_proj", "v_proj", "down_proj"],
        "feedforward_modules": ["down_proj"],
    },
    "prefix": {"num_virtual_tokens": 16},
    "prompt": {"num_virtual_tokens": 16},
}
METHOD_DEFAULTS["qlora"] = METHOD_DEFAULTS["dora"] = METHOD_DEFAULTS["lora"]


class VariantError(ValueError):
    """A variant's settings cannot work; the message names the variant and the key."""


def resolve_variant(config: dict, name: str) -> dict:
    """The complete settings of variant ``name``: its own keys over its method's defaults over the
    ``train`` defaults."""
    if name not in config["variants"]:
        raise VariantError(f"variants.{name}: no such variant (have {sorted(config['variants'])})")
    variant = config["variants"][name]
    method_defaults = METHOD_DEFAULTS.get(variant["method"], {})
    return {**config["train"], **method_defaults, **variant, "name": name}


def uses_gradient_checkpointing(settings: dict, device: str) -> bool:
    """``true``/``false`` as set; ``auto`` means on a GPU, for every method that allows it."""
    choice = settings["gradient_checkpointing"]
    if choice == "auto":
        return device.startswith("cuda") and settings["method"] not in VIRTUAL_TOKEN_METHODS
    return bool(choice)


def check_variant(settings: dict) -> None:
    """Fail fast on combinations that cannot train; see :class:`VariantError`."""
    name, method = settings["name"], settings["method"]

    def fail(key: str, why: str) -> None:
        raise VariantError(f"variants.{name}.{key}: {why}")

    if method in VIRTUAL_TOKEN_METHODS and settings.get("gradient_checkpointing") is True:
        fail(
            "gradient_checkpointing",
            f"{method} tuning cannot use gradient checkpointing (peft refuses it); "
            "set it to false or auto",
        )
    if method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        fail("method", "qlora needs the bitsandbytes package (pip install bitsandbytes)")
    if settings.get("precision") == "fp16" and settings.get("device") == "cpu":
        fail("precision", "fp16 autocast needs a GPU; use bf16 or fp32 on the CPU")
    if settings.get("early_stopping_patience") and not settings.get("eval_every"):
        fail("early_stopping_patience", "early stopping needs eval_every > 0")
    own_keys = set(METHOD_DEFAULTS.get(method, {}))
    for key in sorted({key for d in METHOD_DEFAULTS.values() for key in d} - own_keys):
        if key in settings:
            fail(key, f"the {method} method does not use this key")
    if method == "ia3":
        stray = sorted(set(settings["feedforward_modules"]) - set(settings["target_modules"]))
        if stray:
            fail("feedforward_modules", f"{stray} must also be in target_modules")


def check_all(config: dict) -> None:
    """Check every variant and the submission's choice of variant."""
    for name in config["variants"]:
        check_variant(resolve_variant(config, name))
    chosen = config["submission"]["variant"]
    if chosen not in ("best", "ensemble", *config["variants"]):
        raise VariantError(
            f"submission.variant: {chosen!r} is neither 'best', 'ensemble' nor a variant"
        )
