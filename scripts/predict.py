"""Rule predict: batched greedy generation of one variant for one split (validation or test), free
or constrained to the contexts as predict.constrain says (with auto: both on validation, for the
constrain_choice rule; on test, what that rule decided).

A Hub id is looked up in the local cache (the download_model rule, upstream, fetched it if allowed).
The job claims its GPU from the machine's pool (koqa.gpus)."""

from pathlib import Path

from koqa.gpus import claim_gpus
from koqa.model.modelpath import resolve_model_dir
from koqa.predict.constrain_choice import use_constraint
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log, claim_gpus(int(snakemake.resources.get("gpu", 0))):
    from koqa.predict.job import run_prediction

    constrained_csv = snakemake.output.get("constrained")  # predict_both: free and constrained
    both = constrained_csv is not None
    choice = snakemake.input.get("choice") or None
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
        constrain=not both and use_constraint(snakemake.params.constrain, choice and Path(choice)),
        split_rows=Path(snakemake.input.rows) if snakemake.input.get("rows") else None,
        constrained_csv=Path(constrained_csv) if both else None,
    )
    log.info("%s", timing)
