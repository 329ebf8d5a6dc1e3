"""Rule answers: post-process one variant's generations, snap to the context if validation says so."""

import pandas as pd

from koqa.answers import final_answers
from koqa.files import write_csv, write_json
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    splits = ("validation", "test")
    finals, decision = final_answers(
        {
            split: pd.read_csv(snakemake.input[split], dtype=str, keep_default_na=False)
            for split in splits
        },
        {split: pd.read_parquet(snakemake.input[f"{split}_rows"]) for split in splits},
        template=snakemake.params.template,
        policy=snakemake.params.snap,
        min_f1=snakemake.params.snap_min_f1,
    )
    for split in splits:
        write_csv(finals[split], snakemake.output[split])
    write_json({"variant": snakemake.wildcards.variant, **decision}, snakemake.output.snap)
    log.info("snapping on validation: %s", decision)
