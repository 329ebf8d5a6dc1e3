"""The effective configuration: real-model defaults in config.yaml, the tiny model's toy values merged
over them only for the tiny model, and the user's config files over both."""

from pathlib import Path

import jsonschema
import pytest
import yaml

from koqa.config import deep_merge, effective_config, load_config
from koqa.train.variants import check_all

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "schemas/config.schema.yaml").read_text(encoding="utf-8"))
EMBEDDED = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))


def _validate(config: dict) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(config)


def _schema_errors(config: dict) -> str:
    """Every message of the schema's errors, those inside oneOf alternatives included."""
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(config))
    messages = []
    while errors:
        error = errors.pop()
        messages.append(error.message)
        errors += error.context
    return "\n".join(messages)


def _user_file(tmp_path: Path, settings: dict) -> Path:
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    return path


def test_deep_merge_merges_mappings_replaces_the_rest_and_copies() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    merged = deep_merge(base, {"a": {"y": [3], "z": {"k": 2}}, "c": 4})
    assert merged == {"a": {"x": 1, "y": [3], "z": {"k": 2}}, "b": 1, "c": 4}
    merged["a"]["x"] = 99
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}


def test_a_real_model_gets_the_real_defaults() -> None:
    config = effective_config(deep_merge(EMBEDDED, {"model": {"name": "org/Model-8B"}}))
    _validate(config)
    check_all(config)
    train, variants = config["train"], config["variants"]
    assert 1e-4 <= train["lr"] <= 2e-4 and 1 <= train["epochs"] <= 3
    assert train["batch_size"] * train["grad_accum"] >= 8
    assert "full" not in variants and "prefix" not in variants
    for name in ("lora", "qlora"):
        assert variants[name]["r"] == 16 and variants[name]["target_modules"] == "all-linear"
    # the contest's longest context, 2,000 characters, at 1.5 characters per token, plus its
    # question (at most 76 characters), the template and an answer
    assert config["prompt"]["max_seq_len"] >= (2000 + 76) / 1.5 + 64


def test_the_tiny_model_gets_its_toy_values(tmp_path: Path) -> None:
    config = load_config(REPO / "config.yaml")
    _validate(config)
    check_all(config)
    overrides = EMBEDDED["model"]["tiny"]["overrides"]
    assert config["train"] == {**EMBEDDED["train"], **overrides["train"]}
    assert config["prompt"]["max_seq_len"] == overrides["prompt"]["max_seq_len"]
    # in the order they always had (an ensemble tie goes to the earliest member)
    assert list(config["variants"]) == ["zeroshot", "full", "lora", "qlora", "prefix"]
    assert config["variants"]["lora"] == {
        **EMBEDDED["variants"]["lora"],
        **overrides["variants"]["lora"],
    }
    # the real defaults are only the floor: the tiny model trains as it always did
    assert (config["train"]["epochs"], config["train"]["lr"]) == (20, 0.001)
    assert config["variants"]["qlora"]["epochs"] == 4


def test_the_users_files_win_over_the_tiny_overrides(tmp_path: Path) -> None:
    user = _user_file(
        tmp_path,
        {"train": {"epochs": 1}, "variants": {"lora": {"lr": 0.002}, "dora": {"method": "dora"}}},
    )
    config = load_config(REPO / "config.yaml", user)
    assert config["train"]["epochs"] == 1
    assert config["train"]["lr"] == EMBEDDED["model"]["tiny"]["overrides"]["train"]["lr"]
    assert config["variants"]["lora"]["lr"] == 0.002
    assert config["variants"]["qlora"]["epochs"] == 4
    assert "dora" in config["variants"]


def test_overrides_apply_only_to_the_tiny_model(tmp_path: Path) -> None:
    user = _user_file(tmp_path, {"model": {"name": "/models/llama"}})
    config = load_config(REPO / "config.yaml", user)
    assert config["train"] == EMBEDDED["train"]
    assert config["variants"] == {k: v for k, v in EMBEDDED["variants"].items() if v is not None}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train": {"epochs": 0}}, "0 is less than the minimum"),
        ({"train": {"epoch": 3}}, "'epoch' was unexpected"),
        ({"prompt": {"max_seq_len": "long"}}, "'long' is not of type 'integer'"),
        ({"variants": {"lora": {"target_modules": "all"}}}, "is not valid under any"),
        ({"data": {"train": "x.csv"}}, "'data' was unexpected"),
    ],
)
def test_override_fragments_are_checked(overrides: dict, message: str) -> None:
    config = deep_merge(EMBEDDED, {"model": {"tiny": {"overrides": overrides}}})
    assert message in _schema_errors(config)


def test_an_overridden_variant_must_end_up_with_a_method() -> None:
    config = deep_merge(EMBEDDED, {"model": {"tiny": {"overrides": {"variants": {"v": {"r": 4}}}}}})
    _validate(config)  # a fragment may lack the method ...
    assert "'method' is a required property" in _schema_errors(effective_config(config))


def test_a_variant_set_to_null_is_removed(tmp_path: Path) -> None:
    user = _user_file(tmp_path, {"model": {"name": "org/Model-8B"}, "variants": {"lora": None}})
    config = load_config(REPO / "config.yaml", user)
    assert list(config["variants"]) == ["zeroshot", "qlora"]
    _validate(config)
    all_removed = {
        "model": {"name": "org/Model-8B"},
        "variants": dict.fromkeys(EMBEDDED["variants"]),
    }
    removed = load_config(REPO / "config.yaml", _user_file(tmp_path, all_removed))
    assert "{} should be non-empty" in _schema_errors(removed)
