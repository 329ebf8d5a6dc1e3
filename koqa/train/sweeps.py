"""Sweeps: grids of settings over a base variant, expanded into named variants.

``sweeps`` in the config maps a base variant to lists of values for any of its settings; every
point of the grid (the cross product) becomes a variant of its own, with the base's other settings
and a name made of the base's, each swept key and its value (keys in alphabetical order) and
``_s<seed>`` last::

    sweeps:
      lora: {r: [8, 16], lr: [0.0001, 0.0002]}
      seeds: [1, 2]

adds ``lora_lr0.0001_r8_s1``, ``lora_lr0.0001_r8_s2``, ``lora_lr0.0001_r16_s1`` ... (8 variants)
after the variants of the config. ``seeds`` (optional) crosses every sweep that has no ``seed`` list
of its own with those values of ``train.seed``; ``{lora: {seed: [1, 2, 3]}}`` reruns one variant
with three seeds. Numbers are written in one canonical form (``0.0002``, ``1e-5``, ``16``), so a
point's name, and hence its outputs, stay the same however the grid is written or reordered: a
changed grid trains only its new points.

Pure Python (no torch): the Snakefile expands the sweeps before any job starts.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping

from koqa.train.variants import METHOD_DEFAULTS, VariantError

SEEDS = "seeds"
# characters a formatted value may have (a variant name is also a directory name)
_VALUE = re.compile(r"^[A-Za-z0-9.-]+$")


def format_value(value: object) -> str:
    """A setting's value as it appears in a variant name: ``16``, ``0.0002``, ``1e-5``, ``true``,
    ``cosine``. A float with an integer value is written as the integer (``32.0`` -> ``32``);
    exponents lose their ``+`` and leading zeros (``1e-05`` -> ``1e-5``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        value = int(value)
    if isinstance(value, float):
        mantissa, _, exponent = repr(value).partition("e")
        return f"{mantissa}e{int(exponent)}" if exponent else mantissa
    return str(value)


def point_name(base: str, point: Mapping[str, object]) -> str:
    """The variant name of one grid point: ``base``, then ``<key><value>`` for each swept key in
    alphabetical order, then ``s<seed>``."""
    parts = [base, *(f"{key}{format_value(point[key])}" for key in sorted(point) if key != "seed")]
    if "seed" in point:
        parts.append(f"s{format_value(point['seed'])}")
    return "_".join(parts)


def _check_grid(base: str, grid: Mapping, variants: Mapping, settable: set[str]) -> None:
    """Fail on a sweep that names no variant, a zeroshot base, or a key or values that cannot be
    swept."""
    where = f"sweeps.{base}"
    if base not in variants:
        raise VariantError(
            f"{where}: no variant {base!r} to base the sweep on (have {sorted(variants)})"
        )
    if variants[base]["method"] == "zeroshot":
        raise VariantError(f"{where}: a zeroshot variant trains nothing to sweep")
    if not isinstance(grid, Mapping):
        raise VariantError(f"{where}: give a mapping of settings to lists of values")
    if not grid:
        raise VariantError(f"{where}: the grid is empty (give a setting and its values, or seeds)")
    for key, values in grid.items():
        if key == "method":
            raise VariantError(f"{where}.method: a sweep keeps its base's method")
        if key not in settable:
            raise VariantError(f"{where}.{key}: not a variant setting (have {sorted(settable)})")
        if not isinstance(values, list) or not values:
            raise VariantError(f"{where}.{key}: give a non-empty list of values")
        for value in values:
            if not isinstance(value, bool | int | float | str):
                raise VariantError(
                    f"{where}.{key}: {value!r} is not a number, a string or a boolean"
                )
            if not _VALUE.match(format_value(value)):
                raise VariantError(
                    f"{where}.{key}: {value!r} cannot be part of a variant name "
                    "(letters, digits, '.' and '-' only)"
                )


def sweep_points(base: str, grid: Mapping[str, list]) -> list[tuple[str, dict]]:
    """Every point of ``grid`` with its variant name, as the settings it sets: keys in name order,
    each key's values in the order given, the last key (the seed, if swept) varying fastest."""
    keys = sorted(grid, key=lambda key: (key == "seed", key))
    points = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(grid[key] for key in keys))
    ]
    return [(point_name(base, point), point) for point in points]


def expand_sweeps(config: Mapping) -> dict[str, dict]:
    """``config['variants']`` followed by every point of ``config['sweeps']`` (null or absent: no
    sweeps; a sweep set to null is off), each as its base variant's settings with the point's
    values over them. Fails with :class:`VariantError` on an unknown base variant or key, an empty
    list or grid, and a point named like another variant or point."""
    variants = dict(config["variants"])
    sweeps = {k: v for k, v in (config.get("sweeps") or {}).items() if v is not None}
    seeds = sweeps.pop(SEEDS, None)
    if seeds is not None and (
        not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds)
    ):
        raise VariantError(f"sweeps.{SEEDS}: give a non-empty list of whole numbers")
    settable = set(config["train"]) | {key for d in METHOD_DEFAULTS.values() for key in d}
    for base, grid in sweeps.items():
        grid = {"seed": seeds, **grid} if seeds and "seed" not in (grid or {}) else grid
        _check_grid(base, grid, config["variants"], settable)
        for name, point in sweep_points(base, grid):
            if name in variants:
                raise VariantError(
                    f"sweeps.{base}: the point {point} is named {name!r}, "
                    "like another variant or point"
                )
            variants[name] = {**config["variants"][base], **point}
    return variants
