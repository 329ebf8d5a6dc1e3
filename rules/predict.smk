# Batched greedy prediction of each variant on the validation and test splits.


rule predict:
    input:
        adapter="results/adapters/{variant}",
        shards="results/data/shards/{split}",
        model=model_input,
    output:
        answers="results/predictions/{variant}/{split}.csv",
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
        options=canonical(config["predict"]),
        device=lambda wildcards: variant_settings(wildcards)["device"],
        precision=lambda wildcards: variant_settings(wildcards)["precision"],
        trust_remote_code=config["model"]["trust_remote_code"],
    script:
        "../scripts/predict.py"
