"""Rule submission: validate the draft as the grader reads it; only a valid draft becomes
results/submission.csv (a failed check fails the job and writes nothing)."""

import shutil

from koqa.files import atomic_path
from koqa.runtime import configure_job, job_log
from koqa.score.submission import check_submission_file, read_sample_ids

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    rows = check_submission_file(snakemake.input.draft, read_sample_ids(snakemake.input.sample))
    with atomic_path(snakemake.output[0]) as tmp:
        shutil.copyfile(snakemake.input.draft, tmp)
    log.info("submission valid: %d rows", rows)
