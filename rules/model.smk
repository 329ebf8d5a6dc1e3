# The embedded tiny base model (only built when model.name is "tiny").


rule base_model:
    input:
        "results/data/split/train.parquet",
    output:
        directory("results/model/base"),
    log:
        "results/logs/base_model.log",
    benchmark:
        "results/benchmarks/base_model.tsv"
    conda:
        "../envs/model.yaml"
    threads: config["threads"]
    params:
        settings=canonical(config["model"]["tiny"]),
    script:
        "../scripts/base_model.py"


# The tiny model pretrains in seconds on a CPU: no cluster job.
localrules:
    base_model,
