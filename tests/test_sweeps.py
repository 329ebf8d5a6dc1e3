"""Sweeps: a grid over a base variant becomes named variants, checked like any other; adding points
to a finished run plans only the new points' jobs and what gathers every variant."""

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from workflow_util import snakemake_ok

from koqa.config import deep_merge, effective_config, load_config
from koqa.train.sweeps import expand_sweeps, format_value
from koqa.train.variants import VariantError, check_all, resolve_variant

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "schemas/config.schema.yaml").read_text(encoding="utf-8"))
EMBEDDED = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
TINY = load_config(REPO / "config.yaml")


def _with_sweeps(sweeps: dict | None, base: dict = TINY) -> dict:
    config = copy.deepcopy(base)
    config["sweeps"] = sweeps
    return config


def test_the_issues_grid_gives_readable_names_with_the_base_settings() -> None:
    user = {"sweeps": {"lora": {"r": [8, 16, 64], "lr": [1e-4, 2e-4]}, "seeds": [1, 2, 3]}}
    config = effective_config(deep_merge(EMBEDDED, user), user)
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    check_all(config)
    names = list(config["variants"])
    assert names[:5] == ["zeroshot", "full", "lora", "qlora", "prefix"]
    points = names[5:]
    assert len(points) == 18 and len(set(points)) == 18
    assert points[:4] == [
        "lora_lr0.0001_r8_s1",
        "lora_lr0.0001_r8_s2",
        "lora_lr0.0001_r8_s3",
        "lora_lr0.0001_r16_s1",
    ]
    settings = resolve_variant(config, "lora_lr0.0002_r64_s1")
    lora = resolve_variant(config, "lora")
    assert (settings["r"], settings["lr"], settings["seed"]) == (64, 0.0002, 1)
    # everything else is the base variant's (the tiny model's target modules included)
    different = {k for k in settings if settings[k] != lora[k]}
    assert different == {"r", "lr", "seed", "name"}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (16, "16"),
        (0.0002, "0.0002"),
        (2e-4, "0.0002"),
        (1e-5, "1e-5"),
        (2.5e-5, "2.5e-5"),
        (32.0, "32"),
        (1e20, "1e20"),
        (True, "true"),
        ("cosine", "cosine"),
    ],
)
def test_numbers_have_one_canonical_form(value: object, text: str) -> None:
    assert format_value(value) == text


def test_a_grid_written_otherwise_or_grown_keeps_every_points_name_and_settings() -> None:
    """What makes a changed grid rerun only its new points: the old points keep their names and
    settings (the train rule's params), however the grid is ordered or spelled."""
    small = expand_sweeps(_with_sweeps({"lora": {"r": [8, 16], "lr": [0.0001]}}))
    grown = expand_sweeps(_with_sweeps({"lora": {"lr": [1e-4, 3e-4], "r": [16, 8, 4]}}))
    assert {k: v for k, v in grown.items() if k in small} == small
    assert sorted(set(grown) - set(small)) == [
        "lora_lr0.0001_r4",
        "lora_lr0.0003_r16",
        "lora_lr0.0003_r4",
        "lora_lr0.0003_r8",
    ]


def test_seeds_cross_every_sweep_without_its_own() -> None:
    variants = expand_sweeps(
        _with_sweeps({"lora": {"r": [4]}, "qlora": {"seed": [7]}, "seeds": [1, 2]})
    )
    assert list(variants)[5:] == ["lora_r4_s1", "lora_r4_s2", "qlora_s7"]
    assert variants["qlora_s7"] == {**TINY["variants"]["qlora"], "seed": 7}


def test_no_sweeps_and_a_sweep_set_to_null_add_nothing() -> None:
    for sweeps in (None, {}, {"lora": None}):
        assert expand_sweeps(_with_sweeps(sweeps)) == TINY["variants"]


@pytest.mark.parametrize(
    ("sweeps", "message"),
    [
        ({"lorax": {"r": [8]}}, r"sweeps\.lorax: no variant 'lorax' to base the sweep on"),
        ({"zeroshot": {"seed": [1]}}, r"sweeps\.zeroshot: a zeroshot variant trains nothing"),
        ({"lora": {"rank": [8]}}, r"sweeps\.lora\.rank: not a variant setting"),
        ({"lora": {"method": ["dora"]}}, r"sweeps\.lora\.method: a sweep keeps its base's"),
        ({"lora": {"r": []}}, r"sweeps\.lora\.r: give a non-empty list of values"),
        ({"lora": {"r": 8}}, r"sweeps\.lora\.r: give a non-empty list of values"),
        ({"lora": {}}, r"sweeps\.lora: the grid is empty"),
        ({"lora": {"target_modules": [["q_proj"]]}}, r"sweeps\.lora\.target_modules: \[.*not a"),
        ({"lora": {"schedule": ["co sine"]}}, r"'co sine' cannot be part of a variant name"),
        ({"lora": {"r": [8]}, "seeds": []}, r"sweeps\.seeds: give a non-empty list"),
        # 32 and 32.0 are one point; lora_r8 exists already
        ({"lora": {"alpha": [32, 32.0]}}, r"named 'lora_alpha32', like another variant"),
        ({"lora": {"r": [8]}}, r"named 'lora_r8', like another variant"),
    ],
)
def test_bad_sweeps_are_refused_by_name(sweeps: dict, message: str) -> None:
    config = _with_sweeps(sweeps)
    config["variants"]["lora_r8"] = {"method": "lora", "r": 8}
    with pytest.raises(VariantError, match=message):
        expand_sweeps(config)


def test_the_points_settings_are_checked_like_any_variants() -> None:
    """A value the method cannot use is refused by name, as in a written variant."""
    config = _with_sweeps({"prefix": {"r": [4]}})
    config["variants"] = expand_sweeps(config)
    with pytest.raises(VariantError, match=r"variants\.prefix_r4\.r: the prefix method does not"):
        check_all(config)


def _planned(output: str) -> dict[str, set[str]]:
    """The variants each rule of a dry run would run for, by rule."""
    planned: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        variant = re.search(r"wildcards: .*?variant=([^,\s]+)", block)
        if rule:
            planned.setdefault(rule[1], set()).add(variant[1] if variant else "")
    return planned


@pytest.mark.slow
def test_new_points_plan_only_their_own_jobs(local_run: Path) -> None:
    """A dry run of the finished end-to-end run with a sweep added: the new points are trained,
    predicted and scored, and the tables over every variant are remade; no variant that was
    there is retrained or predicted again. (The sweep's points inherit the base's settings, so
    their params show no change of any other variant.)"""
    path = local_run / "tests/config/test.yaml"
    original = path.read_text(encoding="utf-8")
    config = yaml.safe_load(original)
    config["sweeps"] = {"lora": {"r": [2, 4]}, "seeds": [5]}
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    try:
        output = snakemake_ok(local_run, "--cores", "2", "--dry-run")
    finally:
        path.write_text(original, encoding="utf-8")
    planned = _planned(output)
    new = {"lora_r2_s5", "lora_r4_s5"}
    for rule in ("train", "predict", "score"):
        assert planned[rule] - {"ensemble"} == new, (rule, planned)
    assert "leaderboard" in planned and "ensemble_validation" in planned
    assert "tokenize" not in planned and "base_model" not in planned
