"""The effective configuration: config files merged as Snakemake merges them, then the tiny model's
toy settings, then variants set to null removed and the sweeps expanded into variants
(:mod:`koqa.train.sweeps`).

``config.yaml``'s ``train``, ``prompt``, ``predict`` and ``variants`` defaults are meant for a real
7-14B model. With ``model.name: tiny`` the fragments under ``model.tiny.overrides`` are merged over
them, so that the tiny test model trains with the many epochs and high learning rates it needs. The
config files given on the command line keep the last word: a value they set wins over an override.
Merging can only add variants; a variant set to null (``lora: null``) is removed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import yaml

from koqa.train.sweeps import expand_sweeps

TINY = "tiny"


def deep_merge(base: Mapping, overlay: Mapping) -> dict:
    """A copy of ``base`` with ``overlay`` merged in: mappings are merged key by key, any other value
    (lists included) replaces the one it overlays, as Snakemake merges ``--configfile``\\ s."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def effective_config(config: Mapping, user_config: Mapping | None = None) -> dict:
    """``config`` with the tiny model's ``model.tiny.overrides`` merged over it when ``model.name``
    is ``tiny``, then ``user_config`` again on top; without the variants set to null, with every
    point of the sweeps as a variant of its own.

    ``config`` is the merged configuration (``config.yaml`` and every ``--configfile``);
    ``user_config`` is what the command line added to ``config.yaml`` (Snakemake's
    ``workflow.config_settings.overwrite_config``), so that a value the user set wins over the
    tiny model's override of the embedded default.
    """
    merged = copy.deepcopy(dict(config))
    if config["model"]["name"] == TINY:
        merged = deep_merge(merged, config["model"]["tiny"].get("overrides") or {})
        merged = deep_merge(merged, user_config or {})
    merged["variants"] = {k: v for k, v in merged["variants"].items() if v is not None}
    merged["variants"] = expand_sweeps(merged)
    return merged


def load_config(default: str | Path, *configfiles: str | Path) -> dict:
    """The effective configuration of ``snakemake --configfile A --configfile B ...`` (``default``:
    the workflow's ``config.yaml``), outside Snakemake: for tests, benchmarks and tools."""

    def read(path: str | Path) -> dict:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}

    user: dict = {}
    for path in configfiles:
        user = deep_merge(user, read(path))
    return effective_config(deep_merge(read(default), user), user)
