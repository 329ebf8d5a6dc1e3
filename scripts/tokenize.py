"""Rule tokenize: prompt + answer token ids with answer-only labels, as Parquet shards."""

import pandas as pd

from koqa.modelpath import resolve_model_dir
from koqa.runtime import configure_job, job_log
from koqa.shards import encode_rows, template_hash, write_shards
from koqa.tokenizer import load_text_tokenizer

configure_job(snakemake.threads, snakemake.params.allow_download)
with job_log(snakemake.log[0]) as log:
    tokenizer = load_text_tokenizer(
        resolve_model_dir(snakemake.params.model, snakemake.params.allow_download)
    )
    template, max_seq_len = snakemake.params.template, snakemake.params.max_seq_len
    rows = encode_rows(pd.read_parquet(snakemake.input.rows), tokenizer, template, max_seq_len)
    n_shards = write_shards(
        rows,
        snakemake.output[0],
        snakemake.params.shard_rows,
        {
            "tokenizer": tokenizer.fingerprint,
            "template": template_hash(template),
            "max_seq_len": max_seq_len,
        },
    )
    log.info(
        "%d rows in %d shards; %d contexts truncated; longest %d tokens",
        len(rows),
        n_shards,
        int(rows["context_truncated"].sum()),
        int(rows["n_tokens"].max()),
    )
