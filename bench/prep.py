"""Benchmark: clean + tokenize throughput on a Dacon-sized synthetic set, against a naive loop.

    .venv/bin/python bench/prep.py [--rows 33716] [--out results/bench/prep.json]

The synthetic set has the contest's size (33,716 training rows) and shape: each context joins three
raw contexts of the embedded sample (noise included) into about 900 characters and carries 2-4 of
their questions, like the real data. The tokenizer is the pipeline's tiny byte-level BPE
(``model.tiny.vocab_size``), trained on the sample. The options are the default ``config.yaml``.

Measured, in one run, on the same rows:

- koqa: :func:`koqa.data.clean.clean_table` + :func:`koqa.data.shards.encode_rows` + :func:`write_shards`;
- the baseline: a naive per-row Python loop doing the same steps with the same building blocks
  (cleaning steps, aligner, tokenizer): clean the row's three fields, drop it if empty or a
  repeated context and question, align, tokenize context, question and answer, cut, write.

Both must produce identical shards (checked). The result, ``results/bench/prep.json``, holds koqa's
rows per second (``figure``), the baseline's (``baseline_figure``), their ``ratio`` and the ``unit``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from koqa.config import load_config
from koqa.data.align import Aligner
from koqa.data.clean import clean_table
from koqa.data.ingest import read_records
from koqa.data.prompt import PromptLayout, build_layout
from koqa.data.shards import IGNORE_INDEX, SCHEMA, context_window, encode_rows, write_shards
from koqa.data.synonyms import load_synonyms
from koqa.data.textnorm import build_steps, clean_text
from koqa.data.tokenizer import TextTokenizer, load_text_tokenizer
from koqa.files import write_json
from koqa.model.basemodel import train_bpe_tokenizer

REPO = Path(__file__).resolve().parents[1]
DACON_ROWS = 33_716
PARTS_PER_CONTEXT = 3
QUESTIONS_PER_CONTEXT = (2, 3, 3, 4)  # mean 3, as in the sample
SEED = 20240701


def synthetic_set(sample: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` training rows whose contexts each join three distinct sample contexts."""
    rng = random.Random(seed)
    by_context = {c: rows for c, rows in sample.groupby("context", sort=False)}
    contexts = list(by_context)
    used, records = set(), []
    while len(records) < n_rows:
        parts = tuple(rng.sample(contexts, PARTS_PER_CONTEXT))
        if parts in used:
            continue
        used.add(parts)
        context = rng.choice([" ", "\n"]).join(parts)
        pool = pd.concat([by_context[p] for p in parts]).drop_duplicates("question")
        take = min(rng.choice(QUESTIONS_PER_CONTEXT), len(pool), n_rows - len(records))
        for row in pool.sample(take, random_state=rng.randrange(2**31)).itertuples():
            records.append({"context": context, "question": row.question, "answer": row.answer})
    frame = pd.DataFrame.from_records(records).astype("string")
    frame.insert(0, "id", [f"BENCH_{i:05d}" for i in range(len(frame))])
    frame["id"] = frame["id"].astype("string")
    frame["answer_start"] = pd.NA
    frame["source_row"] = range(1, len(frame) + 1)
    return frame


def koqa_prepare(frame, options, synonyms, tokenizer, layout, max_seq_len, out_dir, shard_rows):
    """The pipeline's clean + tokenize + write."""
    kept = clean_table(frame, options, labelled=True, synonyms=synonyms).kept
    table = encode_rows(kept, tokenizer, layout, max_seq_len)
    write_shards(table, out_dir, shard_rows, {"tokenizer": tokenizer.fingerprint})
    return table


