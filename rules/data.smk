# Data stages: ingest raw files, clean and align, split by context, tokenize into shards.


rule ingest:
    input:
        # one file per source (data.train may list several; see koqa/data/sources.py)
        raw=lambda wildcards: [source.path for source in SOURCES[wildcards.part]],
        # test ids are checked against the sample submission's
        sample=lambda wildcards: (
            config["data"]["sample_submission"] if wildcards.part == "test" else []
        ),
    output:
        # every source's rows, each with its `source`; scoring reads the raw gold answers here
        "results/data/raw/{part}.parquet",
    log:
        "results/logs/ingest/{part}.log",
    conda:
        "../envs/data.yaml"
    params:
        sources=lambda wildcards: [s.reading() for s in SOURCES[wildcards.part]],
    script:
        "../scripts/ingest.py"


rule clean:
    input:
        train="results/data/raw/train.parquet",
        test="results/data/raw/test.parquet",
        synonyms=config["clean"]["synonyms"] or [],
    output:
        train="results/data/clean/train.parquet",
        test="results/data/clean/test.parquet",
        dropped="results/data/dropped.parquet",
        # shown in the report as a page (rule report_pages)
        report="results/data/clean_report.json",
    log:
        "results/logs/clean.log",
    conda:
        "../envs/data.yaml"
    params:
        options=canonical(config["clean"]),
        # capped sources keep a sample seeded by split.seed (a param only when a cap is set)
        caps=canonical(CAPS),
        cap_seed=config["split"]["seed"] if CAPS else None,
    script:
        "../scripts/clean.py"


rule split:
    input:
        "results/data/clean/train.parquet",
    output:
        train="results/data/split/train.parquet",
        validation="results/data/split/validation.parquet",
        # rows per source in training (before and after weighting), validation and left out
        report="results/data/split_report.json",
    log:
        "results/logs/split.log",
    conda:
        "../envs/data.yaml"
    params:
        options=canonical(
            {
                "validation_fraction": config["split"]["validation_fraction"],
                "seed": config["split"]["seed"],
                "validation_source": VALIDATION_SOURCE,
                "weights": source_settings(SOURCES["train"], "weight"),
            }
        ),
    script:
        "../scripts/split.py"


rule tokenize:
    input:
        rows=split_table,
        model=model_input,
        download=download_input,
    output:
        shards=directory("results/data/shards/{split}"),
        # rows that could not be tokenized (id, reason, detail); test rows are never dropped
        dropped="results/data/shards/{split}.dropped.parquet",
    log:
        "results/logs/tokenize/{split}.log",
    conda:
        "../envs/data.yaml"
    params:
        model=MODEL,
        trust_remote_code=config["model"]["trust_remote_code"],
        # a function: a plain string param would have its {context} taken for a wildcard
        prompt=lambda wildcards: canonical(config["prompt"]),
        shard_rows=config["tokenize"]["shard_rows"],
    script:
        "../scripts/tokenize.py"


rule stats:
    input:
        train="results/data/split/train.parquet",
        validation="results/data/split/validation.parquet",
        test="results/data/clean/test.parquet",
        shards=expand(
            "results/data/shards/{split}", split=["train", "validation", "test"]
        ),
        dropped=expand(
            "results/data/shards/{split}.dropped.parquet",
            split=["train", "validation", "test"],
        ),
    output:
        # shown in the report as a page (rule report_pages)
        stats="results/data/stats.json",
        token_lengths=report(
            "results/data/plots/token_lengths.png",
            caption="../report/token_lengths.rst",
            category="Data",
            subcategory="Statistics",
        ),
        answer_words=report(
            "results/data/plots/answer_words.png",
            caption="../report/answer_words.rst",
            category="Data",
            subcategory="Statistics",
        ),
        sentences=report(
            "results/data/plots/sentences.png",
            caption="../report/sentences.rst",
            category="Data",
            subcategory="Statistics",
        ),
        special_chars=report(
            "results/data/plots/special_chars.png",
            caption="../report/special_chars.rst",
            category="Data",
            subcategory="Statistics",
        ),
        alignment=report(
            "results/data/plots/alignment.png",
            caption="../report/alignment.rst",
            category="Data",
            subcategory="Statistics",
        ),
    log:
        "results/logs/stats.log",
    conda:
        "../envs/data.yaml"
    params:
        max_seq_len=config["prompt"]["max_seq_len"],
    script:
        "../scripts/stats.py"


# All data stages run where Snakemake runs, never as cluster jobs: they need no GPU and little CPU
# (preparing the whole Dacon training set takes seconds), and tokenize, the first job to need the
# model's tokenizer, downloads a Hub model when that is allowed: login nodes reach the Hub, compute
# nodes often do not.
localrules:
    ingest,
    clean,
    split,
    tokenize,
    stats,
