"""Benchmark: koqa's batched greedy prediction against the official baseline's way of predicting.

    .venv/bin/python bench/predict.py [--results results] [--variant lora] [--threads 2]
                                      [--out results/bench/predict.json]

Needs a finished pipeline run (``--results``: its base model, the variant's adapter and the
validation and test shards). Both arms answer the same prompts (every validation and test row) with
the same model and adapter, on the same device, in the same run, each in a fresh process:

- koqa: the predict job's way, :func:`koqa.predict.generate.prepare_for_inference` (adapter folded into the
  weights) and :func:`koqa.predict.generate.greedy_generate` (batches of ``--batch-size``, default the
  config's, each shared context run once, KV cache, stop at EOS or a newline), then decoding;
- koqa constrained: the same, decoding only spans of each prompt's context
  (``predict.constrain``; :mod:`koqa.predict.constrain`): what the mask costs;
- the baseline, as the contest's official baseline predicted: a transformers ``text-generation``
  pipeline called on one prompt text at a time, greedy, stopping at EOS only.

Both generate at most the ``max_new_tokens`` koqa's config resolves to (``auto``: from the training
answers). The prompt text given to the pipeline is the shard's prompt decoded with its special
tokens; it tokenizes back to nearly the same ids (koqa encodes the template's parts separately, the
pipeline the whole text: ``same_prompt_tokens`` counts identical prompts, ``prompt_tokens`` gives
each arm's total). The figure is answers per second of generation (loading excluded), the best of
``--rounds`` alternating processes per arm times ``--repeats`` passes each (the machine's load
changes). Each arm's peak memory is its process's peak resident memory (plus CUDA's peak
allocation on a GPU). ``same_answers`` is the share of post-processed answers the two arms agree
on. The result goes to ``results/bench/predict.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ARMS = ("koqa", "constrained", "baseline")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--variant", default="lora")
    parser.add_argument("--batch-size", type=int, help="default: the config's predict.batch_size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2, help="arm processes alternate this often")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per arm process")
    parser.add_argument("--out", type=Path, default=Path("results/bench/predict.json"))
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # worker process
    parser.add_argument("--arm-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def _run_arm(args: argparse.Namespace) -> dict:
    """One arm in this (fresh) process: load, generate for every prompt, time it."""
    from koqa.runtime import configure_job

    configure_job(args.threads)
    import pandas as pd
    import torch
    from transformers import PreTrainedTokenizerFast, pipeline

    from koqa.data.shards import read_shards
    from koqa.data.tokenizer import load_text_tokenizer
    from koqa.model.adapters import load_variant
    from koqa.predict.answers import clean_answer, prompt_markers
    from koqa.predict.constrain import ContextConstraint, SpanIndex
    from koqa.predict.generate import (
        decode_answers,
        greedy_generate,
        prepare_for_inference,
        stop_token_ids,
    )
    from koqa.predict.job import prompt_contexts, resolve_max_new_tokens
    from koqa.train.loop import peak_rss_mb

    config = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    batch_size = args.batch_size or config["predict"]["batch_size"]
    base_dir = (args.results / "model/base").resolve()
    shards = args.results / "data/shards"
    splits = {"validation": "split/validation.parquet", "test": "clean/test.parquet"}
    rows = pd.concat([read_shards(shards / split)[0] for split in splits])
    prompts = [
        ids[:n].tolist() for ids, n in zip(rows["input_ids"], rows["prompt_len"], strict=True)
    ]
    max_new_tokens = resolve_max_new_tokens(config["predict"], shards / "train")
    text_tokenizer = load_text_tokenizer(base_dir)
    model = load_variant(args.results / "adapters" / args.variant, base_dir, args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    same_prompt_tokens = None
    prompt_tokens = sum(map(len, prompts))
    if args.arm in ("koqa", "constrained"):
        model = prepare_for_inference(model)  # as the predict job does
        stop_ids = stop_token_ids(text_tokenizer.tokenizer, text_tokenizer.eos_id)
        contexts = [
            context
            for split, table in splits.items()
            for context in prompt_contexts(
                read_shards(shards / split)[0], args.results / "data" / table
            )
        ]

        def answer_all() -> list[str]:
            # constrained: the token index and every context's matches are built in each pass,
            # as the predict job builds them
            constraint = (
                ContextConstraint(SpanIndex(text_tokenizer.tokenizer, stop_ids), contexts)
                if args.arm == "constrained"
                else None
            )
            generated = greedy_generate(
                model,
                prompts,
                stop_ids=stop_ids,
                pad_id=text_tokenizer.eos_id,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                device=args.device,
                constraint=constraint,
            )
            return decode_answers(text_tokenizer.tokenizer, generated)

    else:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(base_dir)
        prompt_texts = [
            text_tokenizer.tokenizer.decode(p, skip_special_tokens=False) for p in prompts
        ]
        retokenized = tokenizer(prompt_texts, add_special_tokens=False)["input_ids"]
        same_prompt_tokens = sum(a == b for a, b in zip(retokenized, prompts, strict=True))
        prompt_tokens = sum(map(len, retokenized))
        generator = pipeline(
            "text-generation", model=model, tokenizer=tokenizer, device=torch.device(args.device)
        )

        def answer_all() -> list[str]:
            return [
                generator(
                    text,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    return_full_text=False,
                    add_special_tokens=False,
                    eos_token_id=text_tokenizer.eos_id,
                    pad_token_id=text_tokenizer.eos_id,
                )[0]["generated_text"]
                for text in prompt_texts
            ]

    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        texts = answer_all()
        times.append(time.perf_counter() - started)
    seconds = min(times)
    markers = prompt_markers(config["prompt"]["template"])
    return {
        "answers_per_s": len(prompts) / seconds,
        "seconds": seconds,
        "all_seconds": [round(t, 3) for t in times],
        "n": len(prompts),
        "max_new_tokens": max_new_tokens,
        "batch_size": 1 if args.arm == "baseline" else batch_size,
        "prompt_tokens": prompt_tokens,
        "peak_rss_mb": peak_rss_mb(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20
        if args.device == "cuda"
        else None,
        "same_prompt_tokens": same_prompt_tokens,
        "answers": [clean_answer(text, markers) for text in texts],
    }


def main() -> None:
    args = _arguments()
    if args.arm:
        args.arm_out.write_text(json.dumps(_run_arm(args), ensure_ascii=False), encoding="utf-8")
        return
    from koqa.files import write_json

    arms: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):  # alternate the arms so a change in machine load hits both
            for arm in ARMS:
                out = Path(scratch) / f"{arm}.json"
                command = [sys.argv[0], *sys.argv[1:], "--arm", arm, "--arm-out", str(out)]
                subprocess.run([sys.executable, *command], check=True, env=os.environ.copy())
                result = json.loads(out.read_text(encoding="utf-8"))
                if arm not in arms or result["seconds"] < arms[arm]["seconds"]:
                    arms[arm] = result
    koqa, constrained, baseline = arms["koqa"], arms["constrained"], arms["baseline"]
    answers = {arm: result.pop("answers") for arm, result in arms.items()}
    same = sum(a == b for a, b in zip(answers["koqa"], answers["baseline"], strict=True))
    constrained_same = sum(
        a == b for a, b in zip(answers["koqa"], answers["constrained"], strict=True)
    )
    result = {
        "name": "predict",
        "unit": "answers/s",
        "figure": round(koqa["answers_per_s"], 2),
        "baseline_figure": round(baseline["answers_per_s"], 2),
        "ratio": round(koqa["answers_per_s"] / baseline["answers_per_s"], 2),
        # constrained decoding on the same prompts: its answers/s and the share of its answers
        # that equal the free ones
        "constrained_figure": round(constrained["answers_per_s"], 2),
        "constrained_ratio": round(constrained["answers_per_s"] / koqa["answers_per_s"], 2),
        "constrained_same_answers": round(constrained_same / koqa["n"], 3),
        "target_ratio": 5,
        "variant": args.variant,
        "device": args.device,
        "threads": args.threads,
        "batch_size": koqa["batch_size"],
        "prompts": koqa["n"],
        "max_new_tokens": koqa["max_new_tokens"],
        "same_prompt_tokens": baseline.pop("same_prompt_tokens"),
        "same_answers": round(same / koqa["n"], 3),
        "koqa": {k: v for k, v in koqa.items() if k != "same_prompt_tokens"},
        "constrained": {k: v for k, v in constrained.items() if k != "same_prompt_tokens"},
        "baseline": baseline,
    }
    write_json(result, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
