"""Benchmark: koqa's length-grouped batching against Hugging Face Trainer's default, same model and data.

    .venv/bin/python bench/train.py [--rows 256] [--repeats 2] [--out results/bench/train.json]

Data shaped like the contest's: contexts drawn to its length distribution (mean 902, p95 1,598,
max 2,000 characters) from the embedded sample's sentences, answers of about 7 characters (a short
span of the context), questions from the sample; tokenized as the pipeline does (``[bos] prompt
answer eos``, prompt labels -100, up to ``--max-seq-len`` tokens) with the tiny byte-level BPE.
The model is the default config's tiny Llama with LoRA (r 16 on every linear layer).

Measured, in one run, on the same rows, one epoch each (every row processed once, so both arms do
the same useful work), the arms alternating ``--repeats`` times (the best time of each counts):

- koqa: :class:`koqa.train.loop.Trainer` (length-grouped batches from the token counts);
- the baseline: ``transformers.Trainer`` with its defaults: random order, each batch padded to its
  longest row (``DataCollatorForSeq2Seq``), same batch size, learning rate and clipping.

The figure is useful (non-padding) tokens per second; padding fraction = padding / all batch cells.
Then each method trains ``--rss-steps`` steps in a fresh process on the same data to report its peak
resident memory. The result goes to ``results/bench/train.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast, TrainingArguments
from transformers import Trainer as HFTrainer

from koqa.config import load_config
from koqa.data.ingest import read_records
from koqa.data.prompt import build_layout
from koqa.data.shards import encode_rows
from koqa.data.tokenizer import TextTokenizer, load_text_tokenizer
from koqa.files import write_json
from koqa.model.adapters import trainable_model
from koqa.model.basemodel import build_tiny_llama, load_base_model, train_bpe_tokenizer
from koqa.train.loop import Trainer, peak_rss_mb
from koqa.train.variants import METHODS, resolve_variant

REPO = Path(__file__).resolve().parents[1]
SEED = 11
# Contest context lengths (characters): mean 902, p95 1,598, max 2,000 -> a log-normal with these.
CONTEXT_MU, CONTEXT_SIGMA, CONTEXT_MIN, CONTEXT_MAX = 6.726, 0.396, 100, 2000
LORA = {
    "r": 16,
    "alpha": 32,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def contest_shaped_rows(sample: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` of (context, question, target) with the contest's context and answer lengths."""
    rng = random.Random(seed)
    sentences = [s.strip() + "." for c in sample["context"] for s in c.split(".") if s.strip()]
    questions = sample["question"].tolist()
    rows = []
    for i in range(n_rows):
        length = min(
            CONTEXT_MAX, max(CONTEXT_MIN, round(rng.lognormvariate(CONTEXT_MU, CONTEXT_SIGMA)))
        )
        context = ""
        while len(context) < length:
            context += rng.choice(sentences) + " "
        context = context[:length].strip()
        words = context.split()
        start = rng.randrange(len(words))
        target = " ".join(words[start : start + rng.choice((1, 1, 2, 2, 3))])
        rows.append(
            {
                "id": f"B{i:05d}",
                "context": context,
                "question": rng.choice(questions),
                "target": target,
            }
        )
    return pd.DataFrame(rows)


def encode(
    frame: pd.DataFrame, tokenizer: TextTokenizer, template: str, max_seq_len: int
) -> pd.DataFrame:
    """The rows tokenized as the pipeline's tokenize stage does (context cut around the answer)."""
    frame = frame.assign(
        answer_start=[c.find(t) for c, t in zip(frame["context"], frame["target"], strict=True)]
    )
    return encode_rows(frame, tokenizer, build_layout(template, tokenizer), max_seq_len).to_pandas()


def lora_model(base_dir: Path, settings: dict) -> torch.nn.Module:
    torch.manual_seed(settings["seed"])
    return trainable_model(load_base_model(base_dir), settings)


