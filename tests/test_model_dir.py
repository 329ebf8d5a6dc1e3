"""A base model named by Hub id: found offline in the Hugging Face cache (dotted ids included), with
the files the jobs read, and passed to the train and predict jobs as a local directory."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2
import pandas as pd
import pytest
from huggingface_hub import constants
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from huggingface_hub.utils import filter_repo_objects
from tiny_task import CONFIG, TinyTask, settings

from koqa.model import modelpath
from koqa.model.basemodel import load_base_model
from koqa.model.modelpath import (
    download_model,
    is_hub_id,
    model_file_patterns,
    model_fingerprint,
    resolve_model_dir,
)

ROOT = Path(__file__).parents[1]
HUB_ID = "koqa-test/Tiny-Llama-0.5"  # a dot, as in Qwen/Qwen2.5-0.5B-Instruct
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# a Hub repository's files: the first nine are what jobs read
REPO_FILES = [
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "merges.txt",
    "chat_template.jinja",
    "modeling_exaone.py",
    "pytorch_model.bin",
    "original/consolidated.00.pth",
]


def _fake_hub_cache(
    cache: Path, model_dir: Path, repo_id: str = HUB_ID, commit: str = COMMIT
) -> Path:
    """A Hugging Face cache holding ``model_dir`` as the main revision of ``repo_id``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs/main").write_text(commit)
    return snapshot


def test_a_dotted_hub_id_resolves_from_the_cache_offline(
    tiny_task: TinyTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = _fake_hub_cache(tmp_path, tiny_task.base_dir)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve_model_dir(HUB_ID) == snapshot
    assert resolve_model_dir(str(tiny_task.base_dir)) == tiny_task.base_dir.resolve()
    with pytest.raises(FileNotFoundError, match=r"model\.name: 'koqa-test/Other-1\.5' is neither"):
        resolve_model_dir("koqa-test/Other-1.5")
    with pytest.raises(FileNotFoundError, match="is not an existing directory"):
        resolve_model_dir("./no/such/model")


def test_a_download_record_pins_the_commit_jobs_load(
    tiny_task: TinyTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloaded = _fake_hub_cache(tmp_path, tiny_task.base_dir)
    newer = _fake_hub_cache(tmp_path, tiny_task.base_dir, commit="f" * 40)  # main moved on since
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    record = tmp_path / "download.json"
    record.write_text(json.dumps({"model": HUB_ID, "commit": COMMIT}))
    assert resolve_model_dir(HUB_ID) == newer
    assert resolve_model_dir(HUB_ID, download_record=record) == downloaded
    record.write_text(json.dumps({"model": HUB_ID, "commit": "e" * 40}))
    with pytest.raises(FileNotFoundError, match=f"at commit {'e' * 40} is neither"):
        resolve_model_dir(HUB_ID, download_record=record)


def test_only_a_hub_id_is_downloaded(tiny_task: TinyTask, monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_hub_id(HUB_ID)
    assert not is_hub_id("tiny")
    assert not is_hub_id(str(tiny_task.base_dir)) and not is_hub_id("./models/missing")
    monkeypatch.chdir(tiny_task.base_dir.parent)
    assert not is_hub_id(tiny_task.base_dir.name)  # a relative directory that exists


def test_download_fetches_the_job_files_and_records_the_commit(
    tiny_task: TinyTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_snapshot_download(**kwargs: object) -> str:
        """The Hub, as huggingface_hub fills the cache: only the allowed files, under the commit."""
        calls.append(kwargs)
        snapshot = tmp_path / "snapshots" / COMMIT
        files = list(filter_repo_objects(REPO_FILES, allow_patterns=kwargs["allow_patterns"]))
        for name in files:
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / name).write_text(name)
        return str(snapshot)

    monkeypatch.setattr(modelpath, "snapshot_download", fake_snapshot_download)
    record = download_model(HUB_ID)
    assert calls == [{"repo_id": HUB_ID, "allow_patterns": model_file_patterns(False)}]
    assert (record["model"], record["commit"]) == (HUB_ID, COMMIT)
    assert record["files"] == {name: len(name) for name in REPO_FILES[:9]}


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (GatedRepoError, r"gated model: accept its license .* \(HF_TOKEN"),
        (RepositoryNotFoundError, r"is not a model on the Hugging Face Hub"),
    ],
)
def test_download_errors_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch, error: type, message: str
) -> None:
    def refuse(**kwargs: object) -> str:
        raise error("refused", response=httpx2.Response(401, request=httpx2.Request("GET", "/")))

    monkeypatch.setattr(modelpath, "snapshot_download", refuse)
    with pytest.raises(OSError, match=message):
        download_model(HUB_ID)


