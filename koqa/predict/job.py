"""One variant's prediction job: load the trained variant and generate for one split.

Writes ``{split}.generated.csv`` with ``id`` and ``raw`` (the decoded generation, up to its stop
token), and a timing JSON (``seconds`` of generation, ``load_seconds`` of loading). Post-processing,
snapping and the final ``{split}.csv`` are the ``answers`` rule's job (:mod:`koqa.predict.answers`).

Generation is free or constrained to spans of each prompt's context (:mod:`koqa.predict.constrain`);
with ``predict.constrain: auto`` the validation job writes both (the constrained one to
``constrained_csv``) for :mod:`koqa.predict.constrain_choice` to choose from.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from koqa.data.shards import read_shards, stop_ids
from koqa.data.tokenizer import load_text_tokenizer
from koqa.files import write_csv, write_json
from koqa.model.adapters import load_variant
from koqa.predict.constrain import ContextConstraint, SpanIndex
from koqa.predict.generate import (
    answer_token_budget,
    decode_answers,
    greedy_generate,
    prepare_for_inference,
    stop_token_ids,
)
from koqa.train.loop import pick_device

log = logging.getLogger("koqa")


def resolve_max_new_tokens(options: dict, train_shard_dir: Path) -> int:
    """``predict.max_new_tokens``, or with ``auto`` the training answers' length quantile + margin."""
    if options["max_new_tokens"] != "auto":
        return int(options["max_new_tokens"])
    rows, _ = read_shards(train_shard_dir, columns=["n_tokens", "prompt_len"])
    return answer_token_budget(
        rows["n_tokens"] - rows["prompt_len"],
        options["max_new_tokens_quantile"],
        options["max_new_tokens_margin"],
    )


def prompt_contexts(rows: pd.DataFrame, split_rows: Path) -> list[str]:
    """The context text each shard row's prompt holds: its split's cleaned context, cut to the
    characters the shard kept (``context_start`` .. ``context_end``)."""
    table = pd.read_parquet(split_rows, columns=["id", "context"])
    context_of = dict(zip(table["id"], table["context"], strict=True))
    missing = sorted(set(rows["id"]) - context_of.keys())
    if missing:
        raise ValueError(f"{split_rows}: no row for shard ids {missing[:5]}")
    return [
        context_of[row_id][start:end]
        for row_id, start, end in zip(
            rows["id"], rows["context_start"], rows["context_end"], strict=True
        )
    ]


def run_prediction(
    *,
    variant_dir: Path,
    base_dir: Path,
    shard_dir: Path,
    train_shard_dir: Path,
    out_csv: Path,
    out_timing: Path,
    options: dict,
    device: str,
    precision: str,
    trust_remote_code: bool = False,
    dtype: str = "auto",
    constrain: bool = False,
    split_rows: Path | None = None,
    constrained_csv: Path | None = None,
) -> dict:
    """Write the generated text of every row of the split and the timing; return the timing.

    ``constrain``: generate only spans of each prompt's context (``split_rows``: the split's cleaned
    rows, which hold the contexts); ``constrained_csv``: write the free generations to ``out_csv``
    and the constrained ones there."""
    device = pick_device(device)
    loading = time.perf_counter()
    max_new_tokens = resolve_max_new_tokens(options, train_shard_dir)
    log.info("max_new_tokens: %d", max_new_tokens)
    rows, metadata = read_shards(shard_dir)
    prompts = [
        ids[:n].tolist() for ids, n in zip(rows["input_ids"], rows["prompt_len"], strict=True)
    ]
    tokenizer = load_text_tokenizer(base_dir)
    # line breaks and EOS, and the chat template's end-of-turn token(s) the shards name
    stops = sorted({*stop_token_ids(tokenizer.tokenizer, tokenizer.eos_id), *stop_ids(metadata)})
    model = prepare_for_inference(
        load_variant(
            variant_dir, base_dir, device, trust_remote_code, precision=precision, dtype=dtype
        )
    )
    pad_id = model.config.pad_token_id
    runs = (
        {out_csv: constrain} if constrained_csv is None else {out_csv: False, constrained_csv: True}
    )
    constraint = None
    if any(runs.values()):
        if split_rows is None:
            raise ValueError("constrained decoding needs the split's rows (their contexts)")
        index = SpanIndex(tokenizer.tokenizer, stops)
        constraint = ContextConstraint(index, prompt_contexts(rows, split_rows))
    load_seconds = time.perf_counter() - loading
    timing: dict = {"n": len(rows), "load_seconds": round(load_seconds, 3)}
    for path, constrained in runs.items():
        started = time.perf_counter()
        generated = greedy_generate(
            model,
            prompts,
            stop_ids=stops,
            pad_id=tokenizer.eos_id if pad_id is None else pad_id,
            batch_size=options["batch_size"],
            max_new_tokens=max_new_tokens,
            device=device,
            precision=precision,
            share_prefixes=options["share_prefixes"],
            constraint=constraint if constrained else None,
        )
        seconds = time.perf_counter() - started
        answers = pd.DataFrame(
            {"id": rows["id"].tolist(), "raw": decode_answers(tokenizer.tokenizer, generated)}
        )
        write_csv(answers, path)
        prefix = "constrained_" if constrained and len(runs) > 1 else ""
        timing |= {
            f"{prefix}seconds": round(seconds, 3),
            f"{prefix}answers_per_s": round(len(answers) / seconds, 2),
            f"{prefix}generated_tokens": sum(len(tokens) for tokens in generated),
        }
    timing |= {
        "constrained": "both" if len(runs) > 1 else constrain,
        "max_new_tokens": max_new_tokens,
        "device": device,
    }
    write_json(timing, out_timing)
    return timing
