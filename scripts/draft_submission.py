"""Rule draft_submission: the chosen variant's test answers in the sample submission's order."""

import pandas as pd

from koqa.files import write_csv
from koqa.runtime import configure_job, job_log
from koqa.score.submission import (
    choose_variant,
    draft_submission,
    read_leaderboard,
    read_sample_ids,
)

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    board = read_leaderboard(snakemake.input.leaderboard)
    variant = choose_variant(board, snakemake.params.variant)
    predictions = pd.read_csv(
        snakemake.input.predictions[snakemake.params.scored.index(variant)],
        dtype=str,
        keep_default_na=False,
    )
    draft = draft_submission(
        predictions, read_sample_ids(snakemake.input.sample), snakemake.params.fallback
    )
    write_csv(draft, snakemake.output[0])
    log.info(
        "draft from %s: %d rows, %d empty answers replaced by %r",
        variant,
        len(draft),
        int((predictions["answer"].str.strip() == "").sum()),
        snakemake.params.fallback,
    )
