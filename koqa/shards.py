"""Turn cleaned rows into token ids with answer-only labels, stored as Parquet shards.

A row becomes ``[bos] prefix context suffix | answer eos`` where ``prefix`` and ``suffix`` come from
the prompt template (``{context}`` splits it; ``{question}`` is filled in). Prompt tokens get the
label -100, so the loss covers only the answer and the EOS token.

Truncation, when a row is longer than ``max_seq_len``: only the context is cut. For a row whose answer
was aligned to the context, the kept window of context tokens is centred on the answer so the model
always sees what it must copy; otherwise (test prompts, unaligned answers) the beginning of the
context is kept. Each row records whether its context was truncated.

Each split is a directory of ``part-NNNNN.parquet`` files of ``shard_rows`` rows; every shard's schema
metadata carries the tokenizer fingerprint, template hash and ``max_seq_len``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from koqa.files import atomic_path
from koqa.tokenizer import TextTokenizer

IGNORE_INDEX = -100
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("prompt_len", pa.int32()),
        ("n_tokens", pa.int32()),
        ("context_truncated", pa.bool_()),
    ]
)


def template_parts(template: str) -> tuple[str, str]:
    """Split a prompt template at ``{context}`` into its prefix and suffix (suffix has {question})."""
    if template.count("{context}") != 1 or "{question}" not in template.split("{context}")[1]:
        raise ValueError("prompt template needs one {context} followed by {question}")
    prefix, suffix = template.split("{context}")
    return prefix, suffix


def template_hash(template: str) -> str:
    """A short content hash of the template, stored with the shards."""
    return hashlib.sha256(template.encode()).hexdigest()[:16]


def _context_window(
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


def encode_rows(
    frame: pd.DataFrame, tokenizer: TextTokenizer, template: str, max_seq_len: int
) -> pd.DataFrame:
    """Token ids and labels for each row of ``frame`` (``target`` column present = labelled)."""
    prefix, suffix = template_parts(template)
    head = ([tokenizer.bos_id] if tokenizer.bos_id is not None else []) + tokenizer.encode(prefix)
    labelled = "target" in frame.columns
    contexts = list(pd.unique(frame["context"]))
    encoded = dict(
        zip(
            contexts,
            tokenizer.tokenizer.encode_batch(contexts, add_special_tokens=False),
            strict=True,
        )
    )
    suffixes = tokenizer.tokenizer.encode_batch(
        [suffix.format(question=q) for q in frame["question"]], add_special_tokens=False
    )
    answers = (
        tokenizer.tokenizer.encode_batch(
            [" " + t for t in frame["target"]], add_special_tokens=False
        )
        if labelled
        else [None] * len(frame)
    )
    spans = (
        [
            None if pd.isna(start) or start < 0 else (int(start), int(start) + len(target))
            for start, target in zip(frame["answer_start"], frame["target"], strict=True)
        ]
        if labelled
        else [None] * len(frame)
    )

    rows = []
    for row_id, context, tail, answer, span in zip(
        frame["id"], frame["context"], suffixes, answers, spans, strict=True
    ):
        answer_ids = [*answer.ids, tokenizer.eos_id] if answer is not None else []
        budget = max_seq_len - len(head) - len(tail.ids) - len(answer_ids)
        if budget < 1:
            raise ValueError(
                f"row {row_id}: question and answer alone need {max_seq_len - budget + 1} tokens; "
                f"raise prompt.max_seq_len (now {max_seq_len})"
            )
        context_enc = encoded[context]
        lo, hi = _context_window(context_enc.offsets, budget, span)
        prompt = head + context_enc.ids[lo:hi] + tail.ids
        rows.append(
            {
                "id": row_id,
                "input_ids": prompt + answer_ids,
                "labels": [IGNORE_INDEX] * len(prompt) + answer_ids,
                "prompt_len": len(prompt),
                "n_tokens": len(prompt) + len(answer_ids),
                "context_truncated": hi - lo < len(context_enc.ids),
            }
        )
    return pd.DataFrame(rows, columns=SCHEMA.names)


def write_shards(
    rows: pd.DataFrame, out_dir: str | Path, shard_rows: int, metadata: dict[str, str]
) -> int:
    """Write ``rows`` as Parquet shards of ``shard_rows`` rows into ``out_dir``; return the count."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        table = pa.Table.from_pandas(rows, schema=SCHEMA, preserve_index=False)
        table = table.replace_schema_metadata({f"koqa.{k}": str(v) for k, v in metadata.items()})
        n_shards = max(1, -(-len(rows) // shard_rows))
        for index in range(n_shards):
            part = table.slice(index * shard_rows, shard_rows)
            pq.write_table(part, tmp / f"part-{index:05d}.parquet")
    return n_shards


def read_shards(shard_dir: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read every shard of a split back as one table, with the shards' koqa metadata."""
    paths = sorted(Path(shard_dir).glob("part-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{shard_dir}: no part-*.parquet shards")
    tables = [pq.read_table(path) for path in paths]
    metadata = {
        key.decode().removeprefix("koqa."): value.decode()
        for key, value in (tables[0].schema.metadata or {}).items()
        if key.startswith(b"koqa.")
    }
    for path, table in zip(paths, tables, strict=True):
        if table.schema.metadata != tables[0].schema.metadata:
            raise ValueError(f"{path}: shard metadata differs from {paths[0]} (mixed tokenizers?)")
    return pa.concat_tables(tables).to_pandas(), metadata
