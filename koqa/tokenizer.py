"""Load a model's fast tokenizer with the ``tokenizers`` library alone (no torch, no transformers).

The data stages only need ``tokenizer.json`` plus the special tokens named in
``tokenizer_config.json``, so they stay light and fast. The fingerprint (a hash of both files) goes
into the shards' metadata: a changed tokenizer invalidates them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer


@dataclass(frozen=True)
class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with the ids of its special tokens and a content fingerprint."""

    tokenizer: Tokenizer
    bos_id: int | None
    eos_id: int
    fingerprint: str

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids


def _token_text(value: object) -> str | None:
    """Special tokens are stored either as strings or as ``{"content": ...}`` objects."""
    return value.get("content") if isinstance(value, dict) else value


def load_text_tokenizer(model_dir: str | Path) -> TextTokenizer:
    """Read ``tokenizer.json`` and ``tokenizer_config.json`` from a local model directory."""
    model_dir = Path(model_dir)
    tokenizer_file = model_dir / "tokenizer.json"
    config_file = model_dir / "tokenizer_config.json"
    for path in (tokenizer_file, config_file):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: missing; koqa needs a fast tokenizer (tokenizer.json)"
            )
    config = json.loads(config_file.read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    eos = _token_text(config.get("eos_token"))
    if eos is None or tokenizer.token_to_id(eos) is None:
        raise ValueError(f"{config_file}: no usable eos_token (found {eos!r})")
    bos = _token_text(config.get("bos_token")) if config.get("add_bos_token", True) else None
    digest = hashlib.sha256(tokenizer_file.read_bytes() + config_file.read_bytes()).hexdigest()
    return TextTokenizer(
        tokenizer=tokenizer,
        bos_id=tokenizer.token_to_id(bos) if bos else None,
        eos_id=tokenizer.token_to_id(eos),
        fingerprint=digest[:16],
    )
