"""How likely a variant finds each candidate answer: the likelihood ensemble's scores.

For every validation or test row, the candidates are the distinct answers of the ensemble's members
(cleaned as the contexts were, so an answer written in the raw context's form is scored in the form
the model learned). Each candidate is encoded after its row's prompt exactly as a validation target
is (:func:`koqa.data.shards.encode_rows`: the prompt text encoded whole with the candidate, the
answer tokens what follows the prompt, then the end-of-answer ids), so its prompt ids are the
prediction shards' (checked). One forward pass per candidate, right-padded in batches of similar
length (positions start at each row's first token, as in training), gives the mean log-probability
per answer token, end-of-answer ids included: how likely the variant is to answer exactly that and
stop. Prefix and prompt tuning go through peft's own forward pass, as in training's validation loss;
the LM head runs on the candidates' positions only (:func:`koqa.train.loop.loss_window`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformers import PreTrainedModel

from koqa.data.prompt import PromptLayout, layout_from_config
from koqa.data.shards import IGNORE_INDEX, encode_rows, read_shards
from koqa.data.textnorm import build_steps, clean_text
from koqa.data.tokenizer import TextTokenizer, load_text_tokenizer
from koqa.files import write_parquet
from koqa.model.adapters import load_variant
from koqa.predict.generate import prepare_for_inference
from koqa.score.metric import answer_chars
from koqa.train.loop import autocast, collate, loss_window, pick_device, windowed

log = logging.getLogger("koqa")
COLUMNS = ["id", "candidate", "logprob", "tokens"]


def candidate_table(
    rows: pd.DataFrame, answers: Sequence[Mapping[str, str]], clean_options: dict
) -> pd.DataFrame:
    """One row per (question, distinct candidate): ``id``, ``candidate`` (as the members wrote it),
    and ``context``, ``question``, ``target`` (the candidate cleaned) to encode. Candidates the
    metric normalizes to nothing are left out (they abstain, as in the vote). ``answers``: each
    member's ``id -> answer``; only ``rows`` ids they answer are scored."""
    steps = build_steps(clean_options)
    records = []
    for row in rows.itertuples(index=False):
        seen = dict.fromkeys(
            member[row.id]
            for member in answers
            if row.id in member and answer_chars(member[row.id])
        )
        records += [(row.id, c, row.context, row.question, clean_text(c, steps)) for c in seen]
    return pd.DataFrame(records, columns=["id", "candidate", "context", "question", "target"])


def encode_candidates(
    table: pd.DataFrame, tokenizer: TextTokenizer, layout: PromptLayout, max_seq_len: int
) -> pd.DataFrame:
    """:func:`encode_rows` of the candidate table (validation targets): ``input_ids``, ``labels``
    (the candidate's tokens, IGNORE elsewhere), ``prompt_len``, ``n_tokens``, in table order."""
    keyed = table.assign(id=[str(i) for i in range(len(table))])
    encoded = encode_rows(keyed, tokenizer, layout, max_seq_len, center_on_answer=False)
    return encoded.select(["input_ids", "labels", "prompt_len", "n_tokens"]).to_pandas()


@torch.no_grad()
def mean_logprobs(
    model: PreTrainedModel,
    encoded: pd.DataFrame,
    pad_id: int,
    batch_size: int,
    device: str,
    precision: str,
) -> np.ndarray:
    """The mean log-probability of each encoded row's labelled tokens given the tokens before
    them, in row order (batches of similar length, longest first)."""
    order = np.argsort(-encoded["n_tokens"].to_numpy(), kind="stable")
    result = np.zeros(len(encoded))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="likelihood", unit="batch", mininterval=10):
        rows = encoded.iloc[batch]
        tensors = {k: v.to(device) for k, v in collate(rows, pad_id).items()}
        # the logits and labels of the candidates' window only, as in training (the last
        # positions: text, after any virtual tokens of prompt tuning; no labels go to the model)
        tensors = windowed(tensors, loss_window(rows))
        with autocast(device, precision):
            logits = model(
                input_ids=tensors["input_ids"],
                attention_mask=tensors["attention_mask"],
                logits_to_keep=tensors["logits_to_keep"],
            ).logits
        targets = tensors["labels"][:, 1:]
        answer = targets != IGNORE_INDEX
        # only the answer positions go through log-softmax (the whole vocabulary, in fp32)
        logprobs = torch.log_softmax(logits[:, :-1][answer].float(), dim=-1)
        token_logprobs = logprobs.gather(-1, targets[answer].unsqueeze(-1)).squeeze(-1)
        sums = torch.zeros(len(batch), device=device).index_add_(
            0, answer.nonzero()[:, 0], token_logprobs
        )
        result[batch] = (sums / answer.sum(dim=1)).cpu().numpy()
    return result


def check_prompts(encoded: pd.DataFrame, ids: Sequence[str], shards: pd.DataFrame) -> None:
    """Fail unless every candidate's prompt ids are its row's prompt ids in the prediction shards
    (the same prompt the variant answered)."""
    prompts = {
        row_id: tokens[:n].tolist()
        for row_id, tokens, n in zip(
            shards["id"], shards["input_ids"], shards["prompt_len"], strict=True
        )
    }
    for row_id, tokens, n in zip(ids, encoded["input_ids"], encoded["prompt_len"], strict=True):
        if tokens[:n].tolist() != prompts.get(row_id):
            raise ValueError(
                f"row {row_id}: the candidate's prompt differs from the shards' prompt"
            )


def run_likelihood(
    *,
    variant_dir: Path,
    base_dir: Path,
    rows: pd.DataFrame,
    shard_dir: Path,
    answers: Sequence[Mapping[str, str]],
    prompt: dict,
    clean_options: dict,
    out_path: Path,
    batch_size: int,
    device: str,
    precision: str,
    trust_remote_code: bool = False,
    dtype: str = "auto",
) -> pd.DataFrame:
    """Score every row's candidates (the members' ``answers``) with one variant and write the
    ``id, candidate, logprob, tokens`` table to ``out_path``."""
    device = pick_device(device)
    tokenizer = load_text_tokenizer(base_dir)
    table = candidate_table(rows, answers, clean_options)
    encoded = encode_candidates(
        table, tokenizer, layout_from_config(prompt, tokenizer), prompt["max_seq_len"]
    )
    check_prompts(encoded, table["id"].tolist(), read_shards(shard_dir)[0])
    scores = np.zeros(0)
    if len(table):  # every member may abstain everywhere: then there is nothing to load
        model = prepare_for_inference(
            load_variant(
                variant_dir, base_dir, device, trust_remote_code, precision=precision, dtype=dtype
            )
        )
        pad_id = model.config.pad_token_id
        scores = mean_logprobs(
            model,
            encoded,
            tokenizer.eos_id if pad_id is None else pad_id,
            batch_size,
            device,
            precision,
        )
    result = pd.DataFrame(
        {
            "id": table["id"],
            "candidate": table["candidate"],
            "logprob": scores,
            "tokens": encoded["n_tokens"] - encoded["prompt_len"],
        },
        columns=COLUMNS,
    )
    write_parquet(result, out_path)
    log.info("%d candidates for %d rows scored", len(result), table["id"].nunique())
    return result
