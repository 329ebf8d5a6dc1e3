"""Rule train: fine-tune one variant (or, for zeroshot, record that there is nothing to train)."""

from pathlib import Path

from koqa.runtime import configure_job, job_log

settings = snakemake.params.settings
configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    from koqa.training_job import run_training

    summary = run_training(
        settings,
        shard_dir=Path(snakemake.input.shards),
        base_dir=Path(snakemake.params.model),
        out_dir=Path(snakemake.output.adapter),
        checkpoint_dir=Path(snakemake.params.checkpoints),
        metrics_path=Path(snakemake.output.metrics),
        summary_path=Path(snakemake.output.summary),
        trust_remote_code=snakemake.params.trust_remote_code,
    )
    log.info("summary: %s", summary)
