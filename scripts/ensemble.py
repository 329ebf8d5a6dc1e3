"""Rule ensemble: majority vote over the member variants' answers for one split."""

import pandas as pd

from koqa.files import write_csv
from koqa.predict.ensemble import ensemble_answers
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    members = {
        name: pd.read_csv(path, dtype=str, keep_default_na=False)
        for name, path in zip(snakemake.params.members, snakemake.input, strict=True)
    }
    answers = ensemble_answers(members)
    write_csv(answers, snakemake.output[0])
    log.info("ensemble of %s: %d answers", list(members), len(answers))
