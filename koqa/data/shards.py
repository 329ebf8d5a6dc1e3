"""Turn cleaned rows into token ids with answer-only labels, stored as Parquet shards.

**Whole-text encoding.** A row's prompt tokens are the tokenizer's encoding of its whole prompt
text as one string (:meth:`PromptLayout.prompt_text`, special tokens as the layout says); its target
tokens are what follows the prompt in the encoding of prompt + target text
(:meth:`PromptLayout.target_text`), then the layout's ``end_ids``. So the model is trained and asked
on the token sequences its tokenizer gives for that text, never on pieces encoded apart. When the
prompt's last token would merge with the answer's first (the whole encoding of prompt + answer does
not start with the prompt's), a training row is dropped with that reason; a validation row keeps its
prompt and gets its target encoded apart (it only feeds the validation loss).

**Truncation**, when a row is longer than ``max_seq_len``: only the context is cut, at character
offsets inside it (the boundaries of its own tokens, whitespace at the cut edges dropped), and the
cut prompt is encoded whole again (a cut that still does not fit is cut shorter). Training rows must
fit with their answer, and their window of the context is centred on the aligned answer so the model
always sees what it must copy (unaligned answers: the start is kept). Validation and test prompts are
built alike: the start of the context is kept and only the prompt must fit ``max_seq_len``, whatever
the answer (a validation answer follows its prompt, for the validation loss only). Each row records
the kept characters of its context (``context_start``, ``context_end``), whether it was cut, and how
many tokens it needs uncut (``untruncated_tokens``, for choosing ``max_seq_len``).

**Too long even without context**: a training or validation row whose prompt without its context
(and, for training, its answer) leaves no room for the context is dropped with its reason, in the
split's dropped table (a dropped validation row is scored as a missing prediction); a test row
stops the run, naming it.

**Speed.** Every row is encoded whole once, in one batch per kind of text (prompts; prompts with
their targets) through the ``tokenizers`` backend, in parallel when the job has several threads (see
:func:`koqa.runtime.configure_job`). Only the rows that do not fit pay more: the token offsets of
their contexts (once per distinct context) and another whole encoding of the cut text (a prompt
that leaves no room for its target is cut before its target is encoded). The rows are assembled
into flat NumPy arrays.

Each split is a directory of ``part-NNNNN.parquet`` files of ``shard_rows`` rows; every shard's schema
metadata carries the tokenizer fingerprint, prompt layout hash, ``max_seq_len`` and the ids generation
stops at (:func:`stop_ids`). ``n_tokens`` is what length-grouped batching sorts by.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from koqa.data.prompt import PromptLayout
from koqa.data.tokenizer import TextTokenizer
from koqa.files import atomic_path

IGNORE_INDEX = -100
# Texts per tokenizer call (enough for its threads). The tokenizer's Encoding objects take tens of
# bytes per token (ids, tokens, offsets, masks): one chunk of them lives at a time, the rest is
# kept as int32 ids.
ENCODE_CHUNK = 1024
SPLITS = ("train", "validation", "test")
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("prompt_len", pa.int32()),
        ("n_tokens", pa.int32()),
        ("untruncated_tokens", pa.int32()),
        ("context_truncated", pa.bool_()),
        ("context_start", pa.int32()),  # the kept characters of the context: [start, end)
        ("context_end", pa.int32()),
    ]
)
DROPPED_COLUMNS = ["id", "reason", "detail"]


@dataclass(frozen=True)
class EncodedSplit:
    """A split's shard rows, the rows dropped (``id``, ``reason``, ``detail``), and how many
    validation targets were encoded apart from their prompt."""

    rows: pa.Table
    dropped: pd.DataFrame
    targets_apart: int


def context_window(
    starts: np.ndarray, ends: np.ndarray, budget: int, answer_span: tuple[int, int] | None
) -> tuple[int, int]:
    """Token range [lo, hi) of at most ``budget`` tokens of a context whose tokens span the
    characters ``starts``/``ends``: centred on ``answer_span`` (characters), else the start."""
    n = len(starts)
    if n <= budget:
        return 0, n
    if answer_span is None:
        return 0, budget
    first = int(np.searchsorted(ends, answer_span[0], side="right"))  # first token ending after
    last = int(np.searchsorted(starts, answer_span[1], side="left")) - 1  # last starting before
    lo = max(0, min((first + last + 1 - budget) // 2, n - budget))
    return lo, lo + budget


def _char_window(
    context: str, starts: np.ndarray, ends: np.ndarray, lo: int, hi: int
) -> tuple[int, int]:
    """The characters [start, end) of tokens [lo, hi), without whitespace at either edge."""
    start, end = int(starts[lo]), int(ends[hi - 1])
    text = context[start:end]
    left = len(text) - len(text.lstrip())
    right = len(text) - left - len(text.strip())
    return start + left, end - right


def _lengths(encodings: list) -> np.ndarray:
    """The length of each encoding (or list)."""
    return np.fromiter((len(e) for e in encodings), np.int64, len(encodings))


def _encode_ids(tokenizer: TextTokenizer, texts: list[str], special: bool) -> list[np.ndarray]:
    """The int32 ids of each text, encoded in batches of :data:`ENCODE_CHUNK` texts."""
    encode = tokenizer.tokenizer.encode_batch_fast
    ids: list[np.ndarray] = []
    for start in range(0, len(texts), ENCODE_CHUNK):
        chunk = encode(texts[start : start + ENCODE_CHUNK], add_special_tokens=special)
        ids += [np.array(encoding.ids, np.int32) for encoding in chunk]
    return ids


def _answer_spans(frame: pd.DataFrame) -> list[tuple[int, int] | None]:
    """Each labelled row's target span in its context (None when the answer was not aligned)."""
    return [
        None if pd.isna(start) or start < 0 else (int(start), int(start) + len(target))
        for start, target in zip(
            frame["answer_start"].tolist(), frame["target"].tolist(), strict=True
        )
    ]


