"""Rule train: fine-tune one variant (or, for zeroshot, record that there is nothing to train).

Given more than one GPU, the job trains data-parallel: one torchrun worker per GPU. A Hub id is
looked up in the local cache (the download_model rule, upstream, fetched it if that is allowed)."""

from koqa.model.modelpath import resolve_model_dir
from koqa.runtime import configure_job, job_log

settings = snakemake.params.settings
configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    job = {
        "settings": settings,
        "shard_dir": snakemake.input.shards,
        "validation_dir": snakemake.input.validation or None,
        "base_dir": str(
            resolve_model_dir(
                snakemake.params.model,
                snakemake.params.trust_remote_code,
                download_record=snakemake.input.get("download") or None,
            )
        ),
        "out_dir": snakemake.output.adapter,
        "checkpoint_dir": snakemake.params.checkpoints,
        "metrics_path": snakemake.output.metrics,
        "summary_path": snakemake.output.summary,
        "plot_path": snakemake.output.plot,
        "trust_remote_code": snakemake.params.trust_remote_code,
    }
    gpus = int(snakemake.resources.get("gpu", 0))
    if gpus > 1 and settings["method"] != "zeroshot":
        from koqa.train.distributed import launch

        log.info("training on %d GPUs, one process each", gpus)
        launch(job, nproc=gpus, threads=snakemake.threads)
    else:
        from koqa.train.job import run_training

        log.info("summary: %s", run_training(**job))
