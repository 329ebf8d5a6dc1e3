"""Rule train: fine-tune one variant (or, for zeroshot, record that there is nothing to train).

Given more than one GPU, or more than one node (``resources: nodes``, on SLURM), the job trains
data-parallel: one torchrun worker per GPU on every node. A Hub id is looked up in the local cache
(the download_model rule, upstream, fetched it if that is allowed).

The job claims its GPUs from the machine's pool (koqa.gpus) and, before loading any weight, checks
that the training step's estimated peak memory fits them (koqa.train.memory)."""

from koqa.gpus import claim_gpus
from koqa.model.modelpath import resolve_model_dir
from koqa.runtime import configure_job, job_log
from koqa.tracking import log_training

settings = snakemake.params.settings
gpus = int(snakemake.resources.get("gpu", 0))
nodes = int(snakemake.resources.get("nodes", 1))
configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log, claim_gpus(gpus):
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
        "timing_path": snakemake.output.timing,
        "summary_path": snakemake.output.summary,
        "plot_path": snakemake.output.plot,
        "trust_remote_code": snakemake.params.trust_remote_code,
        "dtype": snakemake.params.dtype,
    }
    if settings["method"] != "zeroshot":
        from koqa.train.memory import check_job_fits

        check_job_fits(
            snakemake.config,
            settings["name"],
            job["base_dir"],
            job["shard_dir"],
            nodes * max(gpus, 1),
        )
    if (gpus > 1 or nodes > 1) and settings["method"] != "zeroshot":
        from koqa.train.distributed import launch

        log.info("training on %d node(s) x %d GPU(s), one process each", nodes, max(gpus, 1))
        launch(job, nproc_per_node=max(gpus, 1), threads=snakemake.threads, nodes=nodes, gpus=gpus)
    else:
        from koqa.train.job import run_training

        log.info("summary: %s", run_training(**job))
    log_training(
        snakemake.config["tracking"], settings, snakemake.output.metrics, snakemake.output.summary
    )
