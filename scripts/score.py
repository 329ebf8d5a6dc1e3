"""Rule score: the competition metric (character F1, EM) of one variant on validation."""

from dataclasses import asdict

import pandas as pd

from koqa.files import write_json
from koqa.metric import score
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    gold = pd.read_parquet(snakemake.input.gold)
    predictions = pd.read_csv(snakemake.input.predictions, dtype=str, keep_default_na=False)
    result = score(
        dict(zip(predictions["id"], predictions["answer"], strict=True)),
        dict(zip(gold["id"], gold["answer"], strict=True)),
    )
    write_json({"variant": snakemake.wildcards.variant, **asdict(result)}, snakemake.output[0])
    log.info("%s: %s", snakemake.wildcards.variant, result)
