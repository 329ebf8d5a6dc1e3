"""Rule likelihood: one ensemble member's mean log-probability of every candidate answer (the
distinct answers of all members) of one split, for the likelihood ensemble. The job claims its GPU
from the machine's pool (koqa.gpus), as predict does."""

from pathlib import Path

import pandas as pd

from koqa.gpus import claim_gpus
from koqa.model.modelpath import resolve_model_dir
from koqa.predict.ensemble import read_member_answers
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log, claim_gpus(int(snakemake.resources.get("gpu", 0))):
    from koqa.predict.likelihood import run_likelihood

    result = run_likelihood(
        variant_dir=Path(snakemake.input.adapter),
        base_dir=resolve_model_dir(
            snakemake.params.model,
            snakemake.params.trust_remote_code,
            download_record=snakemake.input.get("download") or None,
        ),
        rows=pd.read_parquet(snakemake.input.rows, columns=["id", "context", "question"]),
        shard_dir=Path(snakemake.input.shards),
        answers=list(
            read_member_answers(snakemake.params.members, snakemake.input.answers).values()
        ),
        prompt=snakemake.params.prompt,
        clean_options=snakemake.params.clean,
        out_path=Path(snakemake.output[0]),
        # the batch size does not change the scores: read from the config, so that changing it
        # reruns nothing
        batch_size=snakemake.config["predict"]["batch_size"],
        device=snakemake.params.device,
        precision=snakemake.params.precision,
        trust_remote_code=snakemake.params.trust_remote_code,
        dtype=snakemake.params.dtype,
    )
    log.info("%d candidates scored", len(result))
