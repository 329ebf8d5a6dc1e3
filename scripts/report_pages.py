"""Rule report_pages: the leaderboard, cleaning report and data statistics as HTML for the report."""

from koqa.files import read_json
from koqa.report.pages import write_record_page, write_table_page
from koqa.runtime import configure_job, job_log
from koqa.score.submission import read_leaderboard

configure_job(snakemake.threads)
with job_log(snakemake.log[0]):
    board = read_leaderboard(snakemake.input.leaderboard)
    write_table_page(board, "Leaderboard (validation)", snakemake.output.leaderboard)
    write_record_page(
        read_json(snakemake.input.clean_report), "Cleaning report", snakemake.output.clean_report
    )
    write_record_page(read_json(snakemake.input.stats), "Data statistics", snakemake.output.stats)
