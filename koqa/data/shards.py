"""Turn cleaned rows into token ids with answer-only labels, stored as Parquet shards.

A row becomes ``[bos] prefix context suffix | separator answer eos`` where ``prefix``, ``suffix``
(with the question) and ``separator`` come from the prompt layout (:mod:`koqa.data.prompt`). Prompt
tokens get the label -100, so the loss covers only the answer and the EOS token.

Truncation, when a row is longer than ``max_seq_len``: only the context is cut. For training rows
(``center_on_answer``) whose answer was aligned to the context, the kept window of context tokens is
centred on the answer so the model always sees what it must copy. Otherwise the start of the context
is kept (news puts the facts first): for unaligned answers, and for validation and test prompts,
whose window must not depend on where the answer is, or validation scores would flatter the model.
Each row records whether its context was cut, and how many tokens it would have needed uncut
(``untruncated_tokens``, for choosing ``max_seq_len``).

Speed: each distinct context is tokenized once (and its token offsets computed at most once, only
where the window must be centred on an answer), every kind of text in one batch (run in parallel by
the tokenizers library when the job has more than one thread, see :func:`koqa.runtime.configure_job`),
and the rows are assembled into flat NumPy arrays, never lists of Python ints.

Each split is a directory of ``part-NNNNN.parquet`` files of ``shard_rows`` rows; every shard's schema
metadata carries the tokenizer fingerprint, prompt layout hash and ``max_seq_len``. ``n_tokens`` is
what length-grouped batching sorts by.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from koqa.data.prompt import PromptLayout
from koqa.data.tokenizer import TextTokenizer
from koqa.files import atomic_path

IGNORE_INDEX = -100
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("prompt_len", pa.int32()),
        ("n_tokens", pa.int32()),
        ("untruncated_tokens", pa.int32()),
        ("context_truncated", pa.bool_()),
    ]
)


def context_window(
    offsets: list[tuple[int, int]], budget: int, answer_span: tuple[int, int] | None
) -> tuple[int, int]:
    """Token range [lo, hi) of at most ``budget`` tokens, centred on ``answer_span`` (characters)."""
    n = len(offsets)
    if n <= budget:
        return 0, n
    if answer_span is None:
        return 0, budget
    first = next(i for i, (_, end) in enumerate(offsets) if end > answer_span[0])
    last = max(i for i, (start, _) in enumerate(offsets) if start < answer_span[1])
    lo = max(0, min((first + last + 1 - budget) // 2, n - budget))
    return lo, lo + budget


def _encode(tokenizer: TextTokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids of each text (no special tokens), tokenized in one batch."""
    encodings = tokenizer.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return [np.asarray(encoding.ids, dtype=np.int32) for encoding in encodings]


def _answer_spans(frame: pd.DataFrame) -> list[tuple[int, int] | None]:
    """Each labelled row's target span in its context (None when the answer was not aligned)."""
    return [
        None if pd.isna(start) or start < 0 else (int(start), int(start) + len(target))
        for start, target in zip(
            frame["answer_start"].tolist(), frame["target"].tolist(), strict=True
        )
    ]


def encode_rows(
    frame: pd.DataFrame,
    tokenizer: TextTokenizer,
    layout: PromptLayout,
    max_seq_len: int,
    center_on_answer: bool = True,
) -> pa.Table:
    """Token ids and labels for each row of ``frame`` (``target`` column present = labelled);
    ``center_on_answer``: cut long contexts around the answer (training rows) or keep their start."""
    n_rows = len(frame)
    labelled = "target" in frame.columns
    head = np.asarray(
        ([tokenizer.bos_id] if layout.add_bos and tokenizer.bos_id is not None else [])
        + tokenizer.encode(layout.prefix),
        dtype=np.int32,
    )
    eos = np.asarray([tokenizer.eos_id], dtype=np.int32)
    context_of_row, contexts = pd.factorize(frame["context"])
    context_ids = _encode(tokenizer, list(contexts))
    tails = _encode(tokenizer, [layout.question_text(q) for q in frame["question"].tolist()])
    if labelled:
        answers = [
            np.concatenate([ids, eos])
            for ids in _encode(
                tokenizer, [layout.answer_separator + t for t in frame["target"].tolist()]
            )
        ]
        spans = _answer_spans(frame) if center_on_answer else [None] * n_rows
    else:
        answers = [np.empty(0, dtype=np.int32)] * n_rows
        spans = [None] * n_rows

    windows, prompt_lens, untruncated = [], np.empty(n_rows, np.int32), np.empty(n_rows, np.int32)
    context_offsets: dict[int, list[tuple[int, int]]] = {}  # character span of each token
    for row, (index, tail, answer, span) in enumerate(
        zip(context_of_row, tails, answers, spans, strict=True)
    ):
        n_context = len(context_ids[index])
        budget = max_seq_len - len(head) - len(tail) - len(answer)
        if budget < 1:
            raise ValueError(
                f"row {frame['id'].iloc[row]}: question and answer alone need "
                f"{max_seq_len - budget + 1} tokens; raise prompt.max_seq_len (now {max_seq_len})"
            )
        if n_context <= budget:
            lo, hi = 0, n_context
        elif span is None:
            lo, hi = 0, budget
        else:  # offsets only where the window must be centred on the answer
            if index not in context_offsets:
                encoding = tokenizer.tokenizer.encode(contexts[index], add_special_tokens=False)
                context_offsets[index] = encoding.offsets
            lo, hi = context_window(context_offsets[index], budget, span)
        windows.append((lo, hi))
        prompt_lens[row] = len(head) + (hi - lo) + len(tail)
        untruncated[row] = len(head) + n_context + len(tail) + len(answer)

    answer_lens = np.fromiter((len(a) for a in answers), np.int32, n_rows)
    n_tokens = prompt_lens + answer_lens
    offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(n_tokens, out=offsets[1:])
    input_ids = np.empty(offsets[-1], dtype=np.int32)
    labels = np.full(offsets[-1], IGNORE_INDEX, dtype=np.int32)
    for row, (index, (lo, hi), tail, answer) in enumerate(
        zip(context_of_row, windows, tails, answers, strict=True)
    ):
        start = offsets[row]
        prompt = np.concatenate([head, context_ids[index][lo:hi], tail])
        input_ids[start : start + len(prompt)] = prompt
        input_ids[start + len(prompt) : offsets[row + 1]] = answer
        labels[start + len(prompt) : offsets[row + 1]] = answer

    context_lens = np.fromiter((len(context_ids[i]) for i in context_of_row), np.int32, n_rows)
    kept = np.fromiter((hi - lo for lo, hi in windows), np.int32, n_rows)
    pa_offsets = pa.array(offsets)
    return pa.table(
        [
            pa.array(frame["id"].astype(str).tolist(), pa.string()),
            pa.ListArray.from_arrays(pa_offsets, pa.array(input_ids)),
            pa.ListArray.from_arrays(pa_offsets, pa.array(labels)),
            pa.array(prompt_lens),
            pa.array(n_tokens),
            pa.array(untruncated),
            pa.array(kept < context_lens),
        ],
        schema=SCHEMA,
    )


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
