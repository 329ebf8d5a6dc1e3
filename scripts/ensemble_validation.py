"""Rule ensemble_validation: choose the ensemble's members (and method) on the validation split,
record the choice, and write its validation answers."""

import pandas as pd

from koqa.files import write_csv, write_json
from koqa.predict.answers import answer_frame
from koqa.predict.ensemble import choose_ensemble, load_combines
from koqa.runtime import configure_job, job_log
from koqa.score.evaluation import raw_gold

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    rows = pd.read_parquet(snakemake.input.rows, columns=["id"])
    gold = raw_gold(rows, pd.read_parquet(snakemake.input.raw, columns=["id", "answer"]))
    combines = load_combines(
        snakemake.params.method,
        snakemake.params.members,
        snakemake.input.answers,
        snakemake.input.likelihoods,
    )
    decision = choose_ensemble(snakemake.params.members, combines, gold, snakemake.params.select)
    write_csv(
        answer_frame(combines[decision["method"]](decision["members"])), snakemake.output.answers
    )
    write_json(decision, snakemake.output.decision)
    log.info("ensemble chosen on validation: %s", decision)
