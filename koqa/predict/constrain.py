"""Context-constrained greedy decoding: a row may only generate text that its prompt's context holds.

**What is allowed.** Every token has the bytes it adds to a decoded text (:func:`token_bytes`:
byte-level BPE maps each character of the token back to its byte; a SentencePiece-style token is
its piece with ``▁`` read as a space, and a byte-fallback token ``<0xAB>`` is that byte). A row's
generation, up to its stop token, is allowed when the concatenated bytes of its tokens, less their
leading spaces, are a span of the UTF-8 bytes of the context that starts and ends on a character
boundary. So its decoded text, less its leading spaces (which answer extraction strips anyway; a
SentencePiece decoder drops one itself), is a substring of the context, whichever tokens spell it:
the context's own tokens, a span that starts mid-word (``서울`` in ``경기서울``, where the context's
own token was ``▁경기서울``), pieces the context's tokenization never used, or characters split
into byte tokens. The stop tokens (EOS, the
chat template's end-of-turn ids, every token with a line break) are allowed once at least one token
is generated, and only at a character boundary; special tokens are never generated otherwise. A
token that ends inside a character is allowed only while the steps left (``max_new_tokens``) are
enough for tokens of the context to finish that character, so a row cut at the cap still decodes to
whole characters. A
context with nothing to offer (empty) leaves only the stop tokens.

**How.** :class:`SpanIndex` holds, for the tokenizer, a dictionary from every token's bytes (and
every prefix of them) to the tokens with those bytes. For each context it lists every *match*: a
byte position ``p``, a token whose bytes are the context's at ``p``, and the position after them
(a walk from each position through that dictionary, stopped as soon as no token continues; once per
distinct context), plus the matches only a row's first token after its leading spaces may make
(its own leading space skipped). A row's state is the set of context positions its bytes so far can
end at; the allowed next tokens are those of the matches leaving the state (and, while the row has
generated only spaces, the all-space tokens, which leave the state as it is), and the next state is
where the chosen token's matches lead. :class:`SpanState` does this for a whole batch at once, with tensor operations over the
matches of every row (no loop over rows or over the vocabulary); the mask goes on the logits before
the argmax, so batching, the KV cache, shared prefixes and virtual tokens are untouched.

Hand-written because no library does it: transformers' ``prefix_allowed_tokens_fn`` calls a Python
function per row and step, and constrained-decoding libraries compile grammars over a fixed text
rather than a different context per row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _decoder_kind(tokenizer: Tokenizer) -> str:
    """``byte_level`` or ``metaspace``: how the tokenizer's decoder turns tokens into bytes."""
    decoder = json.loads(tokenizer.to_str()).get("decoder") or {}
    steps = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    types = {step.get("type") for step in steps}
    if "ByteLevel" in types:
        return "byte_level"
    replaces_meta = any(
        step.get("type") == "Replace" and step.get("pattern", {}).get("String") == "▁"
        for step in steps
    )
    if "Metaspace" in types or replaces_meta:
        return "metaspace"
    raise ValueError(
        f"predict.constrain: the tokenizer's decoder ({decoder.get('type')}) is neither byte-level "
        "nor SentencePiece-style; set predict.constrain: never"
    )


def token_bytes(tokenizer: Tokenizer) -> list[bytes]:
    """The bytes each token adds inside a decoded text (b"" for special tokens)."""
    kind = _decoder_kind(tokenizer)
    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    pieces = [b""] * tokenizer.get_vocab_size(with_added_tokens=True)
    for piece, index in vocab.items():
        if kind == "byte_level":
            pieces[index] = bytes(byte_of[char] for char in piece)
        elif match := _BYTE_FALLBACK.fullmatch(piece):
            pieces[index] = bytes([int(match.group(1), 16)])
        else:
            pieces[index] = piece.replace("▁", " ").encode()
    for index, added in tokenizer.get_added_tokens_decoder().items():
        pieces[index] = b"" if added.special else added.content.encode()
    return pieces


@dataclass(frozen=True)
class Matches:
    """One context's matches: a token ``token`` whose bytes are the context's from ``start`` to
    ``end`` (byte positions); ``first``: only a row's first token after its leading spaces may
    make it (its own leading space skipped). ``to_finish[p]``: the fewest tokens that take
    position ``p`` (0 .. length) to a character start along the context (0: ``p`` starts one)."""

    start: np.ndarray
    token: np.ndarray
    end: np.ndarray
    first: np.ndarray
    to_finish: np.ndarray


def _to_finish(boundary: np.ndarray, found: list[tuple[int, int, int]]) -> np.ndarray:
    """The fewest of the ``found`` (start, token, end) matches that lead from each position to a
    character start (``boundary``); a single-byte token always exists in byte-level and
    byte-fallback vocabularies, so every position inside a character gets there."""
    inf = np.iinfo(np.int64).max // 2
    steps = np.where(boundary, 0, inf)
    for start, _, end in sorted(found, reverse=True):  # from the last position back
        if not boundary[start]:
            steps[start] = min(steps[start], steps[end] + 1)
    return steps


