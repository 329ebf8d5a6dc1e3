"""Rule answers_validation: post-process one variant's validation generations and decide, against
the raw gold answers, whether snapping to the context raises F1."""

import pandas as pd

from koqa.data.synonyms import load_synonyms
from koqa.files import write_csv, write_json
from koqa.predict.answers import snap_aligner, validation_answers
from koqa.runtime import configure_job, job_log
from koqa.score.evaluation import raw_gold

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    rows = pd.read_parquet(snakemake.input.rows)
    answers, decision = validation_answers(
        pd.read_csv(snakemake.input.generated, dtype=str, keep_default_na=False),
        rows,
        raw_gold(rows, pd.read_parquet(snakemake.input.raw, columns=["id", "answer"])),
        template=snakemake.params.template,
        policy=snakemake.params.snap,
        aligner=snap_aligner(
            load_synonyms(snakemake.input.synonyms or None),
            snakemake.params.clean,
            snakemake.params.snap_min_f1,
        ),
    )
    write_csv(answers, snakemake.output.answers)
    write_json({"variant": snakemake.wildcards.variant, **decision}, snakemake.output.snap)
    log.info("snapping on validation: %s", decision)
