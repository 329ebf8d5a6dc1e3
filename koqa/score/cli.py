"""Score any ``id,answer`` CSV against a labelled CSV with the competition metric.

    koqa-score predictions.csv labelled.csv [--json score.json]
    python -m koqa.score.cli predictions.csv labelled.csv

The labelled file needs ``id`` and ``answer`` columns (a Dacon ``train.csv`` works as is). Every
labelled row counts; a missing prediction scores 0; predictions for unknown ids are ignored and
counted. Prints F1 and EM (0-1), overall and by gold-answer length; exits 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from koqa.data.ingest import InputError
from koqa.files import write_json
from koqa.score.evaluation import read_answers, score_record


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="koqa-score", description=__doc__.split("\n\n")[0].strip()
    )
    parser.add_argument("predictions", type=Path, help="CSV with id,answer columns")
    parser.add_argument("labelled", type=Path, help="CSV with id and answer (gold) columns")
    parser.add_argument("--json", type=Path, help="also write the score record to this file")
    return parser


def format_record(record: dict, unexpected: int) -> str:
    """The score record as a short, aligned text report."""
    lines = [
        f"F1 {record['f1']:.4f}  EM {record['em']:.4f}  "
        f"rows {record['n']}  missing {record['missing']}  unexpected ids {unexpected}",
        "by gold answer length (characters):",
    ]
    lines += [
        f"  {label:>6}  F1 {bucket['f1']:.4f}  EM {bucket['em']:.4f}  rows {bucket['n']}"
        for label, bucket in record["by_length"].items()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        predictions = read_answers(args.predictions)
        gold = read_answers(args.labelled)
    except InputError as err:
        print(f"koqa-score: {err}", file=sys.stderr)
        return 2
    record = score_record(predictions, gold)
    print(format_record(record, unexpected=len(set(predictions) - set(gold))))
    if args.json:
        write_json(record, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
