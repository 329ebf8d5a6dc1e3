"""Rule predict: batched greedy generation of one variant for one split (validation or test).

A Hub id is looked up in the local cache (the download_model rule, upstream, fetched it if allowed).
The job claims its GPU from the machine's pool (koqa.gpus)."""

from pathlib import Path

from koqa.gpus import claim_gpus
from koqa.model.modelpath import resolve_model_dir
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log, claim_gpus(int(snakemake.resources.get("gpu", 0))):
    from koqa.predict.job import run_prediction

    timing = run_prediction(
        variant_dir=Path(snakemake.input.adapter),
        base_dir=resolve_model_dir(
            snakemake.params.model,
            snakemake.params.trust_remote_code,
            download_record=snakemake.input.get("download") or None,
        ),
        shard_dir=Path(snakemake.input.shards),
        train_shard_dir=Path(snakemake.input.train_shards),
        out_csv=Path(snakemake.output.generated),
        out_timing=Path(snakemake.output.timing),
        # batch size and prefix sharing do not change the output: read from the config rather
        # than params, so that changing them reruns nothing
        options={
            **snakemake.params.options,
            **{key: snakemake.config["predict"][key] for key in ("batch_size", "share_prefixes")},
        },
        device=snakemake.params.device,
        precision=snakemake.params.precision,
        trust_remote_code=snakemake.params.trust_remote_code,
        dtype=snakemake.params.dtype,
    )
    log.info("%s", timing)
