"""Rule answers_test: post-process one variant's test generations, snapped to the context if the
variant's validation decision (snap.json) says so."""

import pandas as pd

from koqa.data.synonyms import load_synonyms
from koqa.files import read_json, write_csv
from koqa.predict.answers import final_answers, snap_aligner
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    snap = read_json(snakemake.input.snap)["used"]
    answers = final_answers(
        pd.read_csv(snakemake.input.generated, dtype=str, keep_default_na=False),
        pd.read_parquet(snakemake.input.rows),
        template=snakemake.params.template,
        snap=snap,
        aligner=snap_aligner(
            load_synonyms(snakemake.input.synonyms or None),
            snakemake.params.clean,
            snakemake.params.snap_min_f1,
        ),
    )
    write_csv(answers, snakemake.output[0])
    log.info("%d test answers, snapped: %s", len(answers), snap)
