"""Rule clean: normalize text, drop unusable training rows with a reason (capped sources keep a
seeded sample), align answers."""

import pandas as pd

from koqa.data.clean import clean_table
from koqa.data.synonyms import load_synonyms
from koqa.files import write_json, write_parquet
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    synonyms = load_synonyms(snakemake.input.synonyms or None)
    report, dropped = {}, []
    for part in ("train", "test"):
        result = clean_table(
            pd.read_parquet(snakemake.input[part]),
            snakemake.params.options,
            labelled=part == "train",
            synonyms=synonyms,
            caps=snakemake.params.caps if part == "train" else None,
            seed=snakemake.params.cap_seed or 0,
        )
        write_parquet(result.kept, snakemake.output[part])
        dropped.append(result.dropped.assign(part=part))
        report[part] = result.report
        log.info("%s: %s", part, result.report)
    write_parquet(pd.concat(dropped, ignore_index=True), snakemake.output.dropped)
    write_json(report, snakemake.output.report)
