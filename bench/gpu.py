"""GPU acceptance check: what a machine with one GPU must do, in one command (under 8 minutes).

    .venv/bin/python bench/gpu.py [--out results/bench/gpu.json] [--peak-tflops N] [--smoke]

On random-weight models of Llama-3's shape, through koqa's own loading (load_base_model: 4-bit NF4
through CUDA bitsandbytes for QLoRA), wrapping (trainable_model), training loop (Trainer, bf16
autocast) and prediction code (load_variant, prepare_for_inference, greedy_generate):

1. every method trains a few steps on a ~1B model (Llama-3.2-1B's shape); its loss must be finite
   and its peak memory (torch.cuda.max_memory_allocated over the steps) within 15% of the memory
   planner's estimate (koqa.train.memory);
2. batched generation (zeroshot, a trained LoRA folded into the weights, prefix tuning through peft's
   generate) must give the tokens of a step-by-step argmax over full forward passes of each prompt
   alone; under bf16 a token may differ only where the reference's two logits lie within
   ``TIE_TOLERANCE`` of each other (after that the two continuations are not compared);
3. LoRA and QLoRA train on an 8B model (Llama-3-8B's shape) at 4 x 1024 tokens per step: tokens/s
   (median over the steps after the first) and MFU (model FLOPs per second over the GPU's peak
   dense bf16 FLOP/s: see :func:`flops_per_token`).

It writes ``results/bench/gpu.json`` in the benches' format (bench/benchlib.py: ``figure`` is
QLoRA's tokens/s on the 8B model, ``baseline_figure`` torchtune's published figure scaled by the
device's peak, None in a smoke run): each check and figure, the device, the peak TFLOP/s assumed,
torch's version, and ``passed``; the exit status is 1 if a check failed. ``--smoke`` runs the same
code on the CPU with tiny dimensions (CI runs it, ``tests/test_bench_gpu.py``); its memory check
is left out (``tests/test_memory.py`` compares the planner with the CPU's peak) and so is MFU.
``tests/gpu/`` runs the full check under pytest (``pytest -m gpu``) on a machine with a GPU.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from benchlib import write_result
from transformers import AutoModelForCausalLM, LlamaConfig

from koqa.model.adapters import load_variant, save_variant
from koqa.predict.generate import greedy_generate, prepare_for_inference
from koqa.train.job import load_trainable_model
from koqa.train.loop import Trainer, autocast, largest_loss_window
from koqa.train.memory import GiB, Workload, estimate_training
from koqa.train.variants import METHODS, resolve_variant

REPO = Path(__file__).resolve().parents[1]
LLAMA3 = {"num_attention_heads": 32, "num_key_value_heads": 8, "rope_theta": 500000.0}
SHAPES = {
    "1b": LLAMA3
    | {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16}
    | {"vocab_size": 128256, "tie_word_embeddings": True},
    "8b": LLAMA3
    | {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32}
    | {"vocab_size": 128256, "tie_word_embeddings": False},
}
SMOKE_SHAPES = {
    "1b": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    | {"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512}
    | {"tie_word_embeddings": True},
    "8b": {"hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 3}
    | {"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512}
    | {"tie_word_embeddings": False},
}
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MEMORY_TOLERANCE = 0.15
TORCHTUNE_QLORA_4090 = 2413  # tokens/s, torchtune's published Llama-3.1-8B QLoRA figure
TIE_TOLERANCE = 0.05  # of the larger logit's magnitude (at least 1)
# Dense bf16 tensor-core peak, TFLOP/s, by a name in torch.cuda.get_device_name()
PEAK_TFLOPS = {
    "H200": 989,
    "H100": 989,
    "A100": 312,
    "L40S": 362,
    "RTX 6000 Ada": 364,
    "RTX A6000": 155,
    "A10G": 70,
    "L4": 121,
    "RTX 4090": 165,
    "RTX 3090": 71,
}


def random_model(shape: dict, directory: Path, device: str) -> LlamaConfig:
    """A Llama of ``shape`` with random weights, saved in bf16 safetensors to ``directory``."""
    config = LlamaConfig(**shape, max_position_embeddings=4096, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    del model
    return config


def method_settings(method: str, device: str, batch_size: int) -> dict:
    """The default config's settings for ``method`` (LoRA and QLoRA on every linear layer),
    training one batch per step for as many steps as there are batches."""
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["variants"] = {method: {"method": method}}
    if method in ("lora", "qlora", "dora"):
        config["variants"][method] |= {"r": 16, "alpha": 32, "target_modules": ALL_LINEAR}
    settings = resolve_variant(config, method)
    one_batch_steps = {"batch_size": batch_size, "grad_accum": 1, "epochs": 1, "lr": 1e-4}
    return settings | {"device": device} | one_batch_steps


def rows(count: int, length: int, vocab: int) -> pd.DataFrame:
    """Training rows of ``length`` random tokens, the last 8 of them the answer (one row in each
    batch half as long, so that batches are padded as real ones are)."""
    generator = torch.Generator().manual_seed(1)
    lengths = [length // 2 if i % 4 == 3 else length for i in range(count)]
    ids = [torch.randint(2, vocab, (n,), generator=generator).tolist() for n in lengths]
    return pd.DataFrame(
        {
            "input_ids": ids,
            "labels": [[-100] * (n - 8) + row[-8:] for n, row in zip(lengths, ids, strict=True)],
            "n_tokens": lengths,
            "prompt_len": [n - 8 for n in lengths],
        }
    )


def train(
    base_dir: Path, settings: dict, data: pd.DataFrame, work_dir: Path
) -> tuple[torch.nn.Module, dict]:
    """Load, wrap and train as the train job does; the model, and the run's figures: final loss,
    median tokens/s after the first step, and the peak GPU memory of the steps (None on the CPU)."""
    device = settings["device"]
    model, _ = load_trainable_model(settings, base_dir, device)  # bf16, as users run
    trainer = Trainer(model, data, settings, pad_id=0, device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    summary = trainer.run(
        work_dir / "checkpoints", work_dir / "metrics.csv", work_dir / "timing.csv"
    )
    speeds = pd.read_csv(work_dir / "timing.csv")["tokens_per_s"].tolist()
    return model, {
        "steps": summary["steps"],
        "final_loss": summary["final_loss"],
        "tokens_per_s": statistics.median(speeds[1:] or speeds),
        "peak_gib": torch.cuda.max_memory_allocated() / GiB if device == "cuda" else None,
    }


def release(model: torch.nn.Module) -> None:
    """Free a model's memory before the next one is measured (peft models hold reference cycles)."""
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def workload(settings: dict, data: pd.DataFrame, seq_len: int) -> Workload:
    """What the planner estimates for, as the train job asks it: the run's settings, weights in
    the checkpoint's own dtype (bf16) as the train job loads them, on the device the run uses, the
    largest loss window of the run's batches."""
    return Workload(
        settings,
        settings["batch_size"],
        seq_len,
        "auto",
        device=settings["device"],
        loss_window=largest_loss_window(data, settings),
    )


