"""Benchmark: koqa's training loop against transformers.Trainer with length grouping, and against
the machine's matrix-multiply peak.

    .venv/bin/python bench/train.py [--rows 256] [--repeats 2] [--mfu-steps 6] [--rss-steps 8]
                                    [--out results/bench/train.json]

Data shaped like the contest's: contexts drawn to its length distribution (mean 902, p95 1,598,
max 2,000 characters) from the embedded sample's sentences, answers of about 7 characters (a short
span of the context), questions from the sample; tokenized as the pipeline does (``[bos] prompt
answer eos``, prompt labels -100, up to ``--max-seq-len`` tokens) with the tiny byte-level BPE.
The model is the default config's tiny Llama with LoRA (r 16 on every linear layer).

1. Useful (non-padding) tokens per second, on the same rows, one epoch each (every row once, so
   every arm does the same useful work), the arms alternating ``--repeats`` times in this process
   (the fastest run of each counts):

   - koqa: :class:`koqa.train.loop.Trainer` (length-grouped batches from the token counts);
   - the baseline: ``transformers.Trainer`` with ``train_sampling_strategy="group_by_length"``
     (``group_by_length=True`` before transformers 5), same batch size, learning rate, schedule
     and clipping, each batch padded to its longest row (``DataCollatorForSeq2Seq``);
   - a second row: ``transformers.Trainer`` with its defaults (random order).

   Target: koqa at least 1.2 times the baseline.
2. MFU: koqa's loop fully fine-tuning a ~24M-parameter Llama (hidden 512, 8 layers, fp32) on
   full-length rows: 6 N tokens/s (N: its parameters; the embedding is tied, so N is also the
   weights of its matrix products; attention's own FLOPs are not counted) over the fp32
   ``torch.mm`` peak measured in this process (the best of large square products, before and after
   the training). Target: at least 0.6. ``mfu_as_computed`` counts the LM head only at the
   positions the loop runs it on (the loss window: the answer's 9 of 256), a few % lower.
   torch.profiler then shows where a step's time goes, by the loop's ``koqa.*`` record_function
   labels (data, forward, backward, optimizer).
3. Each method trains ``--rss-steps`` steps in a fresh process on the same data to report its peak
   resident memory (0: skipped).

The result goes to ``results/bench/train.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from benchlib import REPO, contest_shaped_rows, fastest, load_average, write_result
from torch.profiler import ProfilerActivity, profile
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast, TrainingArguments
from transformers import Trainer as HFTrainer

from koqa.config import load_config
from koqa.data.ingest import read_records
from koqa.data.prompt import build_layout
from koqa.data.shards import encode_rows
from koqa.data.tokenizer import TextTokenizer, load_text_tokenizer
from koqa.model.adapters import trainable_model
from koqa.model.basemodel import build_tiny_llama, load_base_model, train_bpe_tokenizer
from koqa.runtime import peak_rss_mb
from koqa.train.loop import Trainer, loss_window
from koqa.train.variants import METHODS, resolve_variant

SEED = 11
# the MFU model: ~24M parameters (hidden 512, 8 layers), trained in full
MFU_ARCH = {
    "hidden_size": 512,
    "intermediate_size": 1152,
    "num_layers": 8,
    "num_heads": 8,
    "max_position_embeddings": 1024,
}
MFU_BATCH, MFU_SEQ = 8, 256
PEAK_SIZE = 2048  # torch.mm of two fp32 matrices this square
TARGET_RATIO, TARGET_MFU = 1.2, 0.6
LORA = {
    "r": 16,
    "alpha": 32,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


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
    return {
        "seconds": round(seconds, 2),
        "padding_fraction": summary["padding_fraction"],
        "load_average": load_average(),
    }


class CountingCollator(DataCollatorForSeq2Seq):
    """The default padding collator, counting real tokens and batch cells as it goes."""

    tokens = cells = 0

    def __call__(self, features: list[dict], return_tensors: str | None = None) -> dict:
        batch = super().__call__(features, return_tensors)
        self.tokens += int(batch["attention_mask"].sum())
        self.cells += batch["attention_mask"].numel()
        return batch


def run_hf_trainer(
    base_dir: Path,
    rows: pd.DataFrame,
    settings: dict,
    tokenizer: PreTrainedTokenizerFast,
    sampling: str,
) -> dict:
    """One epoch of transformers.Trainer with ``sampling`` (``group_by_length`` or ``random``)
    and pad-to-longest collation."""
    dataset = [
        {"input_ids": ids.tolist(), "attention_mask": [1] * len(ids), "labels": labels.tolist()}
        for ids, labels in zip(rows["input_ids"], rows["labels"], strict=True)
    ]
    collator = CountingCollator(tokenizer, padding="longest", label_pad_token_id=-100)
    with tempfile.TemporaryDirectory() as scratch:
        arguments = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=settings["batch_size"],
            train_sampling_strategy=sampling,
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
        "load_average": load_average(),
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


def matmul_peak_flops(size: int = PEAK_SIZE, repeats: int = 5) -> float:
    """The best fp32 FLOP/s of ``torch.mm`` on two ``size`` x ``size`` matrices (after one warm-up
    product): the machine's attainable matrix-multiply peak with this process's threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def full_length_rows(count: int, length: int, vocab: int) -> pd.DataFrame:
    """``count`` rows of ``length`` random tokens (no padding), the last 8 the answer."""
    generator = torch.Generator().manual_seed(SEED)
    ids = [torch.randint(4, vocab, (length,), generator=generator).tolist() for _ in range(count)]
    return pd.DataFrame(
        {
            "input_ids": ids,
            "labels": [[-100] * (length - 8) + row[-8:] for row in ids],
            "n_tokens": length,
            "prompt_len": length - 8,
        }
    )


