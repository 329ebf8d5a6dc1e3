"""Rule plan: every variant's estimated GPU memory for training and prediction (results/plan.tsv)
and the same table, readable, in the log. Needs the model's config.json only."""

from koqa.files import write_csv
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    from koqa.train.plan import model_config_path, plan_table, readable

    model = snakemake.config["model"]
    table = plan_table(
        snakemake.config,
        model_config_path(model["name"], model["allow_download"]),
        trust_remote_code=model["trust_remote_code"],
    )
    write_csv(table, snakemake.output[0], sep="\t")
    log.info("memory plan:\n%s", readable(table))
