"""Find the directory of a base model: a local path, or a Hub id in the local cache (download only
when the config allows it), and fingerprint it. No torch here: the data stages need the tokenizer
files too."""

from __future__ import annotations

import hashlib
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

# Config, weights, tokenizer (sentencepiece *.model, BPE merges/vocab *.txt) and chat template.
_MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]


def model_file_patterns(trust_remote_code: bool = False) -> list[str]:
    """The files of a Hub repository a job needs; the model's own code (``*.py``) only when the
    config trusts it, since transformers runs that code."""
    return [*_MODEL_FILES, "*.py"] if trust_remote_code else list(_MODEL_FILES)


def resolve_model_dir(
    name_or_path: str, allow_download: bool = False, trust_remote_code: bool = False
) -> Path:
    """An absolute local directory holding the model's config, tokenizer and safetensors weights."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    if name_or_path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model.name: {name_or_path!r} is not an existing directory")
    try:
        return Path(
            snapshot_download(
                repo_id=name_or_path,
                local_files_only=not allow_download,
                allow_patterns=model_file_patterns(trust_remote_code),
            )
        )
    except (LocalEntryNotFoundError, HFValidationError) as err:
        raise FileNotFoundError(
            f"model.name: {name_or_path!r} is neither a local directory nor in the Hugging Face "
            "cache; point it at a local path or set model.allow_download: true"
        ) from err


def model_fingerprint(model_dir: str | Path) -> dict:
    """What identifies a base model cheaply: its absolute path, a hash of its config and the name,
    size and modification time of each weight file (weights are not read: they may be many GB).
    A model rebuilt or replaced in place gets another fingerprint."""
    model_dir = Path(model_dir).resolve()
    config = model_dir / "config.json"
    weights = sorted(model_dir.glob("*.safetensors"))
    return {
        "path": str(model_dir),
        "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest()
        if config.is_file()
        else None,
        "weights": [[w.name, w.stat().st_size, w.stat().st_mtime_ns] for w in weights],
    }
