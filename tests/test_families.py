"""A method the base model's family cannot train stops the run before any job starts, naming the
variant, the family and why; the family comes from the model's config.json, found offline."""

import copy
import json
from pathlib import Path

import pytest
from huggingface_hub import constants
from tiny_task import CONFIG, settings
from workflow_util import copy_repo, run_snakemake
from zoo import make_model_dir

from koqa.model.adapters import trainable_model
from koqa.model.basemodel import load_base_model
from koqa.model.families import check_families, model_type
from koqa.train.variants import VariantError

REFUSED = r"variants\.v\.method: ia3 does not work on phi3 models: peft has no default IA3 modules"


def _config(**variant: object) -> dict:
    config = copy.deepcopy(CONFIG)
    config["variants"] = {"v": variant}
    return config


def test_model_type_from_a_directory_or_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "local/config.json").write_text(json.dumps({"model_type": "gemma2"}))
    assert model_type(str(tmp_path / "local")) == "gemma2"
    repo = tmp_path / "hub/models--org--Model-1.5"
    (repo / "snapshots/abc").mkdir(parents=True)
    (repo / "snapshots/abc/config.json").write_text(json.dumps({"model_type": "exaone4"}))
    (repo / "refs").mkdir()
    (repo / "refs/main").write_text("abc")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert model_type("org/Model-1.5") == "exaone4"
    assert model_type("org/Not-Cached") is None  # never downloaded
    assert model_type(str(tmp_path / "missing")) is None


def test_a_method_the_family_cannot_train_is_refused_with_its_workaround() -> None:
    with pytest.raises(VariantError, match=REFUSED + r".*e\.g\. target_modules: \['qkv_proj'"):
        check_families(_config(method="ia3"), "phi3")
    check_families(_config(method="ia3"), "llama")  # peft has defaults for Llama
    check_families(_config(method="ia3"), None)  # a model that could not be found: no check
    check_families(
        _config(method="ia3", target_modules=["qkv_proj"], feedforward_modules=[]), "phi3"
    )
    check_families(_config(method="lora"), "phi3")


def test_the_training_job_refuses_it_too(tmp_path: Path) -> None:
    """For a model the Snakefile could not find before the run (a download)."""
    base = load_base_model(make_model_dir(tmp_path, "phi3"))
    with pytest.raises(VariantError, match=REFUSED.replace(r"variants\.v", r"variants\.ia3")):
        trainable_model(base, settings("ia3"))


def test_the_run_stops_before_any_job(tmp_path: Path) -> None:
    root = copy_repo(tmp_path / "repo")
    model = make_model_dir(tmp_path / "phi3", "phi3")
    override = {"model": {"name": str(model)}, "variants": {"v": {"method": "ia3"}}}
    (root / "phi3.yaml").write_text(json.dumps(override), encoding="utf-8")
    result = run_snakemake(root, "--configfile", "phi3.yaml", "--cores", "1", "--dry-run")
    assert result.returncode != 0
    assert "ia3 does not work on phi3 models" in result.stdout + result.stderr
    assert not (root / "results").exists()
