# Scoring (the variants and the ensemble alike), the leaderboard, and the submission: drafted from
# the chosen variant, then validated by its own rule before results/submission.csv exists.


rule score:
    input:
        predictions="results/predictions/{variant}/validation.csv",
        # the validation rows (question, context); their gold answers as the grader has them,
        # uncleaned, come from the raw table
        rows="results/data/split/validation.parquet",
        raw="results/data/raw/train.parquet",
    output:
        score="results/scores/{variant}.json",
        worst="results/scores/{variant}.worst.csv",
    log:
        "results/logs/score/{variant}.log",
    wildcard_constraints:
        variant=one_of(SCORED),
    conda:
        "../envs/data.yaml"
    params:
        worst=20,
    script:
        "../scripts/score.py"


rule leaderboard:
    input:
        scores=expand("results/scores/{variant}.json", variant=SCORED),
        summaries=expand("results/training/{variant}/summary.json", variant=VARIANTS),
        timings=expand(
            "results/predictions/{variant}/validation.timing.json", variant=VARIANTS
        ),
        decisions=expand(
            "results/predictions/{variant}/postprocess.json", variant=VARIANTS
        ),
    output:
        "results/leaderboard.tsv",
    log:
        "results/logs/leaderboard.log",
    conda:
        "../envs/data.yaml"
    params:
        variants=VARIANTS,
        ensemble_members=ENSEMBLE_MEMBERS,
    script:
        "../scripts/leaderboard.py"


rule draft_submission:
    input:
        leaderboard="results/leaderboard.tsv",
        predictions=expand("results/predictions/{variant}/test.csv", variant=SCORED),
        sample=config["data"]["sample_submission"],
    output:
        temp("results/predictions/submission_draft.csv"),
    log:
        "results/logs/draft_submission.log",
    conda:
        "../envs/data.yaml"
    params:
        variant=config["submission"]["variant"],
        scored=SCORED,
        fallback=config["submission"]["fallback_answer"],
    script:
        "../scripts/draft_submission.py"


rule submission:
    input:
        draft="results/predictions/submission_draft.csv",
        sample=config["data"]["sample_submission"],
    output:
        "results/submission.csv",
    log:
        "results/logs/submission.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/submission.py"


# Scoring, ranking and the submission are light: they run where Snakemake runs.
localrules:
    score,
    leaderboard,
    draft_submission,
    submission,
