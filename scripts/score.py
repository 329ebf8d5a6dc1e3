"""Rule score: the competition metric (character F1, EM) of one variant on validation, overall and
by answer length, against the raw (uncleaned) gold answers the grader uses, and its worst
predictions for error analysis."""

import pandas as pd

from koqa.files import write_csv, write_json
from koqa.runtime import configure_job, job_log
from koqa.score.evaluation import evaluate, raw_gold, read_answers
from koqa.tracking import log_score

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    rows = pd.read_parquet(snakemake.input.rows)
    gold = raw_gold(rows, pd.read_parquet(snakemake.input.raw, columns=["id", "answer"]))
    predictions = read_answers(snakemake.input.predictions)
    record, worst = evaluate(predictions, gold, rows, snakemake.params.worst)
    write_json({"variant": snakemake.wildcards.variant, **record}, snakemake.output.score)
    write_csv(worst, snakemake.output.worst)
    log.info("%s", record)
    log_score(snakemake.config["tracking"], snakemake.wildcards.variant, record)
