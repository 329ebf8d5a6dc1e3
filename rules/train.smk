# One training job per variant. Only the variant's own settings are params, so changing one
# variant reruns that variant alone (and what depends on it). A job given more than one GPU
# (resources: gpu > 1, e.g. from a profile) trains data-parallel, one process per GPU.


rule train:
    input:
        shards="results/data/shards/train",
        validation=validation_shards,
        model=model_input,
        download=download_input,
    output:
        adapter=directory("results/adapters/{variant}"),
        metrics="results/training/{variant}/metrics.csv",
        summary="results/training/{variant}/summary.json",
        plot=report(
            "results/training/{variant}/loss.svg",
            caption="../report/training_loss.rst",
            category="Training",
            subcategory="{variant}",
        ),
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
        model=MODEL,
        checkpoints=lambda wildcards: f"results/checkpoints/{wildcards.variant}",
        trust_remote_code=config["model"]["trust_remote_code"],
    script:
        "../scripts/train.py"