def naive_prepare(
    frame: pd.DataFrame,
    options: dict,
    synonyms: dict[str, str],
    tokenizer: TextTokenizer,
    layout: PromptLayout,
    max_seq_len: int,
    out_dir: Path,
    shard_rows: int,
) -> pa.Table:
    """The same steps, one row at a time."""
    steps = build_steps(options)
    aligner = Aligner(
        {clean_text(v, steps): clean_text(c, steps) for v, c in synonyms.items()},
        options["min_align_f1"],
    )
    head = [tokenizer.bos_id, *tokenizer.encode(layout.prefix)]
    seen, rows = set(), []
    for raw in frame.itertuples():
        context, question, answer = (
            clean_text(value if isinstance(value, str) else "", steps)
            for value in (raw.context, raw.question, raw.answer)
        )
        if not (context and question and answer) or (context, question) in seen:
            continue
        seen.add((context, question))
        alignment = aligner(context, answer)
        target = alignment.surface(context, answer)
        span = (alignment.start, alignment.start + len(target)) if alignment.start >= 0 else None
        context_encoding = tokenizer.tokenizer.encode(context, add_special_tokens=False)
        tail = tokenizer.encode(layout.question_text(question))
        answer_ids = [*tokenizer.encode(layout.answer_separator + target), tokenizer.eos_id]
        budget = max_seq_len - len(head) - len(tail) - len(answer_ids)
        lo, hi = context_window(context_encoding.offsets, budget, span)
        prompt = head + context_encoding.ids[lo:hi] + tail
        rows.append(
            {
                "id": raw.id,
                "input_ids": prompt + answer_ids,
                "labels": [IGNORE_INDEX] * len(prompt) + answer_ids,
                "prompt_len": len(prompt),
                "n_tokens": len(prompt) + len(answer_ids),
                "untruncated_tokens": len(head)
                + len(context_encoding.ids)
                + len(tail)
                + len(answer_ids),
                "context_truncated": hi - lo < len(context_encoding.ids),
            }
        )
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    write_shards(table, out_dir, shard_rows, {"tokenizer": tokenizer.fingerprint})
    return table


def _timed(function, *args) -> tuple[pa.Table, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=DACON_ROWS)
    parser.add_argument("--out", type=Path, default=REPO / "results/bench/prep.json")
    args = parser.parse_args()

    config = load_config(REPO / "config.yaml")  # the tiny model's settings
    options, prompt = config["clean"], config["prompt"]
    synonyms = load_synonyms(REPO / options["synonyms"]) if options["synonyms"] else {}
    sample = read_records(REPO / config["data"]["train"], required=("answer",))
    frame = synthetic_set(sample, args.rows, SEED)
    print(
        f"{len(frame)} rows, {frame['context'].nunique()} contexts of "
        f"{frame['context'].str.len().mean():.0f} characters on average",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        texts = [*sample["context"], *sample["question"], *sample["answer"].fillna("")]
        train_bpe_tokenizer(texts, config["model"]["tiny"]["vocab_size"]).save_pretrained(
            scratch / "tokenizer"
        )
        tokenizer = load_text_tokenizer(scratch / "tokenizer")
        layout = build_layout(
            prompt["template"], tokenizer, prompt["chat_template"], prompt["system"]
        )
        shared = (options, synonyms, tokenizer, layout, prompt["max_seq_len"])
        shard_rows = config["tokenize"]["shard_rows"]
        fast, seconds = _timed(koqa_prepare, frame, *shared, scratch / "koqa", shard_rows)
        print(f"koqa: {seconds:.1f} s", file=sys.stderr)
        naive, baseline_seconds = _timed(
            naive_prepare, frame, *shared, scratch / "naive", shard_rows
        )
        print(f"naive loop: {baseline_seconds:.1f} s", file=sys.stderr)
        kept = clean_table(frame, options, labelled=True, synonyms=synonyms).kept
        contexts = kept["context"].unique().tolist()
        _, floor_seconds = _timed(tokenizer.tokenizer.encode_batch_fast, contexts, False)
    if not fast.equals(naive):
        raise SystemExit("koqa and the naive loop produced different shards")
    result = {
        "name": "prep",
        "what": "clean + tokenize + write shards of a Dacon-sized synthetic training set",
        "unit": "rows/s",
        "figure": round(len(frame) / seconds, 1),
        "baseline": "naive per-row Python loop, same steps and output",
        "baseline_figure": round(len(frame) / baseline_seconds, 1),
        "ratio": round(baseline_seconds / seconds, 2),
        "seconds": round(seconds, 2),
        "baseline_seconds": round(baseline_seconds, 2),
        # the tokenizer alone, encoding each distinct cleaned context once in one batch: the part
        # of koqa's time that no reorganization of the Python around it removes
        "tokenizer_floor_seconds": round(floor_seconds, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows": len(frame),
        "rows_kept": fast.num_rows,
        "contexts": int(frame["context"].nunique()),
        "mean_context_chars": round(float(frame["context"].str.len().mean()), 1),
        "tokenizer": f"tiny byte-level BPE, vocab {len(tokenizer.tokenizer.get_vocab())}",
        "cpu_cores": len(os.sched_getaffinity(0)),
    }
    write_json(result, args.out)
    print(result, file=sys.stderr)


if __name__ == "__main__":
    main()
