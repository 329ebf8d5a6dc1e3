"""Rule submission: the chosen variant's test answers, validated against the sample submission."""

import pandas as pd

from koqa.files import write_csv
from koqa.runtime import configure_job, job_log
from koqa.submission import build_submission, choose_variant, read_sample_ids

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    board = pd.read_csv(snakemake.input.leaderboard, sep="\t")
    variant = choose_variant(board, snakemake.params.variant)
    predictions = pd.read_csv(
        snakemake.input.predictions[snakemake.params.variants.index(variant)],
        dtype=str,
        keep_default_na=False,
    )
    submission = build_submission(
        predictions, read_sample_ids(snakemake.input.sample), snakemake.params.fallback
    )
    write_csv(submission, snakemake.output[0])
    log.info("submission from %s: %d rows", variant, len(submission))