def test_the_files_fetched_are_those_the_jobs_read() -> None:
    repo_files = REPO_FILES

    def fetched(trust_remote_code: bool) -> set[str]:
        patterns = model_file_patterns(trust_remote_code)
        return set(filter_repo_objects(repo_files, allow_patterns=patterns))

    needed = set(repo_files[:9])
    assert fetched(trust_remote_code=False) == needed
    assert fetched(trust_remote_code=True) == needed | {"modeling_exaone.py"}


def test_a_model_rebuilt_in_place_changes_its_fingerprint(
    tiny_task: TinyTask, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_task.base_dir, base)
    before = model_fingerprint(base)
    assert before == model_fingerprint(tmp_path / "." / "base")
    model = load_base_model(base)
    model.model.norm.weight.data += 1
    os.utime(base / "model.safetensors", ns=(0, 0))  # the rewrite must show even at equal size
    model.save_pretrained(base, safe_serialization=True)
    after = model_fingerprint(base)
    assert after["path"] == before["path"] and after["config_sha256"] == before["config_sha256"]
    assert after != before


def test_a_moved_checkout_keeps_its_model_fingerprint(
    tiny_task: TinyTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fingerprints = []
    for checkout in ("first", "moved"):
        base = tmp_path / checkout / "results/model/base"
        shutil.copytree(tiny_task.base_dir, base)  # as `cp -a` or `mv`: modification times kept
        monkeypatch.chdir(tmp_path / checkout)
        fingerprints.append(model_fingerprint(base))
    assert fingerprints[0] == fingerprints[1]
    assert fingerprints[0]["path"] == "results/model/base"


# Runs a rule's script the way Snakemake does: with a global ``snakemake`` object.
_DRIVER = """
import json, runpy, sys
from types import SimpleNamespace

class Named(list):
    def __init__(self, **items):
        super().__init__(items.values())
        self.__dict__.update(items)

    def get(self, key, default=None):
        return self.__dict__.get(key, default)

for step in json.loads(open(sys.argv[1], encoding="utf-8").read()):
    snakemake = SimpleNamespace(
        threads=1,
        config=step["config"],
        log=Named(log=step["log"]),
        **{part: Named(**step[part]) for part in ("input", "output", "params", "resources")},
    )
    runpy.run_path(step["script"], init_globals={"snakemake": snakemake}, run_name="__main__")
"""


def test_train_and_predict_jobs_take_a_hub_id(tiny_task: TinyTask, tmp_path: Path) -> None:
    _fake_hub_cache(tmp_path / "hub", tiny_task.base_dir)
    out = tmp_path / "results"
    common = {"config": CONFIG, "resources": {}}
    train = {
        **common,
        "script": str(ROOT / "scripts/train.py"),
        "log": str(out / "train.log"),
        "input": {"shards": str(tiny_task.train_dir), "validation": str(tiny_task.validation_dir)},
        "output": {
            "adapter": str(out / "adapter"),
            "metrics": str(out / "metrics.csv"),
            "timing": str(out / "timing.csv"),
            "summary": str(out / "summary.json"),
            "plot": str(out / "loss.svg"),
        },
        "params": {
            "settings": settings("lora", epochs=1, batch_size=32),
            "model": HUB_ID,
            "checkpoints": str(out / "checkpoints"),
            "trust_remote_code": False,
            "dtype": "auto",
        },
    }
    options = {**CONFIG["predict"], "max_new_tokens": 4}
    predict = {
        **common,
        "script": str(ROOT / "scripts/predict.py"),
        "log": str(out / "predict.log"),
        "input": {
            "adapter": str(out / "adapter"),
            "shards": str(tiny_task.validation_dir),
            "train_shards": str(tiny_task.train_dir),
        },
        "output": {
            "generated": str(out / "validation.generated.csv"),
            "timing": str(out / "timing.json"),
        },
        "params": {
            "model": HUB_ID,
            "options": options,
            "device": "cpu",
            "precision": "fp32",
            "trust_remote_code": False,
            "dtype": "auto",
            "constrain": "never",
        },
    }
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps([train, predict]), encoding="utf-8")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "TQDM_DISABLE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(steps)], env=env, capture_output=True, text=True
    )
    logs = "".join(p.read_text() for p in sorted(out.glob("*.log")))
    assert result.returncode == 0, result.stderr[-3000:] + logs[-3000:]
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    generated = pd.read_csv(out / "validation.generated.csv")
    assert len(generated) == len(tiny_task.validation)
