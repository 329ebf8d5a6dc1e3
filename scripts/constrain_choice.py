"""Rule constrain_choice: score one variant's free and constrained validation generations after the
same answer extraction (each post-processing step decided for each), against the raw gold answers;
keep the better (constrain.json records why)."""

import pandas as pd

from koqa.data.synonyms import load_synonyms
from koqa.files import write_csv, write_json
from koqa.predict.answers import post_steps, validation_answers
from koqa.predict.constrain_choice import constrain_decision
from koqa.runtime import configure_job, job_log
from koqa.score.evaluation import raw_gold

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    rows = pd.read_parquet(snakemake.input.rows)
    raw = pd.read_parquet(snakemake.input.raw, columns=["id", "context", "answer"])
    steps = post_steps(
        load_synonyms(snakemake.input.synonyms or None),
        snakemake.params.clean,
        snakemake.params.snap_min_f1,
    )
    generated, answers = {}, {}
    for kind in ("free", "constrained"):
        generated[kind] = pd.read_csv(snakemake.input[kind], dtype=str, keep_default_na=False)
        answers[kind], _ = validation_answers(
            generated[kind], rows, raw, snakemake.params.template, snakemake.params.policies, steps
        )
    decision = constrain_decision(answers["free"], answers["constrained"], raw_gold(rows, raw))
    chosen = "constrained" if decision["used"] else "free"
    write_csv(generated[chosen], snakemake.output.generated)
    write_json({"variant": snakemake.wildcards.variant, **decision}, snakemake.output.choice)
    log.info("constrained decoding on validation: %s", decision)
