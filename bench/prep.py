"""Benchmark: ingest + clean + align + tokenize + write of a Dacon-sized synthetic training set,
against the time its tokenizer needs to encode the texts the shards hold, once.

    .venv/bin/python bench/prep.py [--rows 33716] [--tokenizer DIR] [--chat-template]
                                   [--out results/bench/prep.json]

The synthetic set has the contest's size (33,716 training rows) and shape: each context joins three
raw contexts of the embedded sample (noise included) into about 900 characters and carries 2-4 of
their questions, like the real data. It is written as a CSV and read back by the ingest stage. The
tokenizer is the pipeline's tiny byte-level BPE (``model.tiny.vocab_size``, trained on the sample),
or any model directory's (``--tokenizer``, with its chat template under ``--chat-template``). The
options are the default ``config.yaml``.

Measured, in one run:

- koqa: :func:`koqa.data.ingest.read_records` + :func:`koqa.data.clean.clean_table` +
  :func:`koqa.data.shards.encode_split` + :func:`koqa.data.shards.write_shards`;
- the floor: one ``encode_batch_fast`` call of the tokenizer on the distinct texts the shards hold
  as whole-text encodings: every row's prompt (its kept context) and every prompt + answer. No
  tokenization that gives those ids can encode less.

The result, ``results/bench/prep.json``, holds koqa's rows per second (``figure``), its ``seconds``,
the floor's (``floor_seconds``) and their ``ratio`` (koqa / floor; the target is at most 1.5), and,
for scale, the time to encode the distinct contexts alone once (``contexts_seconds``).
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

from koqa.config import load_config
from koqa.data.clean import clean_table
from koqa.data.ingest import read_records
from koqa.data.prompt import PromptLayout, build_layout
from koqa.data.shards import EncodedSplit, encode_split, write_shards
from koqa.data.synonyms import load_synonyms
from koqa.data.tokenizer import load_text_tokenizer
from koqa.files import write_json
from koqa.model.basemodel import train_bpe_tokenizer

REPO = Path(__file__).resolve().parents[1]
DACON_ROWS = 33_716
PARTS_PER_CONTEXT = 3
QUESTIONS_PER_CONTEXT = (2, 3, 3, 4)  # mean 3, as in the sample
SEED = 20240701


def synthetic_set(sample: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` training rows (``id,context,question,answer``) whose contexts each join three
    distinct sample contexts."""
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
    frame = pd.DataFrame.from_records(records)
    frame.insert(0, "id", [f"BENCH_{i:05d}" for i in range(len(frame))])
    return frame


def koqa_prepare(
    csv_path, options, synonyms, tokenizer, layout, max_seq_len, out_dir, shard_rows
) -> tuple[pd.DataFrame, EncodedSplit]:
    """The pipeline's ingest + clean (and align) + tokenize + write; the kept rows and shards."""
    raw = read_records(csv_path, required=("answer",))
    kept = clean_table(raw, options, labelled=True, synonyms=synonyms).kept
    encoded = encode_split(kept, tokenizer, layout, max_seq_len, "train")
    write_shards(encoded.rows, out_dir, shard_rows, {"tokenizer": tokenizer.fingerprint})
    return kept, encoded


def shard_texts(kept: pd.DataFrame, encoded: EncodedSplit, layout: PromptLayout) -> list[str]:
    """The distinct texts the shards hold as whole-text encodings: prompts and prompt + answer."""
    rows = kept.set_index("id").loc[encoded.rows.column("id").to_pylist()]
    starts = encoded.rows.column("context_start").to_pylist()
    ends = encoded.rows.column("context_end").to_pylist()
    prompts = [
        layout.prompt_text(context[start:end], question)
        for context, question, start, end in zip(
            rows["context"], rows["question"], starts, ends, strict=True
        )
    ]
    wholes = [p + layout.target_text(t) for p, t in zip(prompts, rows["target"], strict=True)]
    return list(dict.fromkeys(prompts + wholes))


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=DACON_ROWS)
    parser.add_argument("--tokenizer", type=Path, help="a model directory (default: tiny BPE)")
    parser.add_argument("--chat-template", action="store_true", help="use its chat template")
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
        csv_path = scratch / "train.csv"
        frame.to_csv(csv_path, index=False)
        tokenizer_dir = args.tokenizer
        if tokenizer_dir is None:
            tokenizer_dir = scratch / "tokenizer"
            texts = [*sample["context"], *sample["question"], *sample["answer"].fillna("")]
            vocab_size = config["model"]["tiny"]["vocab_size"]
            train_bpe_tokenizer(texts, vocab_size).save_pretrained(tokenizer_dir)
        tokenizer = load_text_tokenizer(tokenizer_dir)
        layout = build_layout(
            prompt["template"],
            tokenizer,
            args.chat_template,
            prompt["system"],
            prompt["chat_template_kwargs"],
        )
        (kept, encoded), seconds = _timed(
            koqa_prepare,
            csv_path,
            options,
            synonyms,
            tokenizer,
            layout,
            prompt["max_seq_len"],
            scratch / "koqa",
            config["tokenize"]["shard_rows"],
        )
        print(f"koqa: {seconds:.1f} s", file=sys.stderr)
        encode = tokenizer.tokenizer.encode_batch_fast
        texts = shard_texts(kept, encoded, layout)
        _, floor_seconds = _timed(encode, texts, add_special_tokens=layout.add_special_tokens)
        print(f"floor: {floor_seconds:.1f} s", file=sys.stderr)
        contexts = kept["context"].unique().tolist()
        _, contexts_seconds = _timed(encode, contexts, add_special_tokens=False)
    result = {
        "name": "prep",
        "what": "ingest + clean + align + tokenize + write shards of a Dacon-sized training set",
        "unit": "rows/s",
        "figure": round(len(frame) / seconds, 1),
        "seconds": round(seconds, 2),
        "baseline": "the tokenizer encoding the shards' distinct whole texts once, in one batch",
        "floor_seconds": round(floor_seconds, 2),
        "ratio": round(seconds / floor_seconds, 2),
        "floor_texts": len(texts),
        "contexts_seconds": round(contexts_seconds, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows": len(frame),
        "rows_kept": encoded.rows.num_rows,
        "rows_dropped": len(encoded.dropped),
        "contexts_truncated": sum(encoded.rows.column("context_truncated").to_pylist()),
        "contexts": int(frame["context"].nunique()),
        "mean_context_chars": round(float(frame["context"].str.len().mean()), 1),
        "tokenizer": str(args.tokenizer or "tiny byte-level BPE")
        + f", vocab {tokenizer.tokenizer.get_vocab_size()}"
        + (", chat template" if args.chat_template else ""),
        "max_seq_len": prompt["max_seq_len"],
        "cpu_cores": len(os.sched_getaffinity(0)),
    }
    write_json(result, args.out)
    print(result, file=sys.stderr)


if __name__ == "__main__":
    main()
