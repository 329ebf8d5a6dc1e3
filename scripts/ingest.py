"""Rule ingest: the raw file of each source (any supported shape) -> one uniform Parquet table whose
rows carry their ``source``."""

from koqa.data.ingest import check_sample_ids, read_records
from koqa.data.sources import Source, combine_sources
from koqa.files import write_parquet
from koqa.runtime import configure_job, job_log
from koqa.score.submission import read_sample_ids

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    labelled = snakemake.wildcards.part == "train"
    frames = []
    for path, reading in zip(snakemake.input.raw, snakemake.params.sources, strict=True):
        source = Source(path=path, **reading)
        frame = read_records(
            path,
            fmt=source.format,
            encoding=source.encoding,
            required=("answer",) if labelled else (),
        )
        log.info("%s: read %d rows from %s", source.name, len(frame), path)
        frames.append((source, frame))
    if not labelled:
        sample = snakemake.input.sample
        check_sample_ids(frames[0][1], frames[0][0].path, read_sample_ids(sample), sample)
    write_parquet(combine_sources(frames), snakemake.output[0])
