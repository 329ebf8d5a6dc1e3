"""Rule tokenize: prompt + answer token ids with answer-only labels, as Parquet shards written a chunk
at a time (koqa.data.shards.encode_to_shards: memory flat in the split's size), and the rows
that could not be tokenized (with their reason)."""

import json

from koqa.data.prompt import layout_from_config
from koqa.data.shards import encode_to_shards
from koqa.data.tokenizer import load_text_tokenizer
from koqa.files import write_parquet
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
    layout = layout_from_config(prompt, tokenizer)
    split = snakemake.wildcards.split
    written = encode_to_shards(
        snakemake.input.rows,
        tokenizer,
        layout,
        prompt["max_seq_len"],
        split,
        snakemake.output.shards,
        snakemake.params.shard_rows,
        {
            "tokenizer": tokenizer.fingerprint,
            "template": layout.fingerprint(),
            "max_seq_len": prompt["max_seq_len"],
            "stop_ids": json.dumps(list(layout.stop_ids)),
        },
    )
    write_parquet(written.dropped, snakemake.output.dropped)
    log.info(
        "%d rows in %d shards; %d contexts truncated (%s); longest %d tokens, %d uncut",
        written.rows,
        written.shards,
        written.truncated,
        "around the answer" if split == "train" else "start kept",
        written.longest,
        written.longest_uncut,
    )
    if len(written.dropped):
        log.warning(
            "dropped %d rows (listed in %s): %s",
            len(written.dropped),
            snakemake.output.dropped,
            written.dropped["reason"].value_counts().to_dict(),
        )
    for record in written.dropped.itertuples():
        log.warning("dropped row %s: %s: %s", record.id, record.reason, record.detail)
    if written.targets_apart:
        log.warning(
            "%d validation answers merge with the end of their prompt: their targets are "
            "encoded apart (validation loss only)",
            written.targets_apart,
        )
    log.info("stops generation at token ids %s", list(layout.stop_ids))
