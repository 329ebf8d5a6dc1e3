# The base model: the embedded tiny one is built here (model.name: tiny); a Hub model is downloaded
# here (model.allow_download: true), and only here: every job runs offline.


# On the machine that runs Snakemake (the only one that needs the network), before any job that
# reads the model; with SLURM, set HF_HOME to a filesystem the nodes share.
rule download_model:
    output:
        # the model id, the commit fetched and its files; jobs load exactly that commit
        "results/model/download.json",
    log:
        "results/logs/download_model.log",
    conda:
        "../envs/data.yaml"
    params:
        model=MODEL,
        trust_remote_code=config["model"]["trust_remote_code"],
    script:
        "../scripts/download_model.py"


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
        # the architecture and pretraining; not the overrides (they are training settings)
        settings=canonical(
            {k: v for k, v in config["model"]["tiny"].items() if k != "overrides"}
        ),
    script:
        "../scripts/base_model.py"


# Downloads need the network; the tiny model pretrains in seconds on a CPU: no cluster jobs.
localrules:
    download_model,
    base_model,