def run_koqa(base_dir: Path, rows: pd.DataFrame, settings: dict, pad_id: int) -> dict:
    """One epoch of koqa's loop: seconds and padding fraction."""
    trainer = Trainer(lora_model(base_dir, settings), rows, settings, pad_id, device="cpu")
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        summary = trainer.run(Path(scratch) / "checkpoints", Path(scratch) / "metrics.csv")
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "padding_fraction": summary["padding_fraction"]}


class CountingCollator(DataCollatorForSeq2Seq):
    """The default padding collator, counting real tokens and batch cells as it goes."""

    tokens = cells = 0

    def __call__(self, features: list[dict], return_tensors: str | None = None) -> dict:
        batch = super().__call__(features, return_tensors)
        self.tokens += int(batch["attention_mask"].sum())
        self.cells += batch["attention_mask"].numel()
        return batch


def run_hf_trainer(
    base_dir: Path, rows: pd.DataFrame, settings: dict, tokenizer: PreTrainedTokenizerFast
) -> dict:
    """One epoch of transformers.Trainer with its default sampler and pad-to-longest collation."""
    dataset = [
        {"input_ids": ids.tolist(), "attention_mask": [1] * len(ids), "labels": labels.tolist()}
        for ids, labels in zip(rows["input_ids"], rows["labels"], strict=True)
    ]
    collator = CountingCollator(tokenizer, padding="longest", label_pad_token_id=-100)
    with tempfile.TemporaryDirectory() as scratch:
        arguments = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=settings["batch_size"],
            num_train_epochs=1,
            learning_rate=settings["lr"],
            max_grad_norm=settings["max_grad_norm"],
            lr_scheduler_type=settings["schedule"],
            warmup_steps=0.05,
            seed=settings["seed"],
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        trainer = HFTrainer(
            model=lora_model(base_dir, settings),
            args=arguments,
            train_dataset=dataset,
            data_collator=collator,
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    if collator.tokens != rows["n_tokens"].sum():
        raise SystemExit("transformers.Trainer did not see every row exactly once")
    return {
        "seconds": round(seconds, 2),
        "padding_fraction": round(1 - collator.tokens / collator.cells, 4),
    }


def peak_rss_per_method(job_dir: Path, settings: dict, steps: int) -> dict[str, float]:
    """Each method trains ``steps`` steps in a fresh process (this script with --rss-method)."""
    peaks = {}
    for method in METHODS:
        if method == "zeroshot":
            continue
        command = [sys.executable, __file__, "--rss-method", method, "--rss-steps", str(steps)]
        command += ["--job-dir", str(job_dir)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        peaks[method] = json.loads(output.strip().splitlines()[-1])["peak_rss_mb"]
        print(f"{method}: peak RSS {peaks[method]} MiB", file=sys.stderr)
    return peaks


def measure_one_method(job_dir: Path, method: str, steps: int) -> None:
    """Child process of :func:`peak_rss_per_method`: train, print the peak RSS as JSON."""
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    rows = pd.read_parquet(job_dir / "rows.parquet").iloc[: steps * job["batch_size"]]
    config = {"train": job["train"], "variants": {method: {"method": method}}}
    settings = resolve_variant(config, method) | {"epochs": 1, "checkpoint_every": 10**6}
    torch.manual_seed(0)
    base = load_base_model(job_dir / "base", quantize_4bit=method == "qlora")
    trainer = Trainer(trainable_model(base, settings), rows, settings, job["pad_id"], device="cpu")
    with tempfile.TemporaryDirectory() as scratch:
        trainer.run(Path(scratch) / "checkpoints", Path(scratch) / "metrics.csv")
    print(json.dumps({"method": method, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rss-steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "results/bench/train.json")
    parser.add_argument("--rss-method", help=argparse.SUPPRESS)
    parser.add_argument("--job-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_method:
        measure_one_method(args.job_dir, args.rss_method, args.rss_steps)
        return

    config = load_config(REPO / "config.yaml")  # the tiny model's settings
    sample = read_records(REPO / config["data"]["train"], required=("answer",))
    frame = contest_shaped_rows(sample, args.rows, SEED)
    train = copy.deepcopy(config["train"]) | {"batch_size": args.batch_size, "device": "cpu"}
    settings = resolve_variant(
        {"train": train, "variants": {"lora": {"method": "lora", **LORA}}}, "lora"
    )
    settings |= {"epochs": 1, "checkpoint_every": 10**6, "dropout": 0.0}
    with tempfile.TemporaryDirectory() as scratch:
        job_dir = Path(scratch)
        texts = [*sample["context"], *sample["question"], *frame["target"]]
        hf_tokenizer = train_bpe_tokenizer(texts, config["model"]["tiny"]["vocab_size"])
        arch = config["model"]["tiny"] | {"max_position_embeddings": args.max_seq_len}
        model = build_tiny_llama(hf_tokenizer, arch, seed=SEED)
        model.save_pretrained(job_dir / "base", safe_serialization=True)
        hf_tokenizer.save_pretrained(job_dir / "base")
        tokenizer = load_text_tokenizer(job_dir / "base")
        rows = encode(frame, tokenizer, config["prompt"]["template"], args.max_seq_len)
        print(
            f"{len(rows)} rows, {frame['context'].str.len().mean():.0f} context characters and "
            f"{rows['n_tokens'].mean():.0f} tokens on average, batch size {args.batch_size}",
            file=sys.stderr,
        )
        pad_id = hf_tokenizer.pad_token_id
        koqa_runs, hf_runs = [], []
        for _ in range(args.repeats):
            koqa_runs.append(run_koqa(job_dir / "base", rows, settings, pad_id))
            print(f"koqa: {koqa_runs[-1]}", file=sys.stderr)
            hf_runs.append(run_hf_trainer(job_dir / "base", rows, settings, hf_tokenizer))
            print(f"transformers.Trainer: {hf_runs[-1]}", file=sys.stderr)
        rows.to_parquet(job_dir / "rows.parquet")
        (job_dir / "job.json").write_text(
            json.dumps({"train": train, "batch_size": args.batch_size, "pad_id": pad_id})
        )
        peaks = peak_rss_per_method(job_dir, settings, args.rss_steps)
    koqa, hf = (min(runs, key=lambda run: run["seconds"]) for runs in (koqa_runs, hf_runs))
    useful_tokens = int(rows["n_tokens"].sum())  # both arms process every row once
    figure, baseline_figure = (useful_tokens / run["seconds"] for run in (koqa, hf))
    result = {
        "name": "train",
        "what": "LoRA training on contest-shaped rows: useful (non-padding) tokens per second",
        "unit": "useful tokens/s",
        "figure": round(figure, 1),
        "baseline": "transformers.Trainer defaults: random order, pad to the longest row",
        "baseline_figure": round(baseline_figure, 1),
        "ratio": round(figure / baseline_figure, 2),
        "padding_fraction": koqa["padding_fraction"],
        "baseline_padding_fraction": hf["padding_fraction"],
        "seconds": koqa["seconds"],
        "baseline_seconds": hf["seconds"],
        "all_seconds": {
            "koqa": [r["seconds"] for r in koqa_runs],
            "baseline": [r["seconds"] for r in hf_runs],
        },
        "rows": len(rows),
        "useful_tokens": useful_tokens,
        "batch_size": args.batch_size,
        "mean_context_chars": round(float(frame["context"].str.len().mean()), 1),
        "mean_answer_chars": round(float(frame["target"].str.len().mean()), 1),
        "mean_tokens": round(float(rows["n_tokens"].mean()), 1),
        "max_seq_len": args.max_seq_len,
        "model": f"tiny Llama {sum(p.numel() for p in model.parameters())} parameters, LoRA r 16",
        "peak_rss_mb_per_method": peaks,
        "rss_steps": args.rss_steps,
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_cores": len(os.sched_getaffinity(0)),
    }
    write_json(result, args.out)
    print(json.dumps(result, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
