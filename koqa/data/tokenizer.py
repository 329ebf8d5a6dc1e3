"""Load a model's fast tokenizer with the ``tokenizers`` library alone (no torch, no transformers).

The data stages only need ``tokenizer.json`` plus the special tokens and chat template named in
``tokenizer_config.json`` (or a ``chat_template.jinja`` beside it), so they stay light and fast. The
fingerprint (a hash of those files) goes into the shards' metadata: a changed tokenizer or chat
template invalidates them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer


@dataclass(frozen=True)
class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with the ids of its special tokens and a content fingerprint."""

    tokenizer: Tokenizer
    bos_id: int | None
    eos_id: int
    fingerprint: str
    # special tokens by name (bos_token, eos_token, ...), as a chat template refers to them
    special_tokens: dict[str, str] = field(default_factory=dict)
    chat_template: str | None = None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids


def _token_text(value: object) -> str | None:
    """Special tokens are stored either as strings or as ``{"content": ...}`` objects."""
    return value.get("content") if isinstance(value, dict) else value


def _chat_template(model_dir: Path, config: dict) -> str | None:
    """The default chat template: ``chat_template.jinja`` or ``tokenizer_config.json``'s entry (a
    string, or a list of named templates)."""
    jinja_file = model_dir / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {entry.get("name"): entry.get("template") for entry in template}
        return named.get("default")
    return template


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
    special_tokens = {
        name: text
        for name in ("bos_token", "eos_token", "pad_token", "unk_token")
        if (text := _token_text(config.get(name))) is not None
    }
    chat_template = _chat_template(model_dir, config)
    digest = hashlib.sha256(
        tokenizer_file.read_bytes() + config_file.read_bytes() + (chat_template or "").encode()
    ).hexdigest()
    return TextTokenizer(
        tokenizer=tokenizer,
        bos_id=tokenizer.token_to_id(bos) if bos else None,
        eos_id=tokenizer.token_to_id(eos),
        fingerprint=digest[:16],
        special_tokens=special_tokens,
        chat_template=chat_template,
    )
