"""Rule answers_test: post-process one variant's test generations with the steps its validation
decisions (postprocess.json) kept."""

import pandas as pd

from koqa.data.synonyms import load_synonyms
from koqa.files import read_json, write_csv
from koqa.predict.answers import (
    answer_frame,
    apply_steps,
    cut_answers,
    post_steps,
    row_contexts,
)
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    used = [r["step"] for r in read_json(snakemake.input.decisions)["steps"] if r["used"]]
    answers = apply_steps(
        cut_answers(
            pd.read_csv(snakemake.input.generated, dtype=str, keep_default_na=False),
            snakemake.params.template,
        ),
        row_contexts(
            pd.read_parquet(snakemake.input.rows),
            pd.read_parquet(snakemake.input.raw, columns=["id", "context"]),
        ),
        used,
        post_steps(
            load_synonyms(snakemake.input.synonyms or None),
            snakemake.params.clean,
            snakemake.params.snap_min_f1,
        ),
    )
    write_csv(answer_frame(answers), snakemake.output[0])
    log.info("%d test answers, post-processing steps used: %s", len(answers), used)
