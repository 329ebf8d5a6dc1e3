"""Rule leaderboard: every variant's (and the ensemble's) validation score and costs, best first."""

from koqa.files import read_json, write_csv
from koqa.predict.ensemble import NAME as ENSEMBLE
from koqa.runtime import configure_job, job_log
from koqa.score.submission import leaderboard

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    scores = {record["variant"]: record for record in map(read_json, snakemake.input.scores)}
    costs = {}
    for variant, summary, timing, decisions in zip(
        snakemake.params.variants,
        map(read_json, snakemake.input.summaries),
        map(read_json, snakemake.input.timings),
        map(read_json, snakemake.input.decisions),
        strict=True,
    ):
        steps = {record["step"]: record for record in decisions["steps"]}
        costs[variant] = {
            "method": summary["method"],
            "train_seconds": summary["train_seconds"],
            "predict_seconds": timing["seconds"],
            "postprocess": "+".join(name for name, r in steps.items() if r["used"]) or "none",
            "snap": steps["snap"]["used"],
            "f1_unsnapped": steps["snap"]["f1_without"],
            "f1_snapped": steps["snap"]["f1_with"],
        }
    members = snakemake.params.ensemble_members
    if members:  # the ensemble costs what its members cost together
        costs[ENSEMBLE] = {
            "method": "ensemble",
            "train_seconds": round(sum(costs[m]["train_seconds"] for m in members), 2),
            "predict_seconds": round(sum(costs[m]["predict_seconds"] for m in members), 3),
        }
    board = leaderboard(
        [
            {key: scores[variant][key] for key in ("variant", "f1", "em", "n")} | costs[variant]
            for variant in scores
        ]
    )
    write_csv(board, snakemake.output[0], sep="\t")
    log.info("\n%s", board.to_string(index=False))
