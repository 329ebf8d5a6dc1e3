"""Rule base_model: train the tiny tokenizer, build the tiny Llama and pretrain it on the contexts."""

import pandas as pd

from koqa.runtime import configure_job, job_log

configure_job(snakemake.threads)
with job_log(snakemake.log[0]) as log:
    from koqa.files import atomic_path, write_json
    from koqa.model.basemodel import build_tiny_llama, pretrain, train_bpe_tokenizer

    settings = snakemake.params.settings
    rows = pd.read_parquet(snakemake.input[0])
    contexts = rows["context"].unique().tolist()
    texts = contexts + rows["question"].tolist() + rows["target"].tolist()
    tokenizer = train_bpe_tokenizer(texts, settings["vocab_size"])
    model = build_tiny_llama(tokenizer, settings, settings["seed"])
    log.info("tiny Llama: %d parameters, vocabulary %d", model.num_parameters(), len(tokenizer))
    losses = pretrain(model, tokenizer, contexts, settings["pretrain"])
    log.info("pretraining loss %.3f -> %.3f", losses[0], losses[-1])
    with atomic_path(snakemake.output[0]) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json({"pretrain_loss": losses}, tmp / "pretrain_loss.json")
