# koqa: raw Korean QA data -> cleaned, tokenized shards -> one training job per adapter variant
# -> batched prediction -> scores, leaderboard and a validated results/submission.csv.


import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# koqa/ is imported from this checkout: here, and in every job through PYTHONPATH (the .venv's
# editable install and a conda environment of envs/ alike; a job on a SLURM node inherits it)
sys.path.insert(0, workflow.basedir)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])
    )
)


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/train.smk"
include: "rules/predict.smk"
include: "rules/score.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/submission.csv",
        "results/leaderboard.tsv",
        rules.plot_scores.output,
        rules.plot_loss_curves.output,
        rules.report_pages.output,
        expand("results/report/worst/{variant}.html", variant=SCORED),