class SpanIndex:
    """The tokenizer's side of constrained decoding: token bytes, looked up by their bytes, and the
    stop tokens; :meth:`matches` of a context (cached per distinct context)."""

    def __init__(self, tokenizer: Tokenizer, stop_ids: list[int]) -> None:
        self.stop_ids = sorted(set(stop_ids))
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        stops = set(stop_ids)
        pieces = token_bytes(tokenizer)
        # tokens of spaces only: free while a row has generated nothing else
        self.blank_ids = [
            i
            for i, piece in enumerate(pieces)
            if piece and not piece.strip(b" ") and i not in stops
        ]
        # bytes -> the tokens with exactly those bytes; every proper prefix of a token is a key too
        # (with no tokens of its own unless one has those bytes), so a walk stops at the first miss
        self.pieces: dict[bytes, tuple[int, ...]] = {b"": ()}
        for index, piece in enumerate(pieces):
            if not piece or index in stops:
                continue
            for cut in range(1, len(piece)):
                self.pieces.setdefault(piece[:cut], ())
            self.pieces[piece] = (*self.pieces.get(piece, ()), index)
        self._cache: dict[str, Matches] = {}

    def _walk(
        self, text: bytes, lead: bytes, start: int, found: list[tuple[int, int, int]]
    ) -> None:
        """Add (start, token, end) for every token whose bytes are ``lead`` + text[start:end],
        text[start:end] not empty."""
        for end in range(start + 1, len(text) + 1):
            tokens = self.pieces.get(lead + text[start:end])
            if tokens is None:
                return
            for token in tokens:
                found.append((start, token, end))

    def matches(self, context: str) -> Matches:
        """Every match of a token in ``context`` (see :class:`Matches`)."""
        if context in self._cache:
            return self._cache[context]
        text = context.encode()
        boundary = np.ones(len(text) + 1, bool)
        boundary[:-1] = (np.frombuffer(text, np.uint8) & 0xC0) != 0x80  # not a continuation byte
        anywhere: list[tuple[int, int, int]] = []
        first: list[tuple[int, int, int]] = []
        for start in range(len(text)):
            self._walk(text, b"", start, anywhere)
        for start in np.flatnonzero(boundary).tolist():
            self._walk(text, b" ", start, first)
        table = np.array(anywhere + first, np.int64).reshape(-1, 3)
        found = Matches(
            start=table[:, 0],
            token=table[:, 1],
            end=table[:, 2],
            first=np.arange(len(table)) >= len(anywhere),
            to_finish=_to_finish(boundary, anywhere),
        )
        self._cache[context] = found
        return found


class SpanState:
    """The constraint of one batch of rows, one context each: every row's set of context positions
    its generated bytes can end at (all character starts before the first token), as one boolean
    vector over the positions of every row's context, laid end to end."""

    def __init__(self, index: SpanIndex, contexts: list[str], device: str) -> None:
        tables = [index.matches(context) for context in contexts]
        sizes = torch.tensor([len(t.to_finish) for t in tables])
        offsets = (sizes.cumsum(0) - sizes).tolist()

        def joined(field: str) -> torch.Tensor:
            return torch.cat([torch.from_numpy(getattr(t, field)) for t in tables]).to(device)

        # positions of every row's context, laid end to end
        shift = torch.repeat_interleave(
            torch.tensor(offsets), torch.tensor([len(t.start) for t in tables])
        ).to(device)
        self.start, self.end = joined("start") + shift, joined("end") + shift
        self.token, self.first = joined("token"), joined("first")
        self.to_finish = joined("to_finish")
        self.boundary = self.to_finish == 0
        self.row_of_position = torch.repeat_interleave(torch.arange(len(tables)), sizes).to(device)
        self.row = self.row_of_position[self.start]
        self.stops = torch.tensor(index.stop_ids, dtype=torch.long, device=device)
        self.blank = torch.tensor(index.blank_ids, dtype=torch.long, device=device)
        self.state = self.boundary.clone()
        self.rows, self.step = len(contexts), 0
        # rows that have generated nothing but spaces
        self.leading = torch.ones(self.rows, dtype=torch.bool, device=device)

    def _usable(self) -> torch.Tensor:
        """The matches leaving the current states (a first token's only in leading rows)."""
        return self.state[self.start] & (~self.first | self.leading[self.row])

    def allowed(self, alive: torch.Tensor, width: int, steps_left: int) -> torch.Tensor:
        """The (rows of ``alive``, ``width``) mask of the tokens each row may generate next, with
        ``steps_left`` steps after this one to finish a character."""
        usable = self._usable() & (self.to_finish[self.end] <= steps_left)
        mask = torch.zeros((self.rows, width), dtype=torch.bool, device=self.state.device)
        mask[self.row[usable], self.token[usable]] = True
        mask[:, self.blank] |= self.leading[:, None]
        can_stop = ~mask.any(-1)  # nothing else to generate: stop
        if self.step:
            at_boundary = self.row_of_position[self.state & self.boundary]
            can_stop[at_boundary] = True
        mask[:, self.stops] |= can_stop[:, None]
        return mask[alive]

    def advance(self, alive: torch.Tensor, tokens: torch.Tensor) -> None:
        """Move the rows of ``alive`` on by the tokens they generated."""
        chosen = torch.full((self.rows,), -1, dtype=torch.long, device=self.state.device)
        chosen[alive] = tokens
        taken = self._usable() & (self.token == chosen[self.row])
        blank = self.leading & torch.isin(chosen, self.blank)  # still nothing but spaces
        state = self.state & blank[self.row_of_position]
        state[self.end[taken]] = True
        self.state, self.leading = state, blank
        self.step += 1


@dataclass(frozen=True)
class ContextConstraint:
    """Constrained decoding for a list of prompts: the tokenizer's :class:`SpanIndex` and each
    prompt's context (the text the prompt holds)."""

    index: SpanIndex
    contexts: list[str]

    def state(self, prompt_indices: list[int], device: str) -> SpanState:
        """The constraint of a batch of these prompts."""
        return SpanState(self.index, [self.contexts[i] for i in prompt_indices], device)
