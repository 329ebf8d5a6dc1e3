"""Rule plot_loss_curves: the training loss of every variant on one chart."""

import pandas as pd

from koqa.report.plots import plot_loss_curves
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]):
    metrics = {
        variant: pd.read_csv(path)
        for variant, path in zip(snakemake.params.variants, snakemake.input, strict=True)
    }
    plot_loss_curves(metrics, snakemake.output[0])
