# Data stages: ingest raw files, clean and align, split by context, tokenize into shards.


rule ingest:
    input:
        lambda wildcards: config["data"][wildcards.part],
    output:
        "results/data/raw/{part}.parquet",
    log:
        "results/logs/ingest/{part}.log",
    conda:
        "../envs/data.yaml"
    params:
        format=config["data"]["format"],
        encoding=config["data"]["encoding"],
    script:
        "../scripts/ingest.py"


rule clean:
    input:
        train="results/data/raw/train.parquet",
        test="results/data/raw/test.parquet",
    output:
        train="results/data/clean/train.parquet",
        test="results/data/clean/test.parquet",
        dropped="results/data/dropped.parquet",
        report=report(
            "results/data/clean_report.json",
            caption="../report/clean_report.rst",
            category="Data",
        ),
    log:
        "results/logs/clean.log",
    conda:
        "../envs/data.yaml"
    params:
        options=canonical(config["clean"]),
    script:
        "../scripts/clean.py"


rule split:
    input:
        "results/data/clean/train.parquet",
    output:
        train="results/data/split/train.parquet",
        validation="results/data/split/validation.parquet",
    log:
        "results/logs/split.log",
    conda:
        "../envs/data.yaml"
    params:
        options=canonical(config["split"]),
    script:
        "../scripts/split.py"


rule tokenize:
    input:
        rows=split_table,
        model=model_input,
    output:
        directory("results/data/shards/{split}"),
    log:
        "results/logs/tokenize/{split}.log",
    conda:
        "../envs/data.yaml"
    params:
        model=model_path(),
        allow_download=config["model"]["allow_download"],
        template=lambda wildcards: config["prompt"]["template"],
        max_seq_len=config["prompt"]["max_seq_len"],
        shard_rows=config["tokenize"]["shard_rows"],
    script:
        "../scripts/tokenize.py"
