"""Benchmark: ingest + clean + align + tokenize + write of a Dacon-sized synthetic training set,
against the time its tokenizer needs to encode the texts the shards hold, once (the floor).

    .venv/bin/python bench/prep.py [--rows 33716] [--rounds 2] [--scale 10] [--threads 2]
                                   [--tokenizer DIR] [--chat-template] [--out results/bench/prep.json]

The synthetic set has the contest's size (33,716 training rows) and shape: each context joins three
raw contexts of the embedded sample (noise included) into about 900 characters and carries 2-4 of
their questions, like the real data. It is written as a CSV and read back by the ingest stage. The
tokenizer is the pipeline's tiny byte-level BPE (``model.tiny.vocab_size``, trained on the sample),
or any model directory's (``--tokenizer``, with its chat template under ``--chat-template``). The
options are the default ``config.yaml``.

Measured, each arm in a fresh process (``--threads`` for the tokenizer, as a tokenize job gets),
the arms alternating ``--rounds`` times (the fastest run of each counts):

- koqa: :func:`koqa.data.ingest.read_records` + :func:`koqa.data.clean.clean_table`, the table
  written as the clean job writes it, then the tokenize job in its own process as in the pipeline
  (:func:`koqa.data.shards.encode_to_shards`: a chunk of rows read, encoded and written as a shard
  at a time), its start-up included;
- the floor: one ``encode_batch_fast`` call of the tokenizer on the distinct texts the shards hold
  as whole-text encodings: every row's prompt (its kept context) and every prompt + answer. No
  tokenization that gives those ids can encode less.
- scale (``--scale N``, 0 for none): koqa once more on N times the rows (a new synthetic set);
  its time over N times koqa's time must stay at most 11/10 for N = 10.

Each arm's peak memory is its process's peak resident set (Linux VmHWM), and ``base_rss_mb`` what
the process held before the work (imports); koqa's has each stage's (``stage_peak_rss_mb``). The
result, ``results/bench/prep.json``: ``figure`` is koqa's seconds, ``baseline_figure`` the floor's,
``ratio`` their quotient (target at most 1.5).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from benchlib import (
    REPO,
    add_arm_arguments,
    fastest,
    load_average,
    run_arms,
    run_as_arm,
    synthetic_set,
    write_result,
)

from koqa.config import load_config
from koqa.data.clean import clean_table
from koqa.data.ingest import read_records
from koqa.data.prompt import PromptLayout, build_layout
from koqa.data.shards import encode_to_shards, read_shards
from koqa.data.synonyms import load_synonyms
from koqa.data.tokenizer import TextTokenizer, load_text_tokenizer
from koqa.files import write_parquet
from koqa.runtime import configure_job, peak_rss_mb

DACON_ROWS = 33_716
ARMS = ("koqa", "floor", "scaled", "tokenize")  # tokenize: a stage of koqa and scaled
SEED = 20240701
TARGET_RATIO = 1.5
SCALE_SLACK = 1.1  # N times the rows in at most 1.1 N times the time


def clean_stage(csv_path: Path, options: dict, synonyms: dict, rows_path: Path) -> float | None:
    """The pipeline's ingest + clean (and align), its table written as the clean job writes it;
    the process's peak memory (it holds the whole table: duplicates are found across all rows)."""
    raw = read_records(csv_path, required=("answer",))
    kept = clean_table(raw, options, labelled=True, synonyms=synonyms).kept
    write_parquet(kept, rows_path)
    return peak_rss_mb()


def tokenize_stage(args: argparse.Namespace, of: str) -> dict:
    """The tokenize job on ``of``'s cleaned rows, in its own process as the pipeline runs it
    (read a chunk, encode, write its shard): what it wrote and its peak memory."""
    out = args.work / f"tokenize-{of}.json"
    command = [sys.executable, __file__, *_arm_options(args), "--arm", "tokenize"]
    subprocess.run([*command, "--rows-of", of, "--arm-out", str(out)], check=True)
    return json.loads(out.read_text(encoding="utf-8"))


