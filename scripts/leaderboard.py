"""Rule leaderboard: every variant's validation score and costs, best first."""

from koqa.files import read_json, write_csv
from koqa.runtime import configure_job, job_log
from koqa.submission import leaderboard

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    rows = []
    for score_path, summary_path, timing_path in zip(
        snakemake.input.scores, snakemake.input.summaries, snakemake.input.timings, strict=True
    ):
        summary = read_json(summary_path)
        rows.append(
            {
                **read_json(score_path),
                "method": summary["method"],
                "train_seconds": summary["train_seconds"],
                "predict_seconds": read_json(timing_path)["seconds"],
            }
        )
    board = leaderboard(rows)
    write_csv(board, snakemake.output[0], sep="\t")
    log.info("\n%s", board.to_string(index=False))
