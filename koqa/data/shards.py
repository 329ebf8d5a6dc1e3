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
many tokens it would have needed uncut (``untruncated_tokens``: exact for uncut rows; for cut ones
the sum of the context's tokens alone and the rest of the row, for choosing ``max_seq_len``).

**Too long even without context**: a training or validation row whose prompt without its context
(and, for training, its answer) leaves no room for the context is dropped with its reason, in the
split's dropped table (a dropped validation row is scored as a missing prediction); a test row
stops the run, naming it.

**Speed.** Every batch goes through the ``tokenizers`` backend in one call (parallel when the job
has several threads, see :func:`koqa.runtime.configure_job`): first each distinct context and every
row's prompt without context (to size the cuts), token offsets only for contexts that must be cut,
then the final texts once; the rows are assembled into flat NumPy arrays.

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
import pyarrow.parquet as pq

from koqa.data.prompt import PromptLayout
from koqa.data.tokenizer import TextTokenizer
from koqa.files import atomic_path

IGNORE_INDEX = -100
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


def _char_window(context: str, starts: np.ndarray, ends: np.ndarray, lo: int, hi: int):
    """The characters [start, end) of tokens [lo, hi), without whitespace at either edge."""
    start, end = int(starts[lo]), int(ends[hi - 1])
    text = context[start:end]
    return start + len(text) - len(text.lstrip()), end - (len(text) - len(text.rstrip()))


def _lengths(encodings: list) -> np.ndarray:
    return np.fromiter((len(e) for e in encodings), np.int64, len(encodings))


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


def _too_long(split: str, row_id: str, needed: int, max_seq_len: int) -> tuple[str, str, str]:
    """The dropped-table record of a row whose question leaves no room for its context; a test
    row stops the run instead."""
    what = "prompt without its context" + (" and the answer" if split == "train" else "")
    if split == "test":
        raise ValueError(
            f"row {row_id}: the question is too long: the {what} needs {needed} tokens of "
            f"prompt.max_seq_len {max_seq_len}; raise prompt.max_seq_len"
        )
    return row_id, "question_too_long", f"the {what} needs {needed} of {max_seq_len} tokens"


def encode_split(
    frame: pd.DataFrame,
    tokenizer: TextTokenizer,
    layout: PromptLayout,
    max_seq_len: int,
    split: str,
) -> EncodedSplit:
    """Token ids and labels of the rows of ``frame`` for ``split`` (train, validation or test; the
    first two need ``target`` and ``answer_start`` columns), and the rows dropped."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    n_rows = len(frame)
    training, labelled = split == "train", split != "test"
    if n_rows:
        layout.check_rendering(frame["context"].iloc[0], frame["question"].iloc[0])
    backend, special = tokenizer.tokenizer, layout.add_special_tokens
    row_ids = frame["id"].astype(str).tolist()
    context_of_row, contexts = pd.factorize(frame["context"])
    contexts = list(contexts)
    questions = frame["question"].tolist()
    targets = [layout.target_text(t) for t in frame["target"].tolist()] if labelled else []
    spans = _answer_spans(frame) if training else [None] * n_rows

    # token counts of the pieces, to size the cuts: each context alone, each row's prompt without
    # its context (what must fit however short the cut), each training answer
    context_tokens = _lengths(backend.encode_batch_fast(contexts, add_special_tokens=False))
    row_context_tokens = context_tokens[context_of_row]
    overhead = _lengths(
        backend.encode_batch_fast(
            [layout.prompt_text("", q) for q in questions], add_special_tokens=special
        )
    )
    answer_tokens = np.zeros(n_rows, np.int64)
    if training:
        answer_tokens = _lengths(backend.encode_batch_fast(targets, add_special_tokens=False))
        answer_tokens += len(layout.end_ids)
    # context tokens that may be kept; rows with room for none are dropped
    limit = np.minimum(max_seq_len - overhead - answer_tokens, row_context_tokens)
    alive = limit >= np.minimum(row_context_tokens, 1)
    dropped = [
        _too_long(split, row_ids[r], int(overhead[r] + answer_tokens[r]), max_seq_len)
        for r in np.flatnonzero(~alive)
    ]

    windows = np.zeros((n_rows, 2), np.int64)  # kept characters of each context
    windows[:, 1] = [len(contexts[i]) for i in context_of_row]
    kept_tokens = row_context_tokens.copy()
    prompts: list = [None] * n_rows
    fulls: list = [None] * n_rows
    offsets = _ContextOffsets(tokenizer, contexts)
    todo = np.flatnonzero(alive)
    while todo.size:
        cut = [r for r in todo if limit[r] < row_context_tokens[r]]
        offsets.fetch({int(context_of_row[r]) for r in cut})
        for r in cut:
            starts, ends = offsets.spans[int(context_of_row[r])]
            lo, hi = context_window(starts, ends, int(limit[r]), spans[r])
            kept_tokens[r] = hi - lo
            windows[r] = _char_window(contexts[context_of_row[r]], starts, ends, lo, hi)
        texts = [
            layout.prompt_text(contexts[context_of_row[r]][slice(*windows[r])], questions[r])
            for r in todo
        ]
        encoded = backend.encode_batch_fast(texts, add_special_tokens=special)
        prompts_of_todo = [e.ids for e in encoded]
        lengths = _lengths(encoded)
        if labelled:
            full = backend.encode_batch_fast(
                [text + targets[r] for text, r in zip(texts, todo, strict=True)],
                add_special_tokens=special,
            )
            for r, encoding in zip(todo, full, strict=True):
                fulls[r] = encoding.ids
            if training:
                lengths = _lengths(full) + len(layout.end_ids)
        for r, ids in zip(todo, prompts_of_todo, strict=True):
            prompts[r] = ids
        # a cut text that encodes to more tokens than counted does not fit: cut it shorter
        over = lengths - max_seq_len
        todo, over = todo[over > 0], over[over > 0]
        limit[todo] = np.minimum(limit[todo], kept_tokens[todo]) - over
        no_room = limit[todo] < np.minimum(row_context_tokens[todo], 1)
        for r, needed in zip(todo[no_room], lengths[lengths > max_seq_len][no_room], strict=True):
            dropped.append(_too_long(split, row_ids[r], int(needed), max_seq_len))
        alive[todo[no_room]] = False
        todo = todo[~no_room]

    answers, targets_apart = [], 0
    for r in np.flatnonzero(alive):
        prompt, full = prompts[r], fulls[r]
        if not labelled:
            answers.append([])
        elif full[: len(prompt)] == prompt:
            answers.append(full[len(prompt) :] + list(layout.end_ids))
        elif training:
            dropped.append(
                (
                    row_ids[r],
                    "answer_merges_with_prompt",
                    f"the prompt ends in token {prompt[-1]}, which the whole text with the answer "
                    f"encodes as {full[len(prompt) - 1 : len(prompt) + 1]}",
                )
            )
            alive[r] = False
        else:  # a validation row keeps its prompt; its target only feeds the validation loss
            answers.append(tokenizer.encode(targets[r]) + list(layout.end_ids))
            targets_apart += 1
    kept = np.flatnonzero(alive)
    table = _assemble(
        [row_ids[r] for r in kept],
        [prompts[r] for r in kept],
        answers,
        windows[kept],
        row_context_tokens[kept],
        kept_tokens[kept],
        overhead[kept],
    )
    dropped_table = pd.DataFrame(dropped, columns=DROPPED_COLUMNS)
    return EncodedSplit(table, dropped_table, targets_apart)


def _assemble(
    row_ids: list[str],
    prompts: list[list[int]],
    answers: list[list[int]],
    windows: np.ndarray,
    context_tokens: np.ndarray,
    kept_tokens: np.ndarray,
    overhead: np.ndarray,
) -> pa.Table:
    """The shard table from each row's prompt ids and answer ids, as flat NumPy arrays."""
    n_rows = len(row_ids)
    prompt_lens = _lengths(prompts)
    answer_lens = _lengths(answers)
    n_tokens = prompt_lens + answer_lens
    offsets = np.zeros(n_rows + 1, np.int64)
    np.cumsum(n_tokens, out=offsets[1:])
    input_ids = np.fromiter(
        chain.from_iterable(chain.from_iterable(zip(prompts, answers, strict=True))),
        np.int32,
        int(offsets[-1]),
    )
    row_of_token = np.repeat(np.arange(n_rows), n_tokens)
    in_prompt = np.arange(offsets[-1]) - offsets[row_of_token] < prompt_lens[row_of_token]
    labels = np.where(in_prompt, IGNORE_INDEX, input_ids).astype(np.int32)
    truncated = kept_tokens < context_tokens
    untruncated = np.where(truncated, overhead + context_tokens + answer_lens, n_tokens)
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


def write_shards(
    rows: pa.Table, out_dir: str | Path, shard_rows: int, metadata: dict[str, str]
) -> int:
    """Write ``rows`` as Parquet shards of ``shard_rows`` rows into ``out_dir``; return the count."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        table = rows.replace_schema_metadata({f"koqa.{k}": str(v) for k, v in metadata.items()})
        n_shards = max(1, -(-len(rows) // shard_rows))
        for index in range(n_shards):
            part = table.slice(index * shard_rows, shard_rows)
            pq.write_table(part, tmp / f"part-{index:05d}.parquet")
    return n_shards


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
