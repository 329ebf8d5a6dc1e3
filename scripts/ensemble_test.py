"""Rule ensemble_test: the ensemble's test answers, with the members and method chosen on
validation (ensemble.json)."""

from koqa.files import read_json, write_csv
from koqa.predict.answers import answer_frame
from koqa.predict.ensemble import load_combines
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    decision = read_json(snakemake.input.decision)
    combines = load_combines(
        snakemake.params.method,
        snakemake.params.members,
        snakemake.input.answers,
        snakemake.input.likelihoods,
    )
    result = combines[decision["method"]](decision["members"])
    write_csv(answer_frame(result), snakemake.output[0])
    log.info(
        "ensemble (%s of %s): %d test answers", decision["method"], decision["members"], len(result)
    )
