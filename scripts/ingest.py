"""Rule ingest: one raw file (any supported shape) -> a uniform Parquet table."""

from koqa.data.ingest import check_sample_ids, read_records
from koqa.files import write_parquet
from koqa.runtime import configure_job, job_log
from koqa.score.submission import read_sample_ids

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    labelled = snakemake.wildcards.part == "train"
    frame = read_records(
        snakemake.input.raw,
        fmt=snakemake.params.format,
        encoding=snakemake.params.encoding,
        required=("answer",) if labelled else (),
    )
    if not labelled:
        sample = snakemake.input.sample
        check_sample_ids(frame, snakemake.input.raw, read_sample_ids(sample), sample)
    write_parquet(frame, snakemake.output[0])
    log.info("read %d rows from %s", len(frame), snakemake.input.raw)
