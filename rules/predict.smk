# Prediction: batched greedy generation per variant and split (free or constrained to the context,
# decided per variant on validation), post-processing (each step decided per variant on
# validation), and the ensemble (members, and vote or likelihood, chosen on validation).

from koqa.predict.ensemble import ensemble_members

ENSEMBLE_MEMBERS = ensemble_members(config)
# the members' likelihoods of each other's answers, when the likelihood ensemble may be chosen
LIKELIHOODS = ENSEMBLE_MEMBERS if config["ensemble"]["method"] != "vote" else []
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
            policies=canonical(config["predict"]["postprocess"]),
            snap_min_f1=config["predict"]["snap_min_f1"],
        script:
            "../scripts/constrain_choice.py"

    localrules:
        constrain_choice,


rule answers_validation:
    input:
        generated="results/predictions/{variant}/validation.generated.csv",
        rows="results/data/split/validation.parquet",
        # the gold answers as the grader has them and the contexts as written, uncleaned
        raw="results/data/raw/train.parquet",
        synonyms=config["clean"]["synonyms"] or [],
    output:
        answers="results/predictions/{variant}/validation.csv",
        # each post-processing step: F1 without and with it on validation, used or not
        decisions="results/predictions/{variant}/postprocess.json",
    log:
        "results/logs/answers/{variant}/validation.log",
    conda:
        "../envs/data.yaml"
    params:
        # a function: a plain string param would have its {context} taken for a wildcard
        template=lambda wildcards: config["prompt"]["template"],
        clean=canonical(config["clean"]),
        policies=canonical(config["predict"]["postprocess"]),
        snap_min_f1=config["predict"]["snap_min_f1"],
    script:
        "../scripts/answers_validation.py"


rule answers_test:
    input:
        generated="results/predictions/{variant}/test.generated.csv",
        rows="results/data/clean/test.parquet",
        raw="results/data/raw/test.parquet",
        decisions="results/predictions/{variant}/postprocess.json",
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


rule likelihood:
    input:
        adapter="results/adapters/{variant}",
        shards="results/data/shards/{split}",
        rows=split_table,
        answers=expand(
            "results/predictions/{member}/{{split}}.csv", member=ENSEMBLE_MEMBERS
        ),
        model=model_input,
        download=download_input,
    output:
        "results/predictions/{variant}/{split}.likelihood.parquet",
    log:
        "results/logs/likelihood/{variant}/{split}.log",
    benchmark:
        "results/benchmarks/likelihood/{variant}/{split}.tsv"
    wildcard_constraints:
        variant=one_of(LIKELIHOODS),
        split="validation|test",
    conda:
        "../envs/model.yaml"
    threads: config["threads"]
    resources:
        gpu=uses_gpu,
    params:
        model=MODEL,
        members=ENSEMBLE_MEMBERS,
        # functions: a plain string param would have its {context} taken for a wildcard
        prompt=lambda wildcards: canonical(config["prompt"]),
        clean=canonical(config["clean"]),
        device=lambda wildcards: variant_settings(wildcards)["device"],
        precision=lambda wildcards: variant_settings(wildcards)["precision"],
        trust_remote_code=config["model"]["trust_remote_code"],
        dtype=config["model"]["dtype"],
    script:
        "../scripts/likelihood.py"


rule ensemble_validation:
    input:
        answers=expand(
            "results/predictions/{member}/validation.csv", member=ENSEMBLE_MEMBERS
        ),
        likelihoods=expand(
            "results/predictions/{member}/validation.likelihood.parquet",
            member=LIKELIHOODS,
        ),
        rows="results/data/split/validation.parquet",
        raw="results/data/raw/train.parquet",
    output:
        answers="results/predictions/ensemble/validation.csv",
        # the members (and method) chosen on validation, and each round of the selection
        decision="results/predictions/ensemble/ensemble.json",
    log:
        "results/logs/ensemble/validation.log",
    conda:
        "../envs/data.yaml"
    params:
        members=ENSEMBLE_MEMBERS,
        method=config["ensemble"]["method"],
        select=config["ensemble"]["select"],
    script:
        "../scripts/ensemble_validation.py"


rule ensemble_test:
    input:
        answers=expand("results/predictions/{member}/test.csv", member=ENSEMBLE_MEMBERS),
        likelihoods=expand(
            "results/predictions/{member}/test.likelihood.parquet", member=LIKELIHOODS
        ),
        decision="results/predictions/ensemble/ensemble.json",
    output:
        "results/predictions/ensemble/test.csv",
    log:
        "results/logs/ensemble/test.log",
    conda:
        "../envs/data.yaml"
    params:
        members=ENSEMBLE_MEMBERS,
        method=config["ensemble"]["method"],
    script:
        "../scripts/ensemble_test.py"


# Post-processing and the vote read and write small tables: they run where Snakemake runs.
localrules:
    answers_validation,
    answers_test,
    ensemble_validation,
    ensemble_test,
