"""Rule stats: dataset statistics (JSON) and plots (PNG) of the cleaned splits and their shards."""

import pandas as pd

from koqa.data import stats
from koqa.files import write_json
from koqa.runtime import configure_job, job_log

SPLITS = ("train", "validation", "test")
TOKEN_COLUMNS = ["n_tokens", "untruncated_tokens", "context_truncated"]

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    tables = {split: pd.read_parquet(snakemake.input[split]) for split in SPLITS}
    tokens = {
        split: pd.read_parquet(shards, columns=TOKEN_COLUMNS)
        for split, shards in zip(SPLITS, snakemake.input.shards, strict=True)
    }
    dropped = {
        split: pd.read_parquet(path)
        for split, path in zip(SPLITS, snakemake.input.dropped, strict=True)
    }
    max_seq_len = snakemake.params.max_seq_len
    result = stats.dataset_statistics(tables, tokens, max_seq_len, dropped)
    output = snakemake.output
    stats.plot_token_lengths(tokens, max_seq_len, output.token_lengths)
    stats.plot_answer_words(tables, output.answer_words)
    stats.plot_sentences(tables, output.sentences)
    stats.plot_special_characters(result["special_characters"], output.special_chars)
    stats.plot_alignment(tables, output.alignment)
    write_json(result, output.stats)
    log.info("statistics of %s written", ", ".join(SPLITS))
