"""What the CPU benches share: contest-shaped data made from the embedded sample, running each arm in a fresh process (in alternation, so that a change
in the machine's load hits both), the machine they ran on, and the result file's common fields.

Every bench writes ``results/bench/NAME.json`` with at least: ``name``, ``what``, ``unit``,
``figure`` (koqa), ``baseline`` (what koqa is compared with), ``baseline_figure``, ``ratio``
(``figure / baseline_figure``), ``target`` (the ratio the issue asks for, as ``{"at_least": x}`` or
``{"at_most": x}``; None for the GPU check), ``meets_target``, ``machine`` (cores, torch threads, torch version, CPU model,
load average when the bench ended) and ``run_date`` (UTC).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from koqa.files import write_json

REPO = Path(__file__).resolve().parents[1]
# Contest context lengths (characters): mean 902, p95 1,598, max 2,000 -> a log-normal with these.
CONTEXT_MU, CONTEXT_SIGMA, CONTEXT_MIN, CONTEXT_MAX = 6.726, 0.396, 100, 2000
PARTS_PER_CONTEXT = 3
QUESTIONS_PER_CONTEXT = (2, 3, 3, 4)  # mean 3, as in the sample


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    """Cores this process may use, torch's threads and version, the CPU model, the load now."""
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu_cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "load_average": load_average(),
    }


def write_result(
    out: Path,
    *,
    name: str,
    what: str,
    unit: str,
    figure: float,
    baseline: str,
    baseline_figure: float | None,
    target: dict[str, float] | None,
    **details: object,
) -> dict:
    """Write a bench's result (the common fields, then ``details``) to ``out``; return it. Without
    a ``baseline_figure`` (nothing to compare with on this machine) the ratio is None; without a
    ``target``, so is ``meets_target``."""
    ratio = figure / baseline_figure if baseline_figure else None
    meets = None
    if target and ratio is not None:
        ((bound, limit),) = target.items()
        meets = ratio >= limit if bound == "at_least" else ratio <= limit
    result = {
        "name": name,
        "what": what,
        "unit": unit,
        "figure": round(figure, 3),
        "baseline": baseline,
        "baseline_figure": None if baseline_figure is None else round(baseline_figure, 3),
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
        "meets_target": meets,
        **details,
        "machine": machine(),
        "run_date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(result, out)
    print(json.dumps(result, indent=2, ensure_ascii=False), file=sys.stderr)
    return result


def add_arm_arguments(parser: argparse.ArgumentParser, arms: Sequence[str]) -> None:
    """The hidden options of an arm's process: the shared work directory, the arm, its result."""
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--arm", choices=arms, help=argparse.SUPPRESS)
    parser.add_argument("--arm-out", type=Path, help=argparse.SUPPRESS)


def run_as_arm(args: argparse.Namespace, run_arm: Callable[[argparse.Namespace], dict]) -> bool:
    """In an arm's process (``--arm`` given): run it, write its result to ``--arm-out``, True;
    False in the bench's own process."""
    if not args.arm:
        return False
    args.arm_out.write_text(json.dumps(run_arm(args)), encoding="utf-8")
    return True


def run_arms(script: Path, arguments: Sequence[str], arms: Sequence[str], rounds: int) -> dict:
    """Run ``script arguments --arm ARM --arm-out FILE`` for every arm, ``rounds`` times in
    alternation, each in a fresh process; every arm's results (the JSON each process wrote), in
    run order."""
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory(prefix="koqa-bench-") as scratch:
        for _ in range(rounds):
            for arm in arms:
                out = Path(scratch) / f"{arm}.json"
                command = [sys.executable, str(script), *arguments, "--arm", arm]
                subprocess.run([*command, "--arm-out", str(out)], check=True)
                results[arm].append(json.loads(out.read_text(encoding="utf-8")))
                print(f"{arm}: {results[arm][-1].get('seconds')} s", file=sys.stderr)
    return results


def fastest(runs: list[dict]) -> dict:
    """The run with the fewest ``seconds``: the one the machine's load disturbed least."""
    return min(runs, key=lambda run: run["seconds"])


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


def synthetic_set(sample: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` training rows (``id,context,question,answer``) whose contexts each join three
    distinct sample contexts (each ordered triple once)."""
    rng = random.Random(seed)
    by_context: dict[str, dict[str, str]] = {}
    for context, question, answer in zip(
        sample["context"], sample["question"], sample["answer"], strict=True
    ):
        by_context.setdefault(context, {}).setdefault(question, answer)
    contexts = list(by_context)
    used, records = set(), []
    while len(records) < n_rows:
        parts = tuple(rng.sample(contexts, PARTS_PER_CONTEXT))
        if parts in used:
            continue
        used.add(parts)
        context = rng.choice([" ", "\n"]).join(parts)
        pool = {q: a for part in parts for q, a in by_context[part].items()}
        take = min(rng.choice(QUESTIONS_PER_CONTEXT), len(pool), n_rows - len(records))
        for question in rng.sample(sorted(pool), take):
            records.append((context, question, pool[question]))
    frame = pd.DataFrame.from_records(records, columns=["context", "question", "answer"])
    frame.insert(0, "id", [f"BENCH_{i:06d}" for i in range(len(frame))])
    return frame
