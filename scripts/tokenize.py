"""Rule tokenize: prompt + answer token ids with answer-only labels, as Parquet shards."""

import pandas as pd
import pyarrow.compute as pc

from koqa.data.prompt import build_layout
from koqa.data.shards import encode_rows, write_shards
from koqa.data.tokenizer import load_text_tokenizer
from koqa.model.modelpath import resolve_model_dir
from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    tokenizer = load_text_tokenizer(
        resolve_model_dir(
            snakemake.params.model,
            snakemake.params.trust_remote_code,
            download_record=snakemake.input.get("download") or None,
        )
    )
    prompt = snakemake.params.prompt
    layout = build_layout(prompt["template"], tokenizer, prompt["chat_template"], prompt["system"])
    training = snakemake.wildcards.split == "train"
    rows = encode_rows(
        pd.read_parquet(snakemake.input.rows),
        tokenizer,
        layout,
        prompt["max_seq_len"],
        center_on_answer=training,
    )
    n_shards = write_shards(
        rows,
        snakemake.output[0],
        snakemake.params.shard_rows,
        {
            "tokenizer": tokenizer.fingerprint,
            "template": layout.fingerprint(),
            "max_seq_len": prompt["max_seq_len"],
        },
    )
    log.info(
        "%d rows in %d shards; %d contexts truncated (%s); longest %d tokens, %d uncut",
        len(rows),
        n_shards,
        pc.sum(rows["context_truncated"]).as_py() or 0,
        "around the answer" if training else "start kept",
        pc.max(rows["n_tokens"]).as_py(),
        pc.max(rows["untruncated_tokens"]).as_py(),
    )
