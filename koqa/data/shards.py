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
many tokens it needs uncut (``untruncated_tokens``, for choosing ``max_seq_len``: exact for uncut
rows; for cut ones the sum of its pieces, its prompt without context, its context alone and its
target, which may differ from the whole by a token or two).

**Too long even without context**: a training or validation row whose prompt without its context
(and, for training, its answer) leaves no room for the context is dropped with its reason, in the
split's dropped table (a dropped validation row is scored as a missing prediction); a test row
stops the run, naming it.

**Speed.** Every batch goes through the ``tokenizers`` backend in one call (parallel when the job
has several threads, see :func:`koqa.runtime.configure_job`): first the pieces that size the cuts
(each distinct context, every row's prompt without context, every training target), token offsets
only for the contexts that must be cut, then the final whole texts once (a row whose cut text still
does not fit is cut shorter and encoded again). The rows are assembled into flat NumPy arrays.

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
    """The rows of one split on their way to token ids: the token counts of their pieces, to size
    the cuts; rounds of cutting and whole-text encoding until every row fits; the targets."""

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
        self.prompts: list = [None] * n_rows
        self.fulls: list = [None] * n_rows  # whole encodings of prompt + target
        self.windows = np.zeros((n_rows, 2), np.int64)  # kept characters of each context
        self.windows[:, 1] = [len(self.contexts[i]) for i in self.context_of_row]

        # token counts of the pieces: each context alone, each row's prompt without its context
        # (what must fit however short the cut) and, for training rows, its target
        self.context_tokens = self._lengths(self.contexts, special=False)[self.context_of_row]
        self.kept_tokens = self.context_tokens.copy()
        self.overhead = self._lengths([layout.prompt_text("", q) for q in self.questions])
        self.answer_tokens = np.zeros(n_rows, np.int64)
        if self.training:
            self.answer_tokens = self._lengths(self.targets, special=False) + len(layout.end_ids)
        # the context tokens each row may keep
        self.limit = np.minimum(
            max_seq_len - self.overhead - self.answer_tokens, self.context_tokens
        )

    def _lengths(self, texts: list[str], special: bool | None = None) -> np.ndarray:
        """Token counts of ``texts`` (with the layout's special tokens unless ``special``)."""
        add = self.layout.add_special_tokens if special is None else special
        return _lengths(self.tokenizer.tokenizer.encode_batch_fast(texts, add_special_tokens=add))

    def _drop_rows_without_room(self, rows: np.ndarray) -> np.ndarray:
        """Drop the ``rows`` whose limit leaves no context token (a test row stops the run);
        return the others."""
        no_room = self.limit[rows] < np.minimum(self.context_tokens[rows], 1)
        what = "prompt without its context" + (" and the answer" if self.training else "")
        for r in rows[no_room]:
            needed = int(self.overhead[r] + self.answer_tokens[r])
            if self.split == "test":
                raise ValueError(
                    f"row {self.ids[r]}: the question is too long: the {what} needs {needed} "
                    f"tokens of prompt.max_seq_len {self.max_seq_len}; raise prompt.max_seq_len"
                )
            detail = f"the {what} needs {needed} of {self.max_seq_len} tokens"
            self.dropped.append((self.ids[r], "question_too_long", detail))
        self.alive[rows[no_room]] = False
        return rows[~no_room]

    def _cut(self, rows: np.ndarray) -> None:
        """Place the windows of the ``rows`` whose limit is below their context's tokens."""
        cut = rows[self.limit[rows] < self.context_tokens[rows]]
        self.offsets.fetch({int(self.context_of_row[r]) for r in cut})
        for r in cut:
            context = int(self.context_of_row[r])
            starts, ends = self.offsets.spans[context]
            lo, hi = context_window(starts, ends, int(self.limit[r]), self.spans[r])
            self.kept_tokens[r] = hi - lo
            self.windows[r] = _char_window(self.contexts[context], starts, ends, lo, hi)

    def _encode(self, rows: np.ndarray) -> np.ndarray:
        """Encode the whole texts of ``rows``; return the tokens of each that must fit in
        ``max_seq_len`` (training rows with their target, other rows their prompt)."""
        texts = [
            self.layout.prompt_text(
                self.contexts[self.context_of_row[r]][slice(*self.windows[r])], self.questions[r]
            )
            for r in rows
        ]
        encode = self.tokenizer.tokenizer.encode_batch_fast
        special = self.layout.add_special_tokens
        prompts = encode(texts, add_special_tokens=special)
        for r, encoding in zip(rows, prompts, strict=True):
            self.prompts[r] = encoding.ids
        if not self.labelled:
            return _lengths(prompts)
        with_targets = [text + self.targets[r] for text, r in zip(texts, rows, strict=True)]
        fulls = encode(with_targets, add_special_tokens=special)
        for r, encoding in zip(rows, fulls, strict=True):
            self.fulls[r] = encoding.ids
        return _lengths(fulls) + len(self.layout.end_ids) if self.training else _lengths(prompts)

    def _target(self, r: int) -> list[int] | None:
        """The target ids of row ``r``: what follows its prompt in the whole encoding, then
        ``end_ids``; None for a training row whose prompt's last token merges with it."""
        prompt, full = self.prompts[r], self.fulls[r]
        if full[: len(prompt)] == prompt:
            return full[len(prompt) :] + list(self.layout.end_ids)
        if self.training:
            boundary = full[len(prompt) - 1 : len(prompt) + 1]
            detail = (
                f"the prompt ends in token {prompt[-1]}, which the whole text with the answer "
                f"encodes as {boundary}"
            )
            self.dropped.append((self.ids[r], "answer_merges_with_prompt", detail))
            return None
        # a validation row keeps its prompt; its target only feeds the validation loss
        self.targets_apart += 1
        return self.tokenizer.encode(self.targets[r]) + list(self.layout.end_ids)

    def run(self) -> EncodedSplit:
        """Cut and encode until every row fits, then assemble the table."""
        todo = self._drop_rows_without_room(np.arange(len(self.ids)))
        while todo.size:
            self._cut(todo)
            over = self._encode(todo) - self.max_seq_len
            # a cut text that encodes to more tokens than counted does not fit: cut it shorter
            todo, over = todo[over > 0], over[over > 0]
            self.limit[todo] = np.minimum(self.limit[todo], self.kept_tokens[todo]) - over
            todo = self._drop_rows_without_room(todo)
        answers = []
        for r in np.flatnonzero(self.alive):
            target = self._target(r) if self.labelled else []
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
            self.context_tokens[kept],
            self.kept_tokens[kept],
            self.overhead[kept],
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
    prompts: list[list[int]],
    answers: list[list[int]],
    windows: np.ndarray,
    context_tokens: np.ndarray,
    kept_tokens: np.ndarray,
    overhead: np.ndarray,
) -> pa.Table:
    """The shard table from each row's prompt ids and answer ids, as flat NumPy arrays; a cut
    row's ``untruncated_tokens`` is the sum of its pieces (prompt without context, context alone,
    target)."""
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
