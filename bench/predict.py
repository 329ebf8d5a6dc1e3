"""Benchmark: koqa's greedy prediction against batched ``model.generate`` on the same prompts.

    .venv/bin/python bench/predict.py [--contexts 80] [--rounds 2] [--repeats 2] [--single 48]
                                      [--threads 2] [--out results/bench/predict.json]

Set-up (not timed): the default config's tiny Llama and byte-level BPE, fine-tuned in full for
``--train-steps`` steps on contest-shaped rows (``benchlib.contest_shaped_rows``) so that it answers
in a few tokens and stops, as a trained variant does. The prompts are the test prompts of
``--contexts`` contest-shaped contexts carrying 2-4 questions each (``benchlib.synthetic_set``),
tokenized by koqa's tokenize stage; ``max_new_tokens`` is what ``auto`` resolves to from the
training answers. Every arm stops a row at EOS or at a token whose text holds a line break.

Measured, each arm in a fresh process (``--threads``), the arms alternating ``--rounds`` times and
timed ``--repeats`` times each (the fastest pass counts), loading excluded:

- koqa: :func:`koqa.predict.generate.greedy_generate` with the config's ``predict.batch_size``
  (shared prefixes run once, finished rows leave the batch);
- the baseline: ``model.generate`` in batches of 16, left-padded, KV cache, greedy, the same stop
  tokens as ``eos_token_id``; prompts sorted by length first (less padding);
- koqa constrained: the same with ``predict.constrain`` (decoding only spans of each prompt's
  context, :mod:`koqa.predict.constrain`; the index built in every pass): what the mask costs;
- one at a time: ``model.generate`` on each prompt alone (what a text-generation pipeline called
  per prompt does), on the first ``--single`` prompts.

``figure`` and ``baseline_figure`` are answers per second (target ratio at least 2). Tokens are
compared: ``same_tokens`` counts the prompts where koqa and the baseline generate the same ids, and
every prompt where they differ is checked against a full forward pass of that prompt alone at the
first differing step (which arm took its argmax, and the gap between the two tokens' logits).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from benchlib import (
    REPO,
    add_arm_arguments,
    contest_shaped_rows,
    fastest,
    run_arms,
    run_as_arm,
    synthetic_set,
    write_result,
)

from koqa.runtime import configure_job, peak_rss_mb

ARMS = ("koqa", "constrained", "batched", "single")
BASELINE_BATCH = 16
TARGET_RATIO = 2.0
SEED = 5
RANDOM_STD = 0.2  # of the untrained model's matrices (--train-steps 0)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", type=int, default=80, help="contest-shaped contexts")
    parser.add_argument(
        "--train-steps", type=int, default=60, help="of the tiny model, set-up (0: random weights)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="the arms alternate this often")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per arm process")
    parser.add_argument("--single", type=int, default=48, help="prompts of the one-at-a-time row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "results/bench/predict.json")
    add_arm_arguments(parser, ARMS)
    return parser.parse_args()


def _prompts(work: Path) -> list[list[int]]:
    """The prompts' token ids the set-up wrote."""
    return [ids.tolist() for ids in pd.read_parquet(work / "prompts.parquet")["ids"]]


def _stop_at(tokens: list[int], stops: set[int]) -> list[int]:
    """``tokens`` up to and including the first stop token."""
    for i, token in enumerate(tokens):
        if token in stops:
            return tokens[: i + 1]
    return tokens


