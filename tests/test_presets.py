"""presets/: every preset passes the schema and the variant checks, and plans the whole DAG against a
local directory holding a tiny random-weight model of the preset's architecture; a preset's Hub
model is fetched by the download_model rule before any job that reads it, and only when downloads
are allowed."""

import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM
from workflow_util import REPO, copy_repo

from koqa.config import load_config
from koqa.model.modelpath import is_hub_id
from koqa.train.variants import check_all

PRESETS = sorted((REPO / "presets").glob("*.yaml"))
# the transformers architecture (config.json's model_type) of each preset's model
ARCHITECTURES = {
    "llama3-open-ko-8b": "llama",
    "eeve-korean-instruct-10.8b": "llama",
    "qwen2.5-7b-instruct": "qwen2",
    "exaone4-32b": "exaone4",
}
TINY_DIMS = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}
# the jobs of a whole run: every rule but the one that builds the tiny model
RULES = {"ingest", "clean", "split", "tokenize", "train", "predict", "score", "submission", "all"}


def tiny_model_dir(model_type: str, path: Path, tokenizer_dir: Path) -> Path:
    """A tiny random-weight model of ``model_type`` with a small Korean tokenizer, saved as a model
    directory is (safetensors), offline."""
    config = AutoConfig.for_model(model_type, vocab_size=400, **TINY_DIMS)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path, safe_serialization=True)
    for file in tokenizer_dir.iterdir():
        (path / file.name).write_bytes(file.read_bytes())
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("presets"))


def _dry_run(workdir: Path, *configfiles: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The jobs ``snakemake -n`` plans with these config files: counted by rule, and each job's
    rule and inputs."""
    # one --configfile followed by every file: a second --configfile flag would replace the first
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", *configfiles],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = result.stdout.split("Job stats:")[1].split("total")[0]
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}
    return counts, re.findall(r"^rule (\w+):\n    input: (.*)$", result.stdout, re.MULTILINE)


def _override(tmp_path: Path, settings: dict) -> Path:
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def test_every_preset_names_its_architecture() -> None:
    assert {p.stem for p in PRESETS} == set(ARCHITECTURES)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_passes_the_schema_and_variant_checks(preset: Path) -> None:
    header = preset.read_text(encoding="utf-8").split("\n\n")[0]
    assert header.startswith("# ") and "Sized for one" in header and "Numbers:" in header
    config = load_config(REPO / "config.yaml", preset)
    schema = yaml.safe_load((REPO / "schemas/config.schema.yaml").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(config)
    check_all(config)
    assert is_hub_id(config["model"]["name"]) and config["model"]["allow_download"]
    assert not config["model"]["trust_remote_code"]
    for name, variant in config["variants"].items():
        assert variant["method"] not in ("full", "prefix"), name
        if variant["method"] in ("lora", "qlora"):
            assert variant.get("target_modules") == "all-linear", name


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_plans_the_whole_dag_against_a_local_model(
    preset: Path, workdir: Path, tmp_path: Path, tokenizer_dir: Path
) -> None:
    model_dir = tiny_model_dir(ARCHITECTURES[preset.stem], tmp_path / "model", tokenizer_dir)
    override = _override(tmp_path, {"model": {"name": str(model_dir)}})
    planned, _ = _dry_run(workdir, Path("presets") / preset.name, override)
    variants = load_config(REPO / "config.yaml", preset, override)["variants"]
    assert set(planned) >= RULES
    trained = planned["train"] + planned.get("train_zeroshot", 0)  # zeroshot trains locally
    # validation is generated free and constrained by one predict_both job (predict.constrain: auto)
    predicted = planned["predict"] + planned.get("predict_both", 0)
    assert trained == len(variants) and predicted == 2 * len(variants)
    assert planned["tokenize"] == 3
    assert "base_model" not in planned and "download_model" not in planned


def test_a_hub_model_is_downloaded_before_the_jobs_only_if_allowed(
    workdir: Path, tmp_path: Path
) -> None:
    preset = Path("presets/llama3-open-ko-8b.yaml")
    planned, jobs = _dry_run(workdir, preset)
    assert planned["download_model"] == 1 and set(planned) >= RULES
    readers = [inputs for rule, inputs in jobs if rule in ("tokenize", "train", "predict")]
    assert len(readers) == planned["tokenize"] + planned["train"] + planned["predict"]
    assert all("results/model/download.json" in inputs for inputs in readers)
    offline, jobs = _dry_run(
        workdir, preset, _override(tmp_path, {"model": {"allow_download": False}})
    )
    assert "download_model" not in offline and set(offline) >= RULES
    assert not any("download.json" in inputs for _, inputs in jobs)
