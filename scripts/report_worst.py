"""Rule report_worst: one variant's worst validation predictions as an HTML table for the report."""

import pandas as pd

from koqa.report.pages import write_table_page
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]):
    worst = pd.read_csv(snakemake.input[0], dtype={"answer": str}, keep_default_na=False)
    title = f"Worst validation predictions: {snakemake.wildcards.variant}"
    write_table_page(worst, title, snakemake.output[0])
