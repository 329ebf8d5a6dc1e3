"""Load a model's fast tokenizer the way transformers does, without torch.

``PreTrainedTokenizerFast.from_pretrained`` (transformers' ``TokenizersBackend``) reads
``tokenizer.json`` as the model ships it, with the special tokens, the BOS/EOS settings
(``add_bos_token``) and the chat template of ``tokenizer_config.json`` / ``chat_template.jinja``, and
renders chat templates (:mod:`koqa.data.prompt`). Unlike ``AutoTokenizer`` it imports no torch
(``AutoTokenizer`` reaches torch through transformers' model configs), so the data stages stay light;
and it runs no code shipped with a model, whatever ``trust_remote_code`` says. Batch encoding goes
through its ``tokenizers`` backend directly (:attr:`TextTokenizer.tokenizer`), the same object
transformers encodes with.

The fingerprint (a hash of the tokenizer files and the chat template) goes into the shards' metadata:
a changed tokenizer or chat template invalidates them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


@dataclass(frozen=True)
class TextTokenizer:
    """A model's fast tokenizer: transformers' object, its ``tokenizers`` backend, the ids of BOS and
    EOS, and a content fingerprint."""

    tokenizer: Tokenizer  # the backend transformers encodes with (no truncation, no padding)
    transformers: PreTrainedTokenizerFast
    bos_id: int | None
    eos_id: int
    fingerprint: str

    @property
    def chat_template(self) -> str | None:
        """The default chat template, if the model has one."""
        template = self.transformers.chat_template
        if isinstance(template, dict):  # named templates
            return template.get("default")
        return template

    def special_tokens(self) -> dict[str, int]:
        """Text -> id of every special token (those a decode with ``skip_special_tokens`` drops)."""
        return {
            token.content: index
            for index, token in self.transformers.added_tokens_decoder.items()
            if token.special
        }

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids


def load_text_tokenizer(model_dir: str | Path) -> TextTokenizer:
    """The tokenizer of a local model directory (``tokenizer.json`` required), offline."""
    model_dir = Path(model_dir)
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(
            f"{tokenizer_file}: missing; koqa needs a fast tokenizer (tokenizer.json)"
        )
    # imported here, after koqa.runtime.configure_job has set the job's thread and offline variables
    from transformers import PreTrainedTokenizerFast

    loaded = PreTrainedTokenizerFast.from_pretrained(model_dir, local_files_only=True)
    if loaded.eos_token_id is None:
        raise ValueError(
            f"{model_dir / 'tokenizer_config.json'}: no usable eos_token "
            f"(found {loaded.eos_token!r})"
        )
    backend = loaded.backend_tokenizer
    # a tokenizer.json may ship truncation or padding settings; koqa cuts and pads itself
    backend.no_truncation()
    backend.no_padding()
    digest = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (model_dir / name).is_file():
            digest.update((model_dir / name).read_bytes())
    chat_template = loaded.chat_template
    digest.update(str(chat_template or "").encode())
    return TextTokenizer(
        tokenizer=backend,
        transformers=loaded,
        bos_id=loaded.bos_token_id,
        eos_id=loaded.eos_token_id,
        fingerprint=digest.hexdigest()[:16],
    )
