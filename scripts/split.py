"""Rule split: deterministic train/validation split grouped by context, validation from one source,
training rows of weighted sources repeated."""

import pandas as pd

from koqa.data.split import split_sources
from koqa.files import write_json, write_parquet
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    options = snakemake.params.options
    train, validation, report = split_sources(
        pd.read_parquet(snakemake.input[0]),
        options["validation_fraction"],
        options["seed"],
        options["validation_source"],
        options["weights"],
    )
    write_parquet(train, snakemake.output.train)
    write_parquet(validation, snakemake.output.validation)
    write_json(report, snakemake.output.report)
    log.info(
        "train %d rows, validation %d rows; by source: %s", len(train), len(validation), report
    )
