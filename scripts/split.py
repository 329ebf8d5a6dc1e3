"""Rule split: deterministic train/validation split grouped by context."""

import pandas as pd

from koqa.data.split import split_by_context
from koqa.files import write_parquet
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    options = snakemake.params.options
    train, validation = split_by_context(
        pd.read_parquet(snakemake.input[0]), options["validation_fraction"], options["seed"]
    )
    write_parquet(train, snakemake.output.train)
    write_parquet(validation, snakemake.output.validation)
    log.info("train %d rows, validation %d rows", len(train), len(validation))
