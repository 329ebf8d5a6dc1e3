"""Rule plot_scores: F1 by variant, by answer length, and with and without snapping."""

from koqa.files import read_json
from koqa.report.plots import plot_f1_by_length, plot_f1_by_variant, plot_snapping
from koqa.runtime import configure_job, job_log
from koqa.score.submission import read_leaderboard

configure_job(snakemake.threads)
with job_log(snakemake.log[0]):
    board = read_leaderboard(snakemake.input.leaderboard)
    records = {record["variant"]: record for record in map(read_json, snakemake.input.scores)}
    plot_f1_by_variant(board, snakemake.output.f1)
    plot_f1_by_length(
        {variant: records[variant] for variant in board["variant"]}, snakemake.output.by_length
    )
    plot_snapping(board, snakemake.output.snapping)
