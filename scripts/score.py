"""Rule score: the competition metric (character F1, EM) of one variant on validation, overall and
by answer length, and its worst predictions for error analysis."""

import pandas as pd

from koqa.evaluation import read_answers, score_record, worst_predictions
from koqa.files import write_csv, write_json
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    gold_rows = pd.read_parquet(snakemake.input.gold)
    predictions = read_answers(snakemake.input.predictions)
    gold = dict(zip(gold_rows["id"], gold_rows["answer"], strict=True))
    record = {"variant": snakemake.wildcards.variant, **score_record(predictions, gold)}
    write_json(record, snakemake.output.score)
    write_csv(
        worst_predictions(predictions, gold_rows, snakemake.params.worst), snakemake.output.worst
    )
    log.info("%s", record)