def run_arm(args: argparse.Namespace) -> dict:
    """One arm in this (fresh) process: load, answer every prompt ``--repeats`` times."""
    configure_job(args.threads)
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from koqa.data.tokenizer import load_text_tokenizer
    from koqa.predict.constrain import ContextConstraint, SpanIndex
    from koqa.predict.generate import greedy_generate, prepare_for_inference

    job = json.loads((args.work / "job.json").read_text(encoding="utf-8"))
    prompts = _prompts(args.work)
    stops, budget, pad_id = set(job["stop_ids"]), job["max_new_tokens"], job["pad_id"]
    model = AutoModelForCausalLM.from_pretrained(args.work / "model", dtype=torch.float32).eval()

    if args.arm in ("koqa", "constrained"):
        model = prepare_for_inference(model)
        tokenizer = load_text_tokenizer(args.work / "model").tokenizer
        contexts = pd.read_parquet(args.work / "prompts.parquet")["context"].tolist()

        def answer_all() -> list[list[int]]:
            # constrained: the token index and each context's matches are built in every pass,
            # as the predict job builds them
            constraint = (
                ContextConstraint(SpanIndex(tokenizer, sorted(stops)), contexts)
                if args.arm == "constrained"
                else None
            )
            return greedy_generate(
                model,
                prompts,
                stop_ids=sorted(stops),
                pad_id=pad_id,
                batch_size=job["batch_size"],
                max_new_tokens=budget,
                device="cpu",
                constraint=constraint,
            )

    else:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(args.work / "model")
        tokenizer.padding_side = "left"
        if args.arm == "single":
            prompts = prompts[: args.single]
        batch = BASELINE_BATCH if args.arm == "batched" else 1

        @torch.inference_mode()
        def answer_all() -> list[list[int]]:
            answers: list[list[int]] = [[] for _ in prompts]
            order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
            for start in range(0, len(order), batch):
                rows = order[start : start + batch]
                inputs = tokenizer.pad(
                    {"input_ids": [prompts[i] for i in rows]}, return_tensors="pt"
                )
                output = model.generate(
                    **inputs,
                    max_new_tokens=budget,
                    do_sample=False,
                    use_cache=True,
                    eos_token_id=sorted(stops),
                    pad_token_id=pad_id,
                )
                for i, tokens in zip(rows, output[:, inputs["input_ids"].shape[1] :], strict=True):
                    answers[i] = _stop_at(tokens.tolist(), stops)
            return answers

    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        answers = answer_all()
        times.append(time.perf_counter() - started)
    return {
        "seconds": min(times),
        "answers_per_s": len(prompts) / min(times),
        "all_seconds": [round(t, 3) for t in times],
        "prompts": len(prompts),
        "generated_tokens": sum(map(len, answers)),
        "peak_rss_mb": peak_rss_mb(),
        "answers": answers,
    }


def _set_up(args: argparse.Namespace) -> dict:
    """Train the tiny model briefly and tokenize the prompts into ``args.work``; what the arms
    share (``job.json``)."""
    import torch

    from koqa.config import load_config
    from koqa.data.ingest import read_records
    from koqa.data.prompt import build_layout
    from koqa.data.shards import encode_split
    from koqa.data.tokenizer import load_text_tokenizer
    from koqa.model.basemodel import build_tiny_llama, train_bpe_tokenizer
    from koqa.predict.generate import answer_token_budget, stop_token_ids
    from koqa.train.loop import Trainer
    from koqa.train.variants import resolve_variant

    config = load_config(REPO / "config.yaml")  # the tiny model's settings
    sample = read_records(REPO / config["data"]["train"], required=("answer",))
    # rows for max_new_tokens even when nothing is trained
    train_frame = contest_shaped_rows(sample, max(args.train_steps, 1) * 8, SEED)
    test_frame = synthetic_set(sample, args.contexts * 3, SEED)
    texts = [*sample["context"], *sample["question"], *sample["answer"]]
    hf_tokenizer = train_bpe_tokenizer(texts, config["model"]["tiny"]["vocab_size"])
    model = build_tiny_llama(hf_tokenizer, config["model"]["tiny"], seed=SEED)
    hf_tokenizer.save_pretrained(args.work / "model")
    tokenizer = load_text_tokenizer(args.work / "model")
    layout = build_layout(config["prompt"]["template"], tokenizer)
    max_seq_len = config["prompt"]["max_seq_len"]
    train_frame = train_frame.assign(
        answer_start=[
            c.find(t) for c, t in zip(train_frame["context"], train_frame["target"], strict=True)
        ]
    )
    rows = encode_split(train_frame, tokenizer, layout, max_seq_len, "train").rows.to_pandas()
    train = copy.deepcopy(config["train"]) | {"device": "cpu"}
    settings = resolve_variant({"train": train, "variants": {"full": {"method": "full"}}}, "full")
    settings |= {"epochs": 1, "lr": 3e-3, "checkpoint_every": 10**6}
    torch.manual_seed(SEED)
    losses = None
    if args.train_steps:
        with tempfile.TemporaryDirectory() as scratch:
            trainer = Trainer(model, rows, settings, hf_tokenizer.pad_token_id, device="cpu")
            summary = trainer.run(Path(scratch), Path(scratch) / "metrics.csv")
        losses = [summary["first_loss"], summary["final_loss"]]
    else:  # random matrices large enough for sharp attention, as a trained model has: every
        # decoding step's argmax then depends on the positions and the context it attends to
        with torch.no_grad():
            for weight in model.parameters():
                if weight.dim() > 1:
                    weight.normal_(0, RANDOM_STD)
    model.save_pretrained(args.work / "model", safe_serialization=True)
    test = encode_split(test_frame, tokenizer, layout, max_seq_len, "test").rows.to_pandas()
    prompts = [ids[:n] for ids, n in zip(test["input_ids"], test["prompt_len"], strict=True)]
    contexts = [  # the part of each context its prompt holds, for constrained decoding
        context[start:end]
        for context, start, end in zip(
            test_frame.set_index("id").loc[test["id"], "context"],
            test["context_start"],
            test["context_end"],
            strict=True,
        )
    ]
    pd.DataFrame({"ids": prompts, "context": contexts}).to_parquet(args.work / "prompts.parquet")
    predict = config["predict"]
    job = {
        "stop_ids": stop_token_ids(tokenizer.tokenizer, tokenizer.eos_id),
        "max_new_tokens": answer_token_budget(
            rows["n_tokens"] - rows["prompt_len"],
            predict["max_new_tokens_quantile"],
            predict["max_new_tokens_margin"],
        ),
        "pad_id": hf_tokenizer.pad_token_id,
        "batch_size": predict["batch_size"],
        "training_loss": losses,
        "prompts": len(prompts),
        "mean_prompt_tokens": round(float(test["prompt_len"].mean()), 1),
    }
    (args.work / "job.json").write_text(json.dumps(job), encoding="utf-8")
    return job


