"""Benchmark: the F1 of every variant without and with each answer-quality lever, on validation and on
held-out contexts, for one data setup.

    .venv/bin/python bench/quality.py sample              # the embedded sample, default config
    .venv/bin/python bench/quality.py korquad             # KorQuAD 1.0 dev, bench/quality/small-model.yaml
        [--data FILE] [--configfile FILE ...] [--name NAME] [--cores 2] [--levers NAME ...]
        [--synthetic N] [--out results/bench/quality.json]

A setup is a labelled training file and the ``--configfile``\\ s it runs with. Its whole contexts are
split once (seeded) into the rows the pipeline may use (``data.train``; the pipeline holds out its own
validation contexts from them, ``split.validation_fraction``) and a held-out test: the held-out
questions become ``data.test`` and a sample submission, their answers a gold file the pipeline never
reads. Everything is written to a scratch directory, ``results/bench/quality/<name>/`` (``--name``,
default: the setup), which also holds links to the workflow (the data is never copied into the
repository).

Then, for each lever of :data:`LEVERS` (a config overlay, one line each), Snakemake runs in the
scratch directory with the setup's config files plus the lever's overlay, so that only what the
lever changes reruns (training never does; generation only for a lever that changes a generation
setting or asks for it). After each run the harness collects every scored variant's validation F1
(``results/scores/<variant>.json``) and scores its held-out answers (``predictions/<variant>/test.csv``)
against the gold file with :mod:`koqa.score.metric`.

``--synthetic N`` adds N cloze questions per sentence of each training context
(:mod:`synthetic_qa`) as a second training source, ``synthetic``; validation rows stay real
questions (``split.validation_source: train``). With ``--configfile bench/quality/synthetic.yaml``
and its own ``--name``, this is the experiment docs/quality.md reports.

Output: ``results/bench/quality.json`` (one record per run name, lever and variant, with the
post-processing each variant kept on validation, the lever run's wall time and the load averages
after it) and ``results/bench/quality.md`` (one Markdown table per run name: a row per lever, a
column per variant), merged with the other runs' records already there. The first run of a name
trains every variant; later runs reuse its scratch directory and retrain only what changed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from synthetic_qa import synthetic_rows  # noqa: E402

from koqa.data.ingest import read_records  # noqa: E402
from koqa.files import atomic_path, read_json, write_json  # noqa: E402
from koqa.score.evaluation import read_answers, score_record  # noqa: E402

# What a scratch directory links to: the workflow, its code and the embedded resources.
WORKFLOW = ["Snakefile", "config.yaml", "rules", "scripts", "schemas", "envs", "report",
            "resources", "koqa", "profiles", "presets", "bench"]  # fmt: skip
HELDOUT = "heldout"  # the scratch directory's folder of split data
SYNTHETIC = "synthetic"  # the name of the synthetic questions' training source and file
PLACEHOLDER = "answer"  # the sample submission's answer, as the contest's has it
# the leaderboard (validation F1) and the submission, whose inputs are every scored variant's
# held-out answers
TARGETS = ("results/leaderboard.tsv", "results/submission.csv")
# A variant's record of the post-processing it kept on validation: snap.json today, the per-step
# postprocess.json of the answer-quality branch after it
DECISIONS = ("postprocess.json", "snap.json")


@dataclass(frozen=True)
class Setup:
    """A labelled training file and the config files the pipeline runs it with; ``synthetic``: cloze
    questions per sentence of each training context added as a second training source (0: none)."""

    data: Path
    configfiles: tuple[Path, ...] = ()
    test_fraction: float = 0.10
    seed: int = 13
    synthetic: int = 0


SETUPS = {
    "sample": Setup(REPO / "resources/sample/train.csv"),
    "korquad": Setup(
        REPO.parent / "shared/data/korquad/KorQuAD_v1.0_dev.json",
        (REPO / "bench/quality/small-model.yaml",),
    ),
}


@dataclass(frozen=True)
class Lever:
    """One setting to measure: a config overlay built from the setup's variant names, and the rules
    to rerun even though no param of theirs changes (a lever that should change nothing)."""

    name: str
    overlay: Callable[[list[str]], dict]
    forcerun: tuple[str, ...] = ()


# The levers, measured in this order; "baseline" is the config as it is. One line each.
LEVERS = [
    Lever("baseline", lambda v: {}),
    *(
        Lever(f"{step}: {policy}", lambda v, s=step, p=policy: _postprocess(s, p))
        for step in ("strip_wrappers", "trailing_period", "snap", "raw_surface")
        for policy in ("never", "always")
    ),
    Lever("constrain: never", lambda v: {"predict": {"constrain": "never"}}),
    Lever("constrain: always", lambda v: {"predict": {"constrain": "always"}}),
    Lever("ensemble select: all", lambda v: {"ensemble": {"select": "all"}}),
    Lever("ensemble method: vote", lambda v: {"ensemble": {"method": "vote"}}),
    Lever("ensemble method: likelihood", lambda v: {"ensemble": {"method": "likelihood"}}),
    Lever("ensemble: no zeroshot", lambda v: {"ensemble": {"members": _trained(v)}}),
    Lever("share_prefixes: false", lambda v: {"predict": {"share_prefixes": False}}, ("predict",)),
]


def _postprocess(step: str, policy: str) -> dict:
    """The overlay setting one post-processing step's policy."""
    return {"predict": {"postprocess": {step: policy}}}


