"""Find the directory of a base model: a local path, or a Hub id in the local cache (download only
when the config allows it). No torch here: the data stages need the tokenizer files too."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

_WEIGHT_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]


def resolve_model_dir(name_or_path: str, allow_download: bool = False) -> Path:
    """An absolute local directory holding the model's config, tokenizer and safetensors weights."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    if name_or_path.startswith((".", "/", "~")) or path.suffix:
        raise FileNotFoundError(f"model.name: {name_or_path!r} is not an existing directory")
    try:
        return Path(
            snapshot_download(
                repo_id=name_or_path,
                local_files_only=not allow_download,
                allow_patterns=_WEIGHT_FILES,
            )
        )
    except (LocalEntryNotFoundError, HFValidationError) as err:
        raise FileNotFoundError(
            f"model.name: {name_or_path!r} is neither a local directory nor in the Hugging Face "
            "cache; point it at a local path or set model.allow_download: true"
        ) from err