def check_methods(config: LlamaConfig, base_dir: Path, device: str, work: Path, size: dict) -> dict:
    """Every method a few steps on the ~1B model: loss, memory against the planner. Saves the
    LoRA and prefix variants for the generation check."""
    results = {}
    data = rows(size["batch"] * size["steps"], size["seq"], config.vocab_size)
    for method in METHODS:
        settings = method_settings(method, device, size["batch"])
        if method == "zeroshot":
            save_variant(None, settings, base_dir, work / "variants" / method)
            continue
        started = time.perf_counter()
        model, run = train(base_dir, settings, data, work / method)
        if method in ("lora", "prefix"):
            save_variant(model, settings, base_dir, work / "variants" / method)
        release(model)
        estimate = estimate_training(config, workload(settings, data, size["seq"]))
        run |= {"estimate_gib": estimate.peak / GiB, "seconds": time.perf_counter() - started}
        run["finite"] = math.isfinite(run["final_loss"])
        if run["peak_gib"] is not None:
            run["ratio"] = run["peak_gib"] / run["estimate_gib"]
            run["memory_ok"] = abs(run["ratio"] - 1) <= MEMORY_TOLERANCE
        results[method] = run
        print(f"{method}: {run}", flush=True)
    return results


def reference_tokens(model: torch.nn.Module, prompt: list[int], count: int, how: dict) -> list:
    """Step-by-step greedy decoding without a cache, one prompt alone: (token, logits) per step."""
    ids, steps = list(prompt), []
    for _ in range(count):
        with torch.no_grad(), autocast(how["device"], how["precision"]):
            logits = model(input_ids=torch.tensor([ids], device=how["device"])).logits[0, -1]
        token = int(logits.argmax())
        steps.append((token, logits.float()))
        ids.append(token)
        if token in how["stops"]:
            break
    return steps


def check_generation(base_dir: Path, variants: Path, device: str, vocab: int) -> dict:
    """Batched, cached generation against the step-by-step reference, per variant."""
    generator = torch.Generator().manual_seed(2)
    shared = torch.randint(2, vocab, (64,), generator=generator).tolist()
    prompts = [
        torch.randint(2, vocab, (n,), generator=generator).tolist() for n in (20, 57, 90, 133)
    ]
    prompts += [
        shared + torch.randint(2, vocab, (n,), generator=generator).tolist() for n in (5, 9, 30)
    ]
    how = {"device": device, "precision": "auto", "stops": {1}, "max_new_tokens": 8}
    results = {}
    for variant in ("zeroshot", "lora", "prefix"):
        model = prepare_for_inference(load_variant(variants / variant, base_dir, device))
        batched = greedy_generate(
            model,
            prompts,
            stop_ids=sorted(how["stops"]),
            pad_id=0,
            batch_size=4,
            max_new_tokens=how["max_new_tokens"],
            device=device,
        )
        counts = {"prompts": len(prompts), "identical": 0, "near_ties": 0, "mismatches": 0}
        for prompt, tokens in zip(prompts, batched, strict=True):
            reference = reference_tokens(model, prompt, how["max_new_tokens"], how)
            counts[_compare(tokens, reference)] += 1
        results[variant] = counts
        print(f"generation {variant}: {counts}", flush=True)
        release(model)
    return results


