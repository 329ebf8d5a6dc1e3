# Prediction: batched greedy generation per variant and split (free or constrained to the context,
# decided per variant on validation), post-processing and snapping to the context (decided per
# variant on validation), and the ensemble's majority vote.

from koqa.predict.ensemble import ensemble_members

ENSEMBLE_MEMBERS = ensemble_members(config)
# Everything that gets scored, ranked and may be submitted: the variants and the ensemble (named
# "ensemble", koqa.predict.ensemble.NAME).
SCORED = [*VARIANTS, "ensemble"] if ENSEMBLE_MEMBERS else VARIANTS

# The predict settings that change the generated text, so that a change reruns prediction: the
# quantile and margin only count with max_new_tokens: auto. Batch size and prefix sharing do not
# (the output is token-identical, tests/test_generation_equivalence.py): the job reads them from the
# config, so changing them reruns nothing.
GENERATION_KEYS = (
    ["max_new_tokens", "max_new_tokens_quantile", "max_new_tokens_margin"]
    if config["predict"]["max_new_tokens"] == "auto"
    else ["max_new_tokens"]
)


rule predict:
    input:
        adapter="results/adapters/{variant}",
        shards="results/data/shards/{split}",
        train_shards="results/data/shards/train",
        model=model_input,
        download=download_input,
        rows=context_rows,
        choice=constrain_decision_input,
    output:
        generated="results/predictions/{variant}/{split}.generated.csv",
        timing="results/predictions/{variant}/{split}.timing.json",
    log:
        "results/logs/predict/{variant}/{split}.log",
    benchmark:
        "results/benchmarks/predict/{variant}/{split}.tsv"
    wildcard_constraints:
        split="test" if CONSTRAIN == "auto" else "validation|test",
    conda:
        "../envs/model.yaml"
    threads: config["threads"]
    resources:
        gpu=uses_gpu,
    params:
        model=MODEL,
        options=canonical({key: config["predict"][key] for key in GENERATION_KEYS}),
        device=lambda wildcards: variant_settings(wildcards)["device"],
        precision=lambda wildcards: variant_settings(wildcards)["precision"],
        trust_remote_code=config["model"]["trust_remote_code"],
        dtype=config["model"]["dtype"],
        constrain=CONSTRAIN,
    script:
        "../scripts/predict.py"


if CONSTRAIN == "auto":

    # validation: the free and the constrained generations from one job (the model loads once)
    use rule predict as predict_both with:
        output:
            generated="results/predictions/{variant}/{split}.free.generated.csv",
            constrained="results/predictions/{variant}/{split}.constrained.generated.csv",
            timing="results/predictions/{variant}/{split}.timing.json",
        wildcard_constraints:
            split="validation",

    rule constrain_choice:
        input:
            free="results/predictions/{variant}/validation.free.generated.csv",
            constrained="results/predictions/{variant}/validation.constrained.generated.csv",
            rows="results/data/split/validation.parquet",
            raw="results/data/raw/train.parquet",
            synonyms=config["clean"]["synonyms"] or [],
        output:
            choice="results/predictions/{variant}/constrain.json",
            # the chosen generations: what answers_validation post-processes
            generated="results/predictions/{variant}/validation.generated.csv",
        log:
            "results/logs/constrain/{variant}.log",
        conda:
            "../envs/data.yaml"
        params:
            template=lambda wildcards: config["prompt"]["template"],
            clean=canonical(config["clean"]),
            snap=config["predict"]["snap"],
            snap_min_f1=config["predict"]["snap_min_f1"],
        script:
            "../scripts/constrain_choice.py"

    localrules:
        constrain_choice,


rule answers_validation:
    input:
        generated="results/predictions/{variant}/validation.generated.csv",
        rows="results/data/split/validation.parquet",
        # the gold answers as the grader has them, uncleaned
        raw="results/data/raw/train.parquet",
        synonyms=config["clean"]["synonyms"] or [],
    output:
        answers="results/predictions/{variant}/validation.csv",
        snap="results/predictions/{variant}/snap.json",
    log:
        "results/logs/answers/{variant}/validation.log",
    conda:
        "../envs/data.yaml"
    params:
        # a function: a plain string param would have its {context} taken for a wildcard
        template=lambda wildcards: config["prompt"]["template"],
        clean=canonical(config["clean"]),
        snap=config["predict"]["snap"],
        snap_min_f1=config["predict"]["snap_min_f1"],
    script:
        "../scripts/answers_validation.py"


rule answers_test:
    input:
        generated="results/predictions/{variant}/test.generated.csv",
        rows="results/data/clean/test.parquet",
        snap="results/predictions/{variant}/snap.json",
        synonyms=config["clean"]["synonyms"] or [],
    output:
        "results/predictions/{variant}/test.csv",
    log:
        "results/logs/answers/{variant}/test.log",
    conda:
        "../envs/data.yaml"
    params:
        template=lambda wildcards: config["prompt"]["template"],
        clean=canonical(config["clean"]),
        snap_min_f1=config["predict"]["snap_min_f1"],
    script:
        "../scripts/answers_test.py"


rule ensemble:
    input:
        expand("results/predictions/{member}/{{split}}.csv", member=ENSEMBLE_MEMBERS),
    output:
        "results/predictions/ensemble/{split}.csv",
    log:
        "results/logs/ensemble/{split}.log",
    wildcard_constraints:
        split="validation|test",
    conda:
        "../envs/data.yaml"
    params:
        members=ENSEMBLE_MEMBERS,
    script:
        "../scripts/ensemble.py"


# Post-processing and the vote read and write small tables: they run where Snakemake runs.
localrules:
    answers_validation,
    answers_test,
    ensemble,