def _trained(variants: list[str]) -> list[str]:
    """The variants that are not the zero-shot baseline (the ensemble's members without it)."""
    return [v for v in variants if v != "zeroshot"]


def split_heldout(data: Path, out: Path, fraction: float, seed: int) -> dict[str, int]:
    """Write ``out/train.json`` (the rows of the contexts kept for the pipeline, as a JSON list that
    keeps ``answer_start``), ``out/test.csv``, ``out/sample_submission.csv`` and ``out/gold.csv``
    (the held-out contexts' questions, placeholder answers and answers): ``fraction`` of the distinct
    contexts of ``data`` (any labelled file koqa reads), drawn with ``seed``. Returns row counts."""
    rows = read_records(data, required=("answer",))
    contexts = sorted(set(rows["context"]))
    random.Random(seed).shuffle(contexts)
    held = set(contexts[: max(1, round(fraction * len(contexts)))])
    test = rows[rows["context"].isin(held)]
    train = rows[~rows["context"].isin(held)]
    keep = ["id", "context", "question", "answer", "answer_start"]
    records = [
        {k: v for k, v in r.items() if not pd.isna(v)} for r in train[keep].to_dict("records")
    ]
    _write_text(json.dumps(records, ensure_ascii=False), out / "train.json")
    _write_text(test[["id", "context", "question"]].to_csv(index=False), out / "test.csv")
    sample = test[["id"]].assign(answer=PLACEHOLDER)
    _write_text(sample.to_csv(index=False), out / "sample_submission.csv")
    _write_text(test[["id", "answer"]].to_csv(index=False), out / "gold.csv")
    return {"train_rows": len(train), "test_rows": len(test), "test_contexts": len(held)}


def prepare(scratch: Path, setup: Setup) -> Path:
    """Link the workflow into ``scratch``, split the setup's data there, and return the config
    overlay that points ``data`` at the split (paths relative to ``scratch``)."""
    scratch.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW:
        link = scratch / name
        if not link.is_symlink():
            link.symlink_to(REPO / name)
    counts = split_heldout(setup.data, scratch / HELDOUT, setup.test_fraction, setup.seed)
    overlay: dict = {
        "data": {
            "train": f"{HELDOUT}/train.json",
            "test": f"{HELDOUT}/test.csv",
            "sample_submission": f"{HELDOUT}/sample_submission.csv",
        }
    }
    if setup.synthetic:
        counts["synthetic_rows"] = write_synthetic(scratch / HELDOUT, setup.synthetic, setup.seed)
        synthetic = {"path": f"{HELDOUT}/{SYNTHETIC}.json", "name": SYNTHETIC}
        overlay["data"]["train"] = [overlay["data"]["train"], synthetic]
        # validation rows are real questions only; synthetic rows of their contexts do not train
        overlay["split"] = {"validation_source": "train"}
    print(f"held-out split of {setup.data}: {counts}", flush=True)
    return _write_yaml(overlay, scratch / HELDOUT / "data.yaml")


def write_synthetic(folder: Path, per_sentence: int, seed: int) -> int:
    """Write ``folder/synthetic.json``: cloze questions over the contexts of ``folder/train.json``
    (never the held-out ones; :mod:`synthetic_qa`). Returns their number."""
    contexts = dict.fromkeys(
        row["context"] for row in json.loads((folder / "train.json").read_text())
    )
    rows = synthetic_rows(contexts, per_sentence, seed)
    _write_text(json.dumps(rows, ensure_ascii=False), folder / f"{SYNTHETIC}.json")
    return len(rows)


def _write_yaml(data: dict, path: Path) -> Path:
    _write_text(yaml.safe_dump(data, allow_unicode=True), path)
    return path