def shard_texts(rows_path: Path, shards: Path, layout: PromptLayout) -> list[str]:
    """The distinct texts the shards hold as whole-text encodings: prompts and prompt + answer."""
    encoded, _ = read_shards(shards, columns=["id", "context_start", "context_end"])
    rows = pd.read_parquet(rows_path).set_index("id").loc[encoded["id"]]
    prompts = [
        layout.prompt_text(context[start:end], question)
        for context, question, start, end in zip(
            rows["context"],
            rows["question"],
            encoded["context_start"],
            encoded["context_end"],
            strict=True,
        )
    ]
    wholes = [p + layout.target_text(t) for p, t in zip(prompts, rows["target"], strict=True)]
    return list(dict.fromkeys(prompts + wholes))


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=DACON_ROWS)
    parser.add_argument("--rounds", type=int, default=2, help="the arms alternate this often")
    parser.add_argument("--scale", type=int, default=10, help="koqa on this many times the rows")
    parser.add_argument("--threads", type=int, default=2, help="the tokenizer's threads")
    parser.add_argument("--tokenizer", type=Path, help="a model directory (default: tiny BPE)")
    parser.add_argument("--chat-template", action="store_true", help="use its chat template")
    parser.add_argument("--out", type=Path, default=REPO / "results/bench/prep.json")
    parser.add_argument("--rows-of", choices=ARMS, help=argparse.SUPPRESS)  # tokenize's input
    add_arm_arguments(parser, ARMS)
    return parser.parse_args()


def _setup(args: argparse.Namespace) -> tuple[dict, TextTokenizer, PromptLayout]:
    """The default config, the tokenizer and the prompt layout the arms use."""
    config = load_config(REPO / "config.yaml")  # the tiny model's settings
    tokenizer = load_text_tokenizer(args.tokenizer or args.work / "tokenizer")
    prompt = config["prompt"]
    layout = build_layout(
        prompt["template"],
        tokenizer,
        args.chat_template,
        prompt["system"],
        prompt["chat_template_kwargs"],
    )
    return config, tokenizer, layout


def run_arm(args: argparse.Namespace) -> dict:
    """One arm in this (fresh) process; the floor reads the texts koqa's first run wrote."""
    configure_job(args.threads)
    config, tokenizer, layout = _setup(args)
    floor_texts = args.work / "floor_texts.parquet"
    base_rss = peak_rss_mb()
    if args.arm == "floor":
        texts = pd.read_parquet(floor_texts)["text"].tolist()
        encode = tokenizer.tokenizer.encode_batch_fast
        _, seconds = _timed(encode, texts, add_special_tokens=layout.add_special_tokens)
        peak = peak_rss_mb()
        return {
            "seconds": seconds,
            "texts": len(texts),
            "base_rss_mb": base_rss,
            "peak_rss_mb": peak,
        }
    if args.arm == "tokenize":
        written = encode_to_shards(
            args.work / f"rows-{args.rows_of}.parquet",
            tokenizer,
            layout,
            config["prompt"]["max_seq_len"],
            "train",
            args.work / f"shards-{args.rows_of}",
            config["tokenize"]["shard_rows"],
            {"tokenizer": tokenizer.fingerprint},
        )
        return {
            "peak_rss_mb": peak_rss_mb(),
            "base_rss_mb": base_rss,
            "rows_kept": written.rows,
            "rows_dropped": len(written.dropped),
            "contexts_truncated": written.truncated,
        }
    options = config["clean"]
    synonyms = load_synonyms(REPO / options["synonyms"]) if options["synonyms"] else {}
    rows_path, out_dir = args.work / f"rows-{args.arm}.parquet", args.work / f"shards-{args.arm}"
    started = time.perf_counter()
    clean_peak = clean_stage(args.work / f"{args.arm}.csv", options, synonyms, rows_path)
    tokenized = tokenize_stage(args, args.arm)
    seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "base_rss_mb": base_rss,
        # the two stages' processes, as the pipeline's clean and tokenize jobs
        "peak_rss_mb": max(clean_peak, tokenized["peak_rss_mb"]),
        "stage_peak_rss_mb": {"clean": clean_peak, "tokenize": tokenized["peak_rss_mb"]},
        "rows_kept": tokenized["rows_kept"],
        "rows_dropped": tokenized["rows_dropped"],
        "contexts_truncated": tokenized["contexts_truncated"],
        "shard_rows_read_back": len(read_shards(out_dir, columns=["id"])[0]),
    }
    if args.arm == "koqa" and not floor_texts.exists():
        texts = shard_texts(rows_path, out_dir, layout)
        pd.DataFrame({"text": texts}).to_parquet(floor_texts)
    shutil.rmtree(out_dir)  # not inside the next round's timing
    rows_path.unlink()
    return result


