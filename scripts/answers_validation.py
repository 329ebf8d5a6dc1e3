"""Rule answers_validation: post-process one variant's validation generations, deciding each step
(koqa.predict.answers.STEPS) against the raw gold answers, and record the decisions."""

import pandas as pd

from koqa.data.synonyms import load_synonyms
from koqa.files import write_csv, write_json
from koqa.predict.answers import answer_frame, post_steps, validation_answers
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    rows = pd.read_parquet(snakemake.input.rows)
    raw = pd.read_parquet(snakemake.input.raw, columns=["id", "context", "answer"])
    answers, records = validation_answers(
        pd.read_csv(snakemake.input.generated, dtype=str, keep_default_na=False),
        rows,
        raw,
        snakemake.params.template,
        snakemake.params.policies,
        post_steps(
            load_synonyms(snakemake.input.synonyms or None),
            snakemake.params.clean,
            snakemake.params.snap_min_f1,
        ),
    )
    write_csv(answer_frame(answers), snakemake.output.answers)
    write_json(
        {"variant": snakemake.wildcards.variant, "steps": records}, snakemake.output.decisions
    )
    for record in records:
        log.info("post-processing on validation: %s", record)
