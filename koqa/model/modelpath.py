"""Find the directory of a base model: a local path, or a Hub id in the local Hugging Face cache;
download a Hub model into that cache (the download_model rule, the only step that goes online); and
fingerprint a model directory. No torch here: the data stages need the tokenizer files too."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)

from koqa.files import read_json

# Config, weights, tokenizer (sentencepiece *.model, BPE merges/vocab *.txt) and chat template.
_MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]


def model_file_patterns(trust_remote_code: bool = False) -> list[str]:
    """The files of a Hub repository a job needs; the model's own code (``*.py``) only when the
    config trusts it, since transformers runs that code."""
    return [*_MODEL_FILES, "*.py"] if trust_remote_code else list(_MODEL_FILES)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~"))


def is_hub_id(name: str) -> bool:
    """Whether ``model.name`` names a Hub repository rather than a local directory (``tiny``, the
    embedded model, is neither)."""
    return name != "tiny" and not _looks_like_path(name) and not Path(name).is_dir()


def resolve_model_dir(
    name_or_path: str, trust_remote_code: bool = False, download_record: str | Path | None = None
) -> Path:
    """An absolute local directory holding the model's config, tokenizer and safetensors weights:
    the directory itself, or a Hub id's snapshot in the local cache, never fetched from the network.

    ``download_record``: the JSON the download_model rule wrote; the snapshot of the commit it
    names is used, even if the cache has since been updated to a newer one.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    if _looks_like_path(name_or_path):
        raise FileNotFoundError(f"model.name: {name_or_path!r} is not an existing directory")
    revision = read_json(download_record)["commit"] if download_record else None
    try:
        return Path(
            snapshot_download(
                repo_id=name_or_path,
                revision=revision,
                local_files_only=True,
                allow_patterns=model_file_patterns(trust_remote_code),
            )
        )
    except (LocalEntryNotFoundError, HFValidationError) as err:
        raise FileNotFoundError(
            f"model.name: {name_or_path!r}"
            + (f" at commit {revision}" if revision else "")
            + " is neither a local directory nor in the Hugging Face cache "
            f"({os.environ.get('HF_HOME') or 'HF_HOME unset: ~/.cache/huggingface'}); point it at "
            "a local path, or set model.allow_download: true (rerun the download_model rule with "
            "--forcerun download_model if the cache was emptied)"
        ) from err


def download_model(repo_id: str, trust_remote_code: bool = False) -> dict:
    """Fetch the files jobs need of Hub model ``repo_id`` (main branch) into the Hugging Face cache
    (``HF_HOME``; ``HF_TOKEN`` for gated models) and return a record of what was fetched: the id,
    the commit and each file with its size."""
    try:
        snapshot = Path(
            snapshot_download(
                repo_id=repo_id, allow_patterns=model_file_patterns(trust_remote_code)
            )
        )
    except GatedRepoError as err:
        raise PermissionError(
            f"model.name: {repo_id!r} is a gated model: accept its license on "
            f"https://huggingface.co/{repo_id} and make a token visible to Snakemake (HF_TOKEN, or "
            "`hf auth login`)"
        ) from err
    except RepositoryNotFoundError as err:
        raise FileNotFoundError(
            f"model.name: {repo_id!r} is not a model on the Hugging Face Hub (or is private: set "
            "HF_TOKEN)"
        ) from err
    files = sorted(p for p in snapshot.rglob("*") if p.is_file())
    return {
        "model": repo_id,
        "revision": "main",
        # the cache names each snapshot's folder after its commit
        "commit": snapshot.name,
        "files": {p.relative_to(snapshot).as_posix(): p.stat().st_size for p in files},
    }


def model_fingerprint(model_dir: str | Path) -> dict:
    """What identifies a base model cheaply: its path (relative to the working directory when inside
    it, so that a moved checkout keeps its fingerprints), a hash of its config and the name, size and
    modification time of each weight file (weights are not read: they may be many GB). A model
    rebuilt or replaced in place gets another fingerprint."""
    model_dir = Path(model_dir).resolve()
    config = model_dir / "config.json"
    weights = sorted(model_dir.glob("*.safetensors"))
    here = Path.cwd().resolve()
    return {
        "path": str(model_dir.relative_to(here) if model_dir.is_relative_to(here) else model_dir),
        "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest()
        if config.is_file()
        else None,
        "weights": [[w.name, w.stat().st_size, w.stat().st_mtime_ns] for w in weights],
    }
