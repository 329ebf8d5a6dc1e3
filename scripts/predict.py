"""Rule predict: batched greedy generation of one variant for one split (validation or test)."""

from pathlib import Path

from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    from koqa.prediction_job import run_prediction

    timing = run_prediction(
        variant_dir=Path(snakemake.input.adapter),
        base_dir=Path(snakemake.params.model),
        shard_dir=Path(snakemake.input.shards),
        train_shard_dir=Path(snakemake.input.train_shards),
        out_csv=Path(snakemake.output.generated),
        out_timing=Path(snakemake.output.timing),
        options=snakemake.params.options,
        device=snakemake.params.device,
        precision=snakemake.params.precision,
        trust_remote_code=snakemake.params.trust_remote_code,
    )
    log.info("%s", timing)