def step_profile(trainer: Trainer, scratch: Path) -> dict[str, float]:
    """Milliseconds per optimizer step in each ``koqa.*`` region of the loop (torch.profiler)."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        trainer.run(scratch / "profiled", scratch / "profiled.csv")
    regions = {e.key: e for e in profiler.key_averages() if e.key.startswith("koqa.")}
    steps = regions["koqa.step"].count  # the other regions lie inside the steps
    return {key.removeprefix("koqa."): e.cpu_time_total / 1e3 / steps for key, e in regions.items()}


def measure_mfu(tokenizer: PreTrainedTokenizerFast, settings: dict, steps: int) -> dict:
    """Full fine-tuning of the ~24M Llama: tokens/s (median of the steps after the first), MFU
    against the ``torch.mm`` peak, and the profiled split of a step."""
    model = build_tiny_llama(tokenizer, MFU_ARCH, seed=SEED)
    n_params = sum(p.numel() for p in model.parameters())
    full = settings | {"method": "full", "name": "full", "lr": 1e-4, "epochs": 1}
    rows = full_length_rows(MFU_BATCH * steps, MFU_SEQ, len(tokenizer))
    peaks = [matmul_peak_flops()]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        trainer = Trainer(trainable_model(model, full), rows, full, 0, device="cpu")
        trainer.run(scratch / "checkpoints", scratch / "metrics.csv", scratch / "timing.csv")
        speeds = pd.read_csv(scratch / "timing.csv")["tokens_per_s"].tolist()
        peaks.append(matmul_peak_flops())
        profiled = Trainer(model, rows.iloc[: MFU_BATCH * min(steps, 3)], full, 0, device="cpu")
        regions = step_profile(profiled, scratch)
    tokens_per_s = statistics.median(speeds[1:] or speeds)
    peak = max(peaks)
    achieved = 6 * n_params * tokens_per_s
    attention = 6 * MFU_ARCH["num_layers"] * MFU_ARCH["hidden_size"] * MFU_SEQ  # causal half
    # the LM head runs on the loss window only (koqa.train.loop.loss_window): 6 N counts it at
    # every token; what the loop computes counts it at the window's share of the positions
    head = model.get_output_embeddings().weight.numel()
    share = loss_window(rows.iloc[:MFU_BATCH]) / MFU_SEQ
    computed = 6 * (n_params - head + head * share) * tokens_per_s
    return {
        "mfu": round(achieved / peak, 3),
        "target_mfu": TARGET_MFU,
        "meets_target": achieved / peak >= TARGET_MFU,
        "mfu_with_attention": round((achieved + attention * tokens_per_s) / peak, 3),
        "mfu_as_computed": round(computed / peak, 3),
        "tokens_per_s": round(tokens_per_s, 1),
        "tokens_per_s_by_step": speeds,
        "parameters": n_params,
        "achieved_gflops": round(achieved / 1e9, 2),
        "peak_gflops": round(peak / 1e9, 2),
        "peak_gflops_before_after": [round(x / 1e9, 2) for x in peaks],
        "peak_from": f"torch.mm fp32 {PEAK_SIZE}x{PEAK_SIZE}, best of 5",
        "batch": f"{MFU_BATCH} rows x {MFU_SEQ} tokens, no padding, fp32, AdamW",
        "architecture": MFU_ARCH,
        "step_ms": {key: round(ms, 2) for key, ms in regions.items()},
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mfu-steps", type=int, default=6, help="0: no MFU measurement")
    parser.add_argument("--rss-steps", type=int, default=8, help="0: no peak memory per method")
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
        base = job_dir / "base"
        arms = {
            "koqa": lambda: run_koqa(base, rows, settings, pad_id),
            "grouped": lambda: run_hf_trainer(
                base, rows, settings, hf_tokenizer, "group_by_length"
            ),
            "default": lambda: run_hf_trainer(base, rows, settings, hf_tokenizer, "random"),
        }
        runs: dict[str, list[dict]] = {arm: [] for arm in arms}
        for _ in range(args.repeats):  # alternating, so that a change in load hits every arm
            for arm, run in arms.items():
                runs[arm].append(run())
                print(f"{arm}: {runs[arm][-1]}", file=sys.stderr)
        mfu = measure_mfu(hf_tokenizer, settings, args.mfu_steps) if args.mfu_steps else None
        print(f"mfu: {mfu}", file=sys.stderr)
        rows.to_parquet(job_dir / "rows.parquet")
        (job_dir / "job.json").write_text(
            json.dumps({"train": train, "batch_size": args.batch_size, "pad_id": pad_id})
        )
        peaks = peak_rss_per_method(job_dir, settings, args.rss_steps) if args.rss_steps else {}
    best = {arm: fastest(arm_runs) for arm, arm_runs in runs.items()}
    useful_tokens = int(rows["n_tokens"].sum())  # every arm processes every row once
    speed = {arm: useful_tokens / run["seconds"] for arm, run in best.items()}
    write_result(
        args.out,
        name="train",
        what="LoRA training on contest-shaped rows: useful (non-padding) tokens per second",
        unit="useful tokens/s",
        figure=speed["koqa"],
        baseline="transformers.Trainer, train_sampling_strategy=group_by_length, same batch "
        "size, lr, schedule and clipping, pad to the longest row",
        baseline_figure=speed["grouped"],
        target={"at_least": TARGET_RATIO},
        default_trainer={
            "what": "transformers.Trainer defaults: random order, pad to the longest row",
            "figure": round(speed["default"], 1),
            "ratio": round(speed["koqa"] / speed["default"], 3),
        },
        padding_fraction={arm: run["padding_fraction"] for arm, run in best.items()},
        runs=runs,
        rows=len(rows),
        useful_tokens=useful_tokens,
        batch_size=args.batch_size,
        mean_context_chars=round(float(frame["context"].str.len().mean()), 1),
        mean_answer_chars=round(float(frame["target"].str.len().mean()), 1),
        mean_tokens=round(float(rows["n_tokens"].mean()), 1),
        max_seq_len=args.max_seq_len,
        model=f"tiny Llama {sum(p.numel() for p in model.parameters())} parameters, LoRA r 16",
        mfu=mfu,
        peak_rss_mb_per_method=peaks,
        rss_steps=args.rss_steps,
    )


if __name__ == "__main__":
    main()
