# What `snakemake --report results/report.html` shows besides the per-variant training curves and
# the data statistics' figures: the leaderboard, scores by variant and by answer length, the effect
# of snapping, the training loss of all variants together, the worst predictions of each variant,
# and the cleaning report and data statistics as readable tables (the report offers JSON and TSV
# files only for download, so they are rendered as HTML pages here).


rule plot_scores:
    input:
        leaderboard="results/leaderboard.tsv",
        scores=expand("results/scores/{variant}.json", variant=SCORED),
    output:
        f1=report(
            "results/report/f1_by_variant.svg",
            caption="../report/f1_by_variant.rst",
            category="Results",
            labels={"figure": "F1 by variant"},
        ),
        by_length=report(
            "results/report/f1_by_answer_length.svg",
            caption="../report/f1_by_answer_length.rst",
            category="Results",
            labels={"figure": "F1 by answer length"},
        ),
        snapping=report(
            "results/report/snapping.svg",
            caption="../report/snapping.rst",
            category="Results",
            labels={"figure": "snapping to the context"},
        ),
    log:
        "results/logs/plot_scores.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/plot_scores.py"


rule plot_loss_curves:
    input:
        expand("results/training/{variant}/metrics.csv", variant=VARIANTS),
    output:
        report(
            "results/report/loss_curves.svg",
            caption="../report/loss_curves.rst",
            category="Training",
            subcategory="all variants",
        ),
    log:
        "results/logs/plot_loss_curves.log",
    conda:
        "../envs/data.yaml"
    params:
        variants=VARIANTS,
    script:
        "../scripts/plot_loss_curves.py"


rule report_pages:
    input:
        leaderboard="results/leaderboard.tsv",
        clean_report="results/data/clean_report.json",
        stats="results/data/stats.json",
    output:
        leaderboard=report(
            "results/report/leaderboard.html",
            caption="../report/leaderboard.rst",
            category="Results",
            labels={"figure": "leaderboard"},
        ),
        clean_report=report(
            "results/report/clean_report.html",
            caption="../report/clean_report.rst",
            category="Data",
            subcategory="Cleaning",
        ),
        stats=report(
            "results/report/stats.html",
            caption="../report/stats.rst",
            category="Data",
            subcategory="Statistics",
        ),
    log:
        "results/logs/report_pages.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/report_pages.py"


rule report_worst:
    input:
        "results/scores/{variant}.worst.csv",
    output:
        report(
            "results/report/worst/{variant}.html",
            caption="../report/worst.rst",
            category="Error analysis",
            labels={"variant": "{variant}"},
        ),
    log:
        "results/logs/report_worst/{variant}.log",
    wildcard_constraints:
        variant=one_of(SCORED),
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/report_worst.py"


# Figures and pages are light: they run where Snakemake runs.
localrules:
    plot_scores,
    plot_loss_curves,
    report_pages,
    report_worst,