def _compare(tokens: list[int], reference: list) -> str:
    """identical, a near tie where the tokens first differ, or a mismatch."""
    if tokens == [token for token, _ in reference]:
        return "identical"
    for token, (expected, logits) in zip(tokens, reference, strict=False):
        if token != expected:
            scale = max(1.0, abs(float(logits[expected])))
            gap = float(logits[expected] - logits[token])
            return "near_ties" if gap <= TIE_TOLERANCE * scale else "mismatches"
    return "mismatches"  # one stopped where the other went on


def flops_per_token(config: LlamaConfig, seq_len: int) -> float:
    """Model FLOPs of one trained token with a frozen base (LoRA, QLoRA): the forward pass and the
    backward pass to the inputs (no weight gradients of the base), 2 + 2 FLOPs per weight of every
    matrix product, plus causal attention (forward one unit, backward two); adapters and the
    recomputation of gradient checkpointing are not counted, as MFU does not count them."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    kv = hidden * config.num_key_value_heads // config.num_attention_heads
    per_layer = hidden * (2 * hidden + 2 * kv) + 3 * hidden * config.intermediate_size
    matmul_weights = layers * per_layer + hidden * config.vocab_size
    attention_forward = 2 * layers * hidden * seq_len  # QK^T and AV, half of them masked
    return 4 * matmul_weights + 3 * attention_forward


def peak_tflops(device: str, override: float | None) -> float | None:
    if override or device != "cuda":
        return override
    name = torch.cuda.get_device_name()
    return next((value for key, value in PEAK_TFLOPS.items() if key in name), None)


def check_throughput(
    config: LlamaConfig, base_dir: Path, device: str, work: Path, size: dict, peak: float | None
) -> dict:
    """LoRA and QLoRA on the 8B model: tokens/s, MFU, memory against the planner."""
    results = {}
    data = rows(size["batch"] * size["steps"], size["seq"], config.vocab_size)
    for method in ("lora", "qlora"):
        settings = method_settings(method, device, size["batch"])
        model, run = train(base_dir, settings, data, work / f"8b-{method}")
        release(model)
        estimate = estimate_training(config, workload(settings, data, size["seq"]))
        achieved = run["tokens_per_s"] * flops_per_token(config, size["seq"])
        run |= {
            "estimate_gib": estimate.peak / GiB,
            "mfu": achieved / (peak * 1e12) if peak else None,
        }
        results[method] = run
        print(f"8b {method}: {run}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "results/bench/gpu.json")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not known")
    parser.add_argument("--smoke", action="store_true", help="tiny dimensions on the CPU")
    args = parser.parse_args()
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU (or --smoke)")
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    sizes = {
        "1b": {"batch": 4, "seq": 512, "steps": 3},
        "8b": {"batch": 4, "seq": 1024, "steps": 6},
    }
    if args.smoke:
        torch.set_num_threads(1)  # tiny matrices: more threads only contend
        sizes = {
            "1b": {"batch": 4, "seq": 64, "steps": 2},
            "8b": {"batch": 4, "seq": 64, "steps": 3},
        }
    started = time.perf_counter()
    peak = peak_tflops(device, args.peak_tflops)
    with tempfile.TemporaryDirectory(prefix="koqa-gpu-") as tmp:
        work = Path(tmp)
        small = random_model(shapes["1b"], work / "1b", device)
        methods = check_methods(small, work / "1b", device, work, sizes["1b"])
        generation = check_generation(work / "1b", work / "variants", device, small.vocab_size)
        large = random_model(shapes["8b"], work / "8b", device)
        throughput = check_throughput(large, work / "8b", device, work, sizes["8b"], peak)
    checks = {
        "losses_finite": all(run["finite"] for run in methods.values()),
        "generation_equivalent": all(r["mismatches"] == 0 for r in generation.values()),
    }
    if device == "cuda":
        checks["memory_within_15pct"] = all(run["memory_ok"] for run in methods.values())
    qlora = throughput["qlora"]["tokens_per_s"]
    report = write_result(
        args.out,
        name="gpu",
        what="QLoRA training of a random-weight Llama-3-8B-shaped model, 4 x 1024 tokens a step",
        unit="tokens/s",
        figure=qlora,
        baseline=f"torchtune Llama-3.1-8B QLoRA, {TORCHTUNE_QLORA_4090} tokens/s on one RTX 4090, "
        "scaled by this device's dense bf16 peak",
        baseline_figure=TORCHTUNE_QLORA_4090 * peak / PEAK_TFLOPS["RTX 4090"] if peak else None,
        target=None,
        device=torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke)",
        torch=torch.__version__,
        cuda=torch.version.cuda,
        peak_tflops_assumed=peak,
        smoke=args.smoke,
        seconds=round(time.perf_counter() - started, 1),
        methods_1b=methods,
        generation_1b=generation,
        throughput_8b=throughput,
        checks=checks,
        passed=all(checks.values()),
    )
    print(f"{'passed' if report['passed'] else 'FAILED'}: {checks}; wrote {args.out}")
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
