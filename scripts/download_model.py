"""Rule download_model: fetch a Hub model's files into the Hugging Face cache (a local rule: on the
machine that runs Snakemake, the only job allowed online) and record the commit jobs will load."""

from koqa.files import write_json
from koqa.model.modelpath import download_model
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads, allow_download=True)
with job_log(snakemake.log[0]) as log:
    record = download_model(snakemake.params.model, snakemake.params.trust_remote_code)
    write_json(record, snakemake.output[0])
    log.info("%s at commit %s: %d files", record["model"], record["commit"], len(record["files"]))
