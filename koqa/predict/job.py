"""One variant's prediction job: load the trained variant and generate for one split.

Writes ``{split}.generated.csv`` with ``id`` and ``raw`` (the decoded generation, up to its stop
token), and a timing JSON (``seconds`` of generation, ``load_seconds`` of loading). Post-processing,
snapping and the final ``{split}.csv`` are the ``answers`` rule's job (:mod:`koqa.predict.answers`).
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
) -> dict:
    """Write the generated text of every row of the split and the timing; return the timing."""
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
    started = time.perf_counter()
    load_seconds = started - loading
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
    )
    seconds = time.perf_counter() - started
    answers = pd.DataFrame(
        {"id": rows["id"].tolist(), "raw": decode_answers(tokenizer.tokenizer, generated)}
    )
    write_csv(answers, out_csv)
    timing = {
        "n": len(answers),
        "seconds": round(seconds, 3),
        "load_seconds": round(load_seconds, 3),
        "answers_per_s": round(len(answers) / seconds, 2),
        "generated_tokens": sum(len(tokens) for tokens in generated),
        "max_new_tokens": max_new_tokens,
        "device": device,
    }
    write_json(timing, out_timing)
    return timing
