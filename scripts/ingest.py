"""Rule ingest: one raw file (any supported shape) -> a uniform Parquet table."""

from koqa.files import write_parquet
from koqa.ingest import read_records
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    labelled = snakemake.wildcards.part == "train"
    frame = read_records(
        snakemake.input[0],
        fmt=snakemake.params.format,
        encoding=snakemake.params.encoding,
        required=("answer",) if labelled else (),
    )
    write_parquet(frame, snakemake.output[0])
    log.info("read %d rows from %s", len(frame), snakemake.input[0])