def _write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` atomically, unless the file holds it already: an unchanged file
    keeps its modification time, so that Snakemake reruns nothing on its account."""
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def snakemake(scratch: Path, configfiles: list[Path], cores: int, *args: str) -> None:
    """Run the workflow in ``scratch`` (its output shown; an error if it fails)."""
    command = [sys.executable, "-m", "snakemake", *args, "--cores", str(cores)]
    command += ["--configfile", *map(str, configfiles)]
    subprocess.run(command, cwd=scratch, check=True, env=os.environ | {"PYTHONPATH": str(REPO)})


def variant_names(configfiles: list[Path]) -> list[str]:
    """The setup's trained variants, as the workflow's effective config has them."""
    from koqa.config import load_config

    return list(load_config(REPO / "config.yaml", *configfiles)["variants"])


def collect(scratch: Path) -> list[dict]:
    """Every scored variant's validation F1 and held-out F1, with the post-processing it kept."""
    gold = read_answers(scratch / HELDOUT / "gold.csv")
    board = pd.read_csv(scratch / "results/leaderboard.tsv", sep="\t", keep_default_na=False)
    records = []
    for variant in board["variant"]:
        validation = read_json(scratch / f"results/scores/{variant}.json")
        test = score_record(read_answers(scratch / f"results/predictions/{variant}/test.csv"), gold)
        decisions = [scratch / f"results/predictions/{variant}/{name}" for name in DECISIONS]
        records.append(
            {
                "variant": variant,
                "validation_f1": round(validation["f1"], 4),
                "validation_n": validation["n"],
                "test_f1": round(test["f1"], 4),
                "test_n": test["n"],
                "postprocessing": next((read_json(p) for p in decisions if p.is_file()), None),
            }
        )
    return records


def markdown(records: list[dict]) -> str:
    """One table per setup: a row per lever, validation / held-out F1 per variant."""
    out = []
    for setup, rows in pd.DataFrame(records).groupby("setup", sort=False):
        cells = rows.assign(f1=rows["validation_f1"].map("{:.3f}".format) + " / "
                            + rows["test_f1"].map("{:.3f}".format))  # fmt: skip
        table = cells.pivot(index="lever", columns="variant", values="f1")
        table = table.loc[list(dict.fromkeys(rows["lever"]))]
        out.append(f"### {setup} (validation F1 / held-out F1)\n\n{table.to_markdown()}\n")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("setup", choices=sorted(SETUPS))
    parser.add_argument("--data", type=Path, help="the labelled file (default: the setup's)")
    parser.add_argument(
        "--configfile",
        type=Path,
        nargs="+",
        default=[],
        help="more config files, after the setup's (e.g. tests/config/test.yaml)",
    )
    parser.add_argument(
        "--name", help="the run's name: its scratch directory and table (default: the setup's)"
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        help="cloze questions per sentence of each training context, added as a training source"
        " (bench/synthetic_qa.py; default: the setup's, none)",
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--levers", nargs="+", help="lever names (default: all of LEVERS)")
    parser.add_argument("--out", type=Path, default=REPO / "results/bench/quality.json")
    args = parser.parse_args()
    setup = SETUPS[args.setup]
    if args.data:
        setup = replace(setup, data=args.data)
    if args.synthetic is not None:
        setup = replace(setup, synthetic=args.synthetic)
    levers = [lever for lever in LEVERS if not args.levers or lever.name in args.levers]
    name = args.name or args.setup
    scratch = REPO / "results/bench/quality" / name
    configfiles = [*setup.configfiles, *map(Path.resolve, args.configfile), prepare(scratch, setup)]
    variants = variant_names(configfiles)
    records = []
    for number, lever in enumerate(levers):
        overlay = _write_yaml(lever.overlay(variants), scratch / f"levers/{number}.yaml")
        forcerun = ["--forcerun", *lever.forcerun] if lever.forcerun else []
        started = time.monotonic()
        snakemake(scratch, [*configfiles, overlay], args.cores, *TARGETS, *forcerun)
        # the wall time of the lever's run, and the machine's load averages (1, 5, 15 min) after it
        run = {"setup": name, "lever": lever.name}
        run |= {"seconds": round(time.monotonic() - started, 1), "loadavg": os.getloadavg()}
        print(f"lever {lever.name!r}: {run['seconds']} s, load {run['loadavg']}", flush=True)
        records += [run | record for record in collect(scratch)]
    previous = json.loads(args.out.read_text()) if args.out.is_file() else []
    records = [r for r in previous if r["setup"] != name] + records
    write_json(records, args.out)
    with atomic_path(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(records), encoding="utf-8")
    print(markdown(records))


if __name__ == "__main__":
    main()
