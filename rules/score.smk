# Scoring, the leaderboard across variants and the validated submission.


rule score:
    input:
        predictions="results/predictions/{variant}/validation.csv",
        gold="results/data/split/validation.parquet",
    output:
        "results/scores/{variant}.json",
    log:
        "results/logs/score/{variant}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/score.py"


rule leaderboard:
    input:
        scores=expand("results/scores/{variant}.json", variant=VARIANTS),
        summaries=expand("results/training/{variant}/summary.json", variant=VARIANTS),
        timings=expand(
            "results/predictions/{variant}/validation.timing.json", variant=VARIANTS
        ),
    output:
        report(
            "results/leaderboard.tsv",
            caption="../report/leaderboard.rst",
            category="Results",
        ),
    log:
        "results/logs/leaderboard.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/leaderboard.py"


rule submission:
    input:
        leaderboard="results/leaderboard.tsv",
        predictions=expand("results/predictions/{variant}/test.csv", variant=VARIANTS),
        sample=config["data"]["sample_submission"],
    output:
        "results/submission.csv",
    log:
        "results/logs/submission.log",
    conda:
        "../envs/data.yaml"
    params:
        variant=config["submission"]["variant"],
        variants=VARIANTS,
        fallback=config["submission"]["fallback_answer"],
    script:
        "../scripts/submission.py"
