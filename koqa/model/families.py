"""Which adaptation methods each model family supports, checked before any job starts.

A family is the ``model_type`` in a model's ``config.json`` (``llama`` for Llama-3, SOLAR and EEVE;
``qwen2``, ``gemma2``, ``phi3``, ``exaone4``, ...). Pure Python, no torch: the Snakefile reads the
base model's ``model_type`` (:func:`model_type`: a local directory, or a Hub id already in the
Hugging Face cache; the embedded tiny model is a ``llama``) and refuses a variant its family cannot
train, naming the variant, the family and why (:func:`check_families`). The training job checks
again (:func:`check_family_support`), for a model the Snakefile could not find before it ran.

Only combinations seen failing are listed (``tests/test_architectures.py`` runs every method on a
tiny model of every family; ``docs/notes/model.md`` has its table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import try_to_load_from_cache
from huggingface_hub.errors import HFValidationError

from koqa.train.variants import VariantError, resolve_variant


@dataclass(frozen=True)
class Limitation:
    """Why a method fails on a family; ``workaround``: variant settings that avoid it (a variant
    that sets all of these keys, to these values or others of its own, is not refused)."""

    why: str
    workaround: dict | None = None


def _no_ia3_defaults(family: str, targets: list[str], feedforward: list[str]) -> Limitation:
    return Limitation(
        f"peft has no default IA3 modules for {family}; set target_modules and feedforward_modules",
        {"target_modules": targets, "feedforward_modules": feedforward},
    )


# (model_type, method) -> what goes wrong
LIMITATIONS: dict[tuple[str, str], Limitation] = {
    ("phi3", "ia3"): _no_ia3_defaults("phi3", ["qkv_proj", "down_proj"], ["down_proj"]),
    ("exaone4", "ia3"): _no_ia3_defaults(
        "exaone4", ["k_proj", "v_proj", "down_proj"], ["down_proj"]
    ),
    ("hyperclovax", "ia3"): _no_ia3_defaults(
        "hyperclovax", ["k_proj", "v_proj", "down_proj"], ["down_proj"]
    ),
}


def model_type(name_or_path: str) -> str | None:
    """The ``model_type`` in the model's ``config.json``: from a local directory, or from the
    Hugging Face cache for a Hub id (never downloaded); None when neither has it."""
    local = Path(name_or_path).expanduser() / "config.json"
    if local.is_file():
        path = local
    else:
        try:
            cached = try_to_load_from_cache(name_or_path, "config.json")
        except HFValidationError:  # neither a directory nor a valid Hub id
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    return json.loads(path.read_text(encoding="utf-8")).get("model_type")


def check_family_support(settings: dict, family: str | None) -> None:
    """Refuse a variant whose method the model family (``model_type``; None: unknown) cannot
    train; see :class:`VariantError`."""
    limitation = LIMITATIONS.get((family, settings["method"]))
    if limitation is None:
        return
    workaround = limitation.workaround or {}
    if workaround and all(settings.get(key) is not None for key in workaround):
        return
    example = "".join(f"; e.g. {key}: {value}" for key, value in workaround.items())
    raise VariantError(
        f"variants.{settings['name']}.method: {settings['method']} does not work on {family} "
        f"models: {limitation.why}{example}"
    )


def check_families(config: dict, family: str | None) -> None:
    """:func:`check_family_support` for every variant of ``config``."""
    for name in config["variants"]:
        check_family_support(resolve_variant(config, name), family)