def explain_differences(work: Path, koqa: list, baseline: list) -> dict:
    """For each prompt whose tokens differ: a full forward pass of the prompt and the tokens both
    arms agree on, alone; which arm took its argmax and the gap between the two tokens' logits."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32).eval()
    prompts = _prompts(work)
    cases = []
    for i, (ours, theirs) in enumerate(zip(koqa, baseline, strict=True)):
        if ours == theirs:
            continue
        step = next((k for k, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
        if step is None:  # one stopped where the other went on
            cases.append({"prompt": i, "step": min(len(ours), len(theirs)), "kind": "length"})
            continue
        with torch.inference_mode():
            ids = torch.tensor([prompts[i] + ours[:step]])
            logits = model(input_ids=ids).logits[0, -1]
        best = int(logits.argmax())
        cases.append(
            {
                "prompt": i,
                "step": step,
                "alone_argmax_is": "koqa"
                if best == ours[step]
                else "baseline"
                if best == theirs[step]
                else "neither",
                "logit_gap": round(float(logits[ours[step]] - logits[theirs[step]]), 6),
            }
        )
    return {"differing": len(cases), "cases": cases}


def main() -> None:
    args = _arguments()
    if run_as_arm(args, run_arm):
        return
    with tempfile.TemporaryDirectory(prefix="koqa-predict-") as work:
        args.work = Path(work)
        job = _set_up(args)
        print(f"set-up: {job}", file=sys.stderr)
        passed = [f"--{k}={getattr(args, k)}" for k in ("threads", "work", "repeats", "single")]
        runs = run_arms(Path(__file__), passed, ARMS, args.rounds)
        best = {arm: fastest(arm_runs) for arm, arm_runs in runs.items()}
        answers = {arm: run.pop("answers") for arm, run in best.items()}
        for arm_runs in runs.values():
            for run in arm_runs:
                run.pop("answers", None)
        same = sum(a == b for a, b in zip(answers["koqa"], answers["batched"], strict=True))
        differences = explain_differences(args.work, answers["koqa"], answers["batched"])
    single_same = sum(a == b for a, b in zip(answers["koqa"], answers["single"], strict=False))
    constrained_same = sum(
        a == b for a, b in zip(answers["koqa"], answers["constrained"], strict=True)
    )
    write_result(
        args.out,
        name="predict",
        what="greedy answers to contest-shaped test prompts, tiny Llama on the CPU",
        unit="answers/s",
        figure=best["koqa"]["answers_per_s"],
        baseline=f"model.generate, batches of {BASELINE_BATCH} sorted by length, left padding, "
        "KV cache, greedy, the same stop tokens",
        baseline_figure=best["batched"]["answers_per_s"],
        target={"at_least": TARGET_RATIO},
        one_at_a_time={
            "what": "model.generate on one prompt at a time",
            "figure": round(best["single"]["answers_per_s"], 3),
            "ratio": round(best["koqa"]["answers_per_s"] / best["single"]["answers_per_s"], 3),
            "prompts": best["single"]["prompts"],
            "same_tokens_as_koqa": single_same,
        },
        constrained={
            "what": "koqa with predict.constrain (decoding only spans of each prompt's context)",
            "figure": round(best["constrained"]["answers_per_s"], 3),
            "ratio_to_free": round(
                best["constrained"]["answers_per_s"] / best["koqa"]["answers_per_s"], 3
            ),
            "same_tokens_as_free": constrained_same,
        },
        same_tokens=same,
        prompts=len(answers["koqa"]),
        token_differences=differences,
        set_up=job,
        arms=best,
        runs=runs,
        threads=args.threads,
    )


if __name__ == "__main__":
    main()
