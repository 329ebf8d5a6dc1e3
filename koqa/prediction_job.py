"""One variant's prediction job: load the trained variant, generate answers for one split."""

from __future__ import annotations

import time
from pathlib import Path

from koqa.adapters import load_variant
from koqa.files import write_csv, write_json
from koqa.predict import generate_answers
from koqa.shards import read_shards
from koqa.tokenizer import load_text_tokenizer
from koqa.train import pick_device


def run_prediction(
    *,
    variant_dir: Path,
    base_dir: Path,
    shard_dir: Path,
    out_csv: Path,
    out_timing: Path,
    options: dict,
    device: str,
    precision: str,
    trust_remote_code: bool = False,
) -> dict:
    """Write ``id,answer`` for every row of the split and a timing JSON; return the timing."""
    device = pick_device(device)
    started = time.perf_counter()
    rows, _ = read_shards(shard_dir)
    tokenizer = load_text_tokenizer(base_dir)
    model = load_variant(variant_dir, base_dir, device, trust_remote_code)
    pad_id = model.config.pad_token_id
    answers = generate_answers(
        model,
        tokenizer.tokenizer,
        rows,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.eos_id if pad_id is None else pad_id,
        batch_size=options["batch_size"],
        max_new_tokens=options["max_new_tokens"],
        device=device,
        precision=precision,
    )
    write_csv(answers, out_csv)
    seconds = time.perf_counter() - started
    timing = {
        "n": len(answers),
        "seconds": round(seconds, 2),
        "answers_per_s": len(answers) / seconds,
    }
    write_json(timing, out_timing)
    return timing