def _arm_options(args: argparse.Namespace) -> list[str]:
    """The options every arm's process gets from the bench's."""
    options = [f"--{k}={v}" for k, v in (("threads", args.threads), ("work", args.work))]
    options += [f"--tokenizer={args.tokenizer}"] if args.tokenizer else []
    return options + (["--chat-template"] if args.chat_template else [])


def _write_inputs(args: argparse.Namespace) -> dict:
    """The arms' inputs in ``args.work``: the synthetic CSVs and the tiny tokenizer."""
    config = load_config(REPO / "config.yaml")
    sample = read_records(REPO / config["data"]["train"], required=("answer",))
    sizes = {"koqa": args.rows} | ({"scaled": args.rows * args.scale} if args.scale else {})
    shape = {}
    for arm, rows in sizes.items():
        frame = synthetic_set(sample, rows, SEED + rows)
        frame.to_csv(args.work / f"{arm}.csv", index=False)
        shape[arm] = {
            "rows": len(frame),
            "contexts": int(frame["context"].nunique()),
            "mean_context_chars": round(float(frame["context"].str.len().mean()), 1),
        }
        print(f"{arm}: {shape[arm]}", file=sys.stderr)
    if args.tokenizer is None:
        from koqa.model.basemodel import train_bpe_tokenizer  # imports torch: not in the arms

        texts = [*sample["context"], *sample["question"], *sample["answer"].fillna("")]
        vocab_size = config["model"]["tiny"]["vocab_size"]
        train_bpe_tokenizer(texts, vocab_size).save_pretrained(args.work / "tokenizer")
    return shape


def main() -> None:
    args = _arguments()
    if run_as_arm(args, run_arm):
        return
    with tempfile.TemporaryDirectory(prefix="koqa-prep-") as work:
        args.work = Path(work)
        shape = _write_inputs(args)
        passed = _arm_options(args)
        runs = run_arms(Path(__file__), passed, ("koqa", "floor"), args.rounds)
        if args.scale:
            runs |= run_arms(Path(__file__), passed, ("scaled",), 1)
        load = load_average()
    koqa, floor = fastest(runs["koqa"]), fastest(runs["floor"])
    details = {
        "seconds": {
            arm: [round(run["seconds"], 2) for run in arm_runs] for arm, arm_runs in runs.items()
        },
        "load_average_after_arms": load,
        "threads": args.threads,
        "floor_texts": floor["texts"],
        "rows_per_s": round(shape["koqa"]["rows"] / koqa["seconds"], 1),
        "koqa": koqa,
        "floor": floor,
        "input": shape,
        "tokenizer": str(args.tokenizer or "tiny byte-level BPE")
        + (", chat template" if args.chat_template else ""),
    }
    if args.scale:
        scaled = runs["scaled"][0]
        time_ratio = scaled["seconds"] / koqa["seconds"]
        details["scale"] = {
            "rows_ratio": args.scale,
            "time_ratio": round(time_ratio, 2),
            "time_ratio_at_most": round(args.scale * SCALE_SLACK, 2),
            "meets_target": time_ratio <= args.scale * SCALE_SLACK,
            "run": scaled,
        }
    write_result(
        args.out,
        name="prep",
        what="ingest + clean + align + tokenize + write shards of a Dacon-sized training set",
        unit="seconds",
        figure=koqa["seconds"],
        baseline="the same tokenizer encoding the shards' distinct whole texts once, one batch",
        baseline_figure=floor["seconds"],
        target={"at_most": TARGET_RATIO},
        **details,
    )


if __name__ == "__main__":
    main()
