# One training job per variant. Only the variant's own settings are params, so changing one
# variant reruns that variant alone (and what depends on it).


rule train:
    input:
        shards="results/data/shards/train",
        model=model_input,
    output:
        adapter=directory("results/adapters/{variant}"),
        metrics="results/training/{variant}/metrics.csv",
        summary="results/training/{variant}/summary.json",
    log:
        "results/logs/train/{variant}.log",
    benchmark:
        "results/benchmarks/train/{variant}.tsv"
    conda:
        "../envs/model.yaml"
    threads: config["threads"]
    resources:
        gpu=uses_gpu,
    params:
        settings=variant_settings,
        model=model_path(),
        checkpoints=lambda wildcards: f"results/checkpoints/{wildcards.variant}",
        trust_remote_code=config["model"]["trust_remote_code"],
    script:
        "../scripts/train.py"
