"""What cleaning costs a model that copies perfectly, and what post-processing gives back.

    .venv/bin/python bench/postprocess_oracle.py TRAIN_FILE [--config config.yaml]

Cleans a training file as the clean rule does (the config's ``clean`` section), answers every kept
row with its aligned span of the cleaned context (what a model that copies the right span writes),
and runs the post-processing steps (``koqa.predict.answers.decide_steps``, every step on ``auto``)
against the raw gold answers: F1 and EM without and with each step, and the answers the raw
surface changed. No model is involved: it bounds what the steps can do on that data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from koqa.config import load_config
from koqa.data.clean import clean_table
from koqa.data.ingest import read_records
from koqa.predict.answers import STEPS, Contexts, decide_steps, post_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file", type=Path)
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--show", type=int, default=10, help="changed answers to print")
    args = parser.parse_args()
    config = load_config(args.config)
    raw = read_records(args.train_file, required=("answer",))
    kept = clean_table(raw, config["clean"], labelled=True).kept
    written = raw.set_index("id")
    ids = kept["id"].tolist()
    answers = dict(zip(ids, kept["target"].astype(str), strict=True))
    contexts = {
        row_id: Contexts(context, str(written.at[row_id, "context"]))
        for row_id, context in zip(ids, kept["context"], strict=True)
    }
    gold = {row_id: str(written.at[row_id, "answer"]) for row_id in ids}
    steps = post_steps({}, config["clean"], config["predict"]["snap_min_f1"])
    started = time.perf_counter()
    _, records = decide_steps(answers, contexts, gold, dict.fromkeys(STEPS, "auto"), steps)
    seconds = time.perf_counter() - started
    print(f"{args.train_file.name}: {len(ids)} rows kept of {len(raw)}; steps took {seconds:.1f} s")
    for r in records:
        print(
            f"  {r['step']:16} F1 {r['f1_without']:.4f} -> {r['f1_with']:.4f}  "
            f"EM {r['em_without']:.4f} -> {r['em_with']:.4f}  changed {r['changed']:5}  "
            f"used {r['used']}"
        )
    surfaces = {i: steps["raw_surface"](a, contexts[i]) for i, a in answers.items()}
    changed = [i for i in ids if surfaces[i] != answers[i]]
    print(f"raw surface differs from the cleaned span on {len(changed)} rows, e.g.:")
    for row_id in changed[: args.show]:
        print(f"  {answers[row_id]!r} -> {surfaces[row_id]!r}  gold {gold[row_id]!r}")


if __name__ == "__main__":
    main()