class _ContextOffsets:
    """Character spans of each distinct context's tokens, computed once, only where asked."""

    def __init__(self, tokenizer: TextTokenizer, contexts: Sequence[str]) -> None:
        self.tokenizer, self.contexts = tokenizer, contexts
        self.spans: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def fetch(self, indices: set[int]) -> None:
        """Encode (with offsets, in one batch) the contexts of ``indices`` not yet known."""
        missing = sorted(indices - self.spans.keys())
        encodings = self.tokenizer.tokenizer.encode_batch(
            [self.contexts[i] for i in missing], add_special_tokens=False
        )
        for index, encoding in zip(missing, encodings, strict=True):
            offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
            self.spans[index] = offsets[:, 0], offsets[:, 1]


class _SplitEncoder:
    """The rows of one split on their way to token ids: every row encoded whole, uncut; rounds of
    cutting the contexts of the rows that do not fit and encoding them whole again; the targets."""

    def __init__(
        self,
        frame: pd.DataFrame,
        tokenizer: TextTokenizer,
        layout: PromptLayout,
        max_seq_len: int,
        split: str,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        self.tokenizer, self.layout = tokenizer, layout
        self.max_seq_len, self.split = max_seq_len, split
        self.training, self.labelled = split == "train", split != "test"
        self.ids = frame["id"].astype(str).tolist()
        self.context_of_row, contexts = pd.factorize(frame["context"])
        self.contexts = list(contexts)
        self.questions = frame["question"].tolist()
        self.targets = (
            [layout.target_text(t) for t in frame["target"].tolist()] if self.labelled else []
        )
        n_rows = len(frame)
        self.spans = _answer_spans(frame) if self.training else [None] * n_rows
        self.offsets = _ContextOffsets(tokenizer, self.contexts)
        self.dropped: list[tuple[str, str, str]] = []
        self.targets_apart = 0
        self.alive = np.ones(n_rows, bool)
        self.prompts: list[np.ndarray | None] = [None] * n_rows
        # what follows the prompt in the whole encoding of prompt + target; None where the
        # prompt's last token merges with the target (``merged``: the tokens at the boundary)
        self.tails: list[np.ndarray | None] = [None] * n_rows
        self.merged: dict[int, list[int]] = {}
        self.windows = np.zeros((n_rows, 2), np.int64)  # kept characters of each context
        self.windows[:, 1] = [len(self.contexts[i]) for i in self.context_of_row]
        # tokens of the context alone and of its kept window, counted once a row is cut
        self.cut = np.zeros(n_rows, bool)
        self.context_tokens = np.zeros(n_rows, np.int64)
        self.kept_tokens = np.zeros(n_rows, np.int64)
        # a training target's tokens, counted alone: what a training prompt must leave room for
        self.answer_tokens = np.zeros(n_rows, np.int64)
        if self.training:
            encodings = _encode_ids(tokenizer, self.targets, special=False)
            self.answer_tokens = _lengths(encodings) + len(layout.end_ids)

    def _encode(self, rows: np.ndarray) -> np.ndarray:
        """Encode the whole texts of ``rows``: the prompts, then prompt + target where the prompt
        leaves room for it. Return the tokens each row has more than ``max_seq_len`` allows
        (training rows with their target, other rows their prompt), <= 0 where it fits."""
        texts = [
            self.layout.prompt_text(
                self.contexts[self.context_of_row[r]][slice(*self.windows[r])], self.questions[r]
            )
            for r in rows
        ]
        special = self.layout.add_special_tokens
        prompts = _encode_ids(self.tokenizer, texts, special)
        for r, ids in zip(rows, prompts, strict=True):
            self.prompts[r] = ids
        over = _lengths(prompts) + self.answer_tokens[rows] - self.max_seq_len
        if not self.labelled:
            return over
        fits = np.flatnonzero(over <= 0)  # the others are cut first
        fulls = _encode_ids(
            self.tokenizer, [texts[i] + self.targets[rows[i]] for i in fits], special
        )
        for i, full in zip(fits, fulls, strict=True):
            self._split_full(rows[i], full)
        if self.training:
            over[fits] = _lengths(fulls) + len(self.layout.end_ids) - self.max_seq_len
        return over

    def _split_full(self, r: int, full: np.ndarray) -> None:
        """Keep what follows row ``r``'s prompt in ``full`` (its prompt + target), or the tokens
        at the boundary where the prompt's last token merges with the target."""
        prompt = self.prompts[r]
        n = len(prompt)
        if np.array_equal(full[:n], prompt):
            self.tails[r] = full[n:].copy()  # not a view: the whole encoding is let go
            self.merged.pop(r, None)
        else:
            self.tails[r] = None
            self.merged[r] = full[n - 1 : n + 1].tolist()

    def _shorten(self, rows: np.ndarray, over: np.ndarray) -> np.ndarray:
        """Cut ``over`` more tokens off the contexts of ``rows`` (their windows shrink from the
        tokens they keep); drop the rows left no context token (a test row stops the run);
        return the rows to encode again."""
        first = rows[~self.cut[rows]]
        self.offsets.fetch({int(self.context_of_row[r]) for r in first})
        for r in first:
            self.context_tokens[r] = len(self.offsets.spans[int(self.context_of_row[r])][0])
        self.kept_tokens[first] = self.context_tokens[first]
        self.cut[rows] = True
        limit = self.kept_tokens[rows] - over
        no_room = limit < np.minimum(self.context_tokens[rows], 1)
        what = "prompt without its context" + (" and the answer" if self.training else "")
        for r, extra in zip(rows[no_room], over[no_room], strict=True):
            needed = int(self.max_seq_len + extra - self.kept_tokens[r])
            if self.split == "test":
                raise ValueError(
                    f"row {self.ids[r]}: the question is too long: the {what} needs {needed} "
                    f"tokens of prompt.max_seq_len {self.max_seq_len}; raise prompt.max_seq_len"
                )
            detail = f"the {what} needs {needed} of {self.max_seq_len} tokens"
            self.dropped.append((self.ids[r], "question_too_long", detail))
        self.alive[rows[no_room]] = False
        for r, budget in zip(rows[~no_room], limit[~no_room], strict=True):
            context = int(self.context_of_row[r])
            starts, ends = self.offsets.spans[context]
            lo, hi = context_window(starts, ends, int(budget), self.spans[r])
            self.kept_tokens[r] = hi - lo
            self.windows[r] = _char_window(self.contexts[context], starts, ends, lo, hi)
        return rows[~no_room]

    def _target(self, r: int) -> np.ndarray | None:
        """The target ids of row ``r``: what follows its prompt in the whole encoding, then
        ``end_ids``; None for a training row whose prompt's last token merges with it."""
        end_ids = np.asarray(self.layout.end_ids, np.int32)
        if self.tails[r] is not None:
            return np.concatenate([self.tails[r], end_ids])
        if self.training:
            detail = (
                f"the prompt ends in token {self.prompts[r][-1]}, which the whole text with the "
                f"answer encodes as {self.merged[r]}"
            )
            self.dropped.append((self.ids[r], "answer_merges_with_prompt", detail))
            return None
        # a validation row keeps its prompt; its target only feeds the validation loss
        self.targets_apart += 1
        return np.concatenate(
            [np.asarray(self.tokenizer.encode(self.targets[r]), np.int32), end_ids]
        )

    def run(self) -> EncodedSplit:
        """Encode every row whole; cut what does not fit and encode it again until every row
        fits; assemble the table."""
        todo = np.arange(len(self.ids))
        over = self._encode(todo)
        uncut_prompt_tokens = _lengths(self.prompts)
        while todo.size:
            todo = self._shorten(todo[over > 0], over[over > 0])
            if todo.size:
                over = self._encode(todo)
        answers = []
        no_target = np.zeros(0, np.int32)
        for r in np.flatnonzero(self.alive):
            target = self._target(r) if self.labelled else no_target
            if target is None:
                self.alive[r] = False
            else:
                answers.append(target)
        kept = np.flatnonzero(self.alive)
        table = _assemble(
            [self.ids[r] for r in kept],
            [self.prompts[r] for r in kept],
            answers,
            self.windows[kept],
            self.cut[kept] & (self.kept_tokens[kept] < self.context_tokens[kept]),
            uncut_prompt_tokens[kept],
        )
        dropped = pd.DataFrame(self.dropped, columns=DROPPED_COLUMNS)
        return EncodedSplit(table, dropped, self.targets_apart)


def encode_split(
    frame: pd.DataFrame,
    tokenizer: TextTokenizer,
    layout: PromptLayout,
    max_seq_len: int,
    split: str,
) -> EncodedSplit:
    """Token ids and labels of the rows of ``frame`` for ``split`` (train, validation or test; the
    first two need ``target`` and ``answer_start`` columns), and the rows dropped."""
    if len(frame):
        layout.check_rendering(frame["context"].iloc[0], frame["question"].iloc[0])
    return _SplitEncoder(frame, tokenizer, layout, max_seq_len, split).run()


def _assemble(
    row_ids: list[str],
    prompts: list[np.ndarray],
    answers: list[np.ndarray],
    windows: np.ndarray,
    truncated: np.ndarray,
    uncut_prompt_tokens: np.ndarray,
) -> pa.Table:
    """The shard table from each row's prompt ids and answer ids, as flat NumPy arrays; a cut
    row needs its uncut prompt's tokens and its answer's uncut."""
    n_rows = len(row_ids)
    prompt_lens = _lengths(prompts)
    answer_lens = _lengths(answers)
    n_tokens = prompt_lens + answer_lens
    offsets = np.zeros(n_rows + 1, np.int64)
    np.cumsum(n_tokens, out=offsets[1:])
    pieces = list(chain.from_iterable(zip(prompts, answers, strict=True)))
    input_ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    # the pieces alternate prompt, answer: one byte a token marks the prompts' (no int64 per token)
    in_prompt = np.repeat(np.tile([True, False], n_rows), [len(piece) for piece in pieces])
    labels = np.where(in_prompt, np.int32(IGNORE_INDEX), input_ids)
    untruncated = np.where(truncated, uncut_prompt_tokens + answer_lens, n_tokens)
    list_offsets = pa.array(offsets.astype(np.int32))
    return pa.table(
        [
            pa.array(row_ids, pa.string()),
            pa.ListArray.from_arrays(list_offsets, pa.array(input_ids)),
            pa.ListArray.from_arrays(list_offsets, pa.array(labels)),
            pa.array(prompt_lens.astype(np.int32)),
            pa.array(n_tokens.astype(np.int32)),
            pa.array(untruncated.astype(np.int32)),
            pa.array(truncated),
            pa.array(windows[:, 0].astype(np.int32)),
            pa.array(windows[:, 1].astype(np.int32)),
        ],
        schema=SCHEMA,
    )


def encode_rows(
    frame: pd.DataFrame,
    tokenizer: TextTokenizer,
    layout: PromptLayout,
    max_seq_len: int,
    center_on_answer: bool = True,
) -> pa.Table:
    """:func:`encode_split` of training rows (``target`` column present, ``center_on_answer``),
    validation rows (``target``, not ``center_on_answer``) or test rows (no ``target``), failing on
    any row it would drop (naming it)."""
    labelled = "target" in frame.columns
    split = ("train" if center_on_answer else "validation") if labelled else "test"
    encoded = encode_split(frame, tokenizer, layout, max_seq_len, split)
    if len(encoded.dropped):
        first = encoded.dropped.iloc[0]
        raise ValueError(
            f"row {first['id']}: {first['reason']}: {first['detail']} "
            f"({len(encoded.dropped)} rows in all)"
        )
    return encoded.rows


def stop_ids(metadata: dict[str, str]) -> list[int]:
    """The token ids generation stops at, from a split's shard metadata (:func:`read_shards`):
    the chat template's end-of-turn token(s) and EOS; [] for shards written before they were
    recorded."""
    return json.loads(metadata.get("stop_ids", "[]"))


def _write_shard(folder: Path, index: int, rows: pa.Table, metadata: dict[str, str]) -> None:
    """Write shard number ``index`` of ``folder``, with ``metadata`` in its schema (``koqa.*``)."""
    table = rows.replace_schema_metadata({f"koqa.{k}": str(v) for k, v in metadata.items()})
    pq.write_table(table, folder / f"part-{index:05d}.parquet")


def write_shards(
    rows: pa.Table, out_dir: str | Path, shard_rows: int, metadata: dict[str, str]
) -> int:
    """Write ``rows`` as Parquet shards of ``shard_rows`` rows into ``out_dir``; return the count."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        n_shards = max(1, -(-len(rows) // shard_rows))
        for index in range(n_shards):
            _write_shard(tmp, index, rows.slice(index * shard_rows, shard_rows), metadata)
    return n_shards


@dataclass(frozen=True)
class ShardsWritten:
    """What :func:`encode_to_shards` wrote: rows and shards, contexts cut, the longest row's tokens
    (and uncut), the rows dropped and the validation targets encoded apart."""

    rows: int
    shards: int
    truncated: int
    longest: int
    longest_uncut: int
    dropped: pd.DataFrame
    targets_apart: int


def encode_to_shards(
    rows_path: str | Path,
    tokenizer: TextTokenizer,
    layout: PromptLayout,
    max_seq_len: int,
    split: str,
    out_dir: str | Path,
    shard_rows: int,
    metadata: dict[str, str],
) -> ShardsWritten:
    """:func:`encode_split` of the rows of the Parquet file ``rows_path``, ``shard_rows`` at a time,
    each chunk written as one shard as soon as it is encoded (smaller by its dropped rows): the job
    holds one chunk's text, encodings and ids, whatever the size of the split."""
    parts, dropped, apart = [], [], 0
    totals = {"rows": 0, "truncated": 0, "longest": 0, "longest_uncut": 0}
    with atomic_path(out_dir) as tmp, pq.ParquetFile(rows_path) as source:
        tmp.mkdir()
        for batch in source.iter_batches(batch_size=shard_rows):
            encoded = encode_split(batch.to_pandas(), tokenizer, layout, max_seq_len, split)
            rows = encoded.rows
            _write_shard(tmp, len(parts), rows, metadata)
            parts.append(rows.num_rows)
            dropped.append(encoded.dropped)
            apart += encoded.targets_apart
            if rows.num_rows:
                totals["rows"] += rows.num_rows
                totals["truncated"] += pc.sum(rows["context_truncated"]).as_py()
                totals["longest"] = max(totals["longest"], pc.max(rows["n_tokens"]).as_py())
                totals["longest_uncut"] = max(
                    totals["longest_uncut"], pc.max(rows["untruncated_tokens"]).as_py()
                )
        if not parts:  # no rows: one empty shard, as write_shards writes
            _write_shard(tmp, 0, SCHEMA.empty_table(), metadata)
            parts.append(0)
            dropped.append(pd.DataFrame(columns=DROPPED_COLUMNS))
    return ShardsWritten(
        shards=len(parts),
        dropped=pd.concat(dropped, ignore_index=True),
        targets_apart=apart,
        **totals,
    )


def read_shards(
    shard_dir: str | Path, columns: Sequence[str] | None = None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read every shard of a split back as one table (only ``columns`` when given, such as the
    lengths without the token lists), with the shards' koqa metadata."""
    paths = sorted(Path(shard_dir).glob("part-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{shard_dir}: no part-*.parquet shards")
    tables = [pq.read_table(path, columns=columns) for path in paths]
    metadata = {
        key.decode().removeprefix("koqa."): value.decode()
        for key, value in (tables[0].schema.metadata or {}).items()
        if key.startswith(b"koqa.")
    }
    for path, table in zip(paths, tables, strict=True):
        if table.schema.metadata != tables[0].schema.metadata:
            raise ValueError(f"{path}: shard metadata differs from {paths[0]} (mixed tokenizers?)")
    return pa.concat_tables(tables).to_pandas(), metadata
