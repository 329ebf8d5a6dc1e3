# Prediction: batched greedy generation per variant and split, post-processing and snapping to the
# context (decided per variant on validation), and the ensemble's majority vote.

from koqa.ensemble import ensemble_members

ENSEMBLE_MEMBERS = ensemble_members(config)
# Everything that gets scored, ranked and may be submitted: the variants and the ensemble (named
# "ensemble", koqa.ensemble.NAME).
SCORED = [*VARIANTS, "ensemble"] if ENSEMBLE_MEMBERS else VARIANTS
GENERATION_KEYS = (
    "batch_size",
    "max_new_tokens",
    "max_new_tokens_quantile",
    "max_new_tokens_margin",
    "share_prefixes",
)


rule predict:
    input:
        adapter="results/adapters/{variant}",
        shards="results/data/shards/{split}",
        train_shards="results/data/shards/train",
        model=model_input,
    output:
        generated="results/predictions/{variant}/{split}.generated.csv",
        timing="results/predictions/{variant}/{split}.timing.json",
    log:
        "results/logs/predict/{variant}/{split}.log",
    benchmark:
        "results/benchmarks/predict/{variant}/{split}.tsv"
    wildcard_constraints:
        split="validation|test",
    conda:
        "../envs/model.yaml"
    threads: config["threads"]
    resources:
        gpu=uses_gpu,
    params:
        model=model_path(),
        options=canonical({key: config["predict"][key] for key in GENERATION_KEYS}),
        device=lambda wildcards: variant_settings(wildcards)["device"],
        precision=lambda wildcards: variant_settings(wildcards)["precision"],
        trust_remote_code=config["model"]["trust_remote_code"],
    script:
        "../scripts/predict.py"


rule answers:
    input:
        validation="results/predictions/{variant}/validation.generated.csv",
        test="results/predictions/{variant}/test.generated.csv",
        validation_rows="results/data/split/validation.parquet",
        test_rows="results/data/clean/test.parquet",
    output:
        validation="results/predictions/{variant}/validation.csv",
        test="results/predictions/{variant}/test.csv",
        snap="results/predictions/{variant}/snap.json",
    log:
        "results/logs/answers/{variant}.log",
    conda:
        "../envs/data.yaml"
    params:
        # a function: a plain string param would have its {context} taken for a wildcard
        template=lambda wildcards: config["prompt"]["template"],
        snap=config["predict"]["snap"],
        snap_min_f1=config["predict"]["snap_min_f1"],
    script:
        "../scripts/answers.py"


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
