"""A small learnable QA task and a tiny Llama for the training tests.

Each context mentions one of eight companies among filler sentences; the question asks where the
company is based; the answer is the company's city, which no context states. A model answers only by
learning the company -> city mapping from the training rows, so an untrained model (zeroshot) scores
near 0 and a trained one near 1 on validation rows it has never seen (new filler, same companies).
Rows are tokenized by the tokenize stage's own code (:func:`koqa.data.shards.encode_rows` on the
plain template: whole-text ids, ``[bos] prompt answer eos``, the prompt's labels -100) and written
with :func:`koqa.data.shards.write_shards`, so the training tests train on what the pipeline feeds.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import torch

from koqa.config import load_config
from koqa.data.prompt import build_layout
from koqa.data.shards import encode_rows, write_shards
from koqa.data.tokenizer import TextTokenizer, load_text_tokenizer
from koqa.model.basemodel import build_tiny_llama, pretrain, train_bpe_tokenizer
from koqa.score.metric import char_f1
from koqa.train.answer_f1 import answer_f1_evaluator
from koqa.train.job import load_trainable_model
from koqa.train.loop import Trainer
from koqa.train.variants import check_variant, resolve_variant

COMPANIES = {
    "한빛전자": "서울",
    "세종바이오": "부산",
    "미래금융": "대구",
    "대한건설": "인천",
    "서해식품": "광주",
    "동해해운": "울산",
    "누리통신": "대전",
    "태양에너지": "수원",
}
FILLER = [
    "올해 1분기 영업이익이 크게 늘었다.",
    "신임 대표가 선임되었다.",
    "공급계약을 체결했다고 밝혔다.",
    "주가가 전날보다 3% 올랐다.",
    "새 공장 건설 계획을 발표했다.",
    "해외 시장 진출을 추진하고 있다.",
    "매출이 지난해보다 줄었다.",
    "투자 규모를 두 배로 늘린다.",
]
TEMPLATE = "맥락: {context}\n질문: {question}\n답변:"
QUESTION = "이 회사의 본사는 어디에 있나?"
ARCH = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_layers": 2,
    "num_heads": 2,
    "max_position_embeddings": 256,
}
MAX_SEQ_LEN = 128  # the task's rows need at most ~40 tokens: nothing is cut
# the embedded config as the tiny model gets it (its toy training settings merged in)
CONFIG = load_config(Path(__file__).parents[1] / "config.yaml")


def task_frame(n: int, seed: int, prefix: str) -> pd.DataFrame:
    """``n`` rows (``id, context, question, target``), every company equally often."""
    rng = random.Random(seed)
    names = list(COMPANIES)
    rows = []
    for i in range(n):
        company = names[i % len(names)]
        before, after = rng.sample(FILLER, 2)
        context = f"{before} {company}는 {after}"
        rows.append(
            {
                "id": f"{prefix}_{i:03d}",
                "context": context,
                "question": QUESTION,
                "target": COMPANIES[company],
            }
        )
    return pd.DataFrame(rows)


def encode_table(frame: pd.DataFrame, tokenizer: TextTokenizer, split: str = "train") -> pa.Table:
    """Shard rows of ``frame`` (``id, context, question, target``) as the tokenize rule makes them
    for ``split`` (train or validation). The answer (a city) is not in the context: unaligned."""
    unaligned = frame.assign(answer_start=pd.array([-1] * len(frame), dtype="Int64"))
    layout = build_layout(TEMPLATE, tokenizer)
    return encode_rows(unaligned, tokenizer, layout, MAX_SEQ_LEN, center_on_answer=split == "train")


def encode(frame: pd.DataFrame, tokenizer: TextTokenizer, split: str = "train") -> pd.DataFrame:
    """:func:`encode_table` as the training job reads it back (``read_shards``): a DataFrame."""
    return encode_table(frame, tokenizer, split).to_pandas()


def write_shard_dir(rows: pa.Table, tokenizer: TextTokenizer, path: Path) -> Path:
    """The rows as the tokenize rule writes them: shards of 64 rows with their metadata."""
    layout = build_layout(TEMPLATE, tokenizer)
    metadata = {
        "tokenizer": tokenizer.fingerprint,
        "template": layout.fingerprint(),
        "max_seq_len": MAX_SEQ_LEN,
        "stop_ids": json.dumps(list(layout.stop_ids)),
    }
    write_shards(rows, path, shard_rows=64, metadata=metadata)
    return path


@dataclass(frozen=True)
class TinyTask:
    base_dir: Path
    tokenizer: TextTokenizer
    train: pd.DataFrame  # the task's rows (with ``target``)
    validation: pd.DataFrame
    train_rows: pd.DataFrame  # the same rows tokenized
    validation_rows: pd.DataFrame
    train_dir: Path  # the tokenized rows as shard directories
    validation_dir: Path

    def job(self, variant: dict, out: Path) -> dict:
        """Arguments of ``koqa.train.job.run_training`` for ``variant``, writing below ``out``."""
        return {
            "settings": variant,
            "shard_dir": str(self.train_dir),
            "validation_dir": str(self.validation_dir),
            "base_dir": str(self.base_dir),
            "out_dir": str(out / "adapter"),
            "checkpoint_dir": str(out / "checkpoints"),
            "metrics_path": str(out / "metrics.csv"),
            "timing_path": str(out / "timing.csv"),
            "summary_path": str(out / "summary.json"),
            "plot_path": str(out / "loss.svg"),
        }


def build_task(root: Path) -> TinyTask:
    """Tokenizer, tiny Llama briefly pretrained on the task's contexts, and the tokenized rows."""
    train, validation = task_frame(96, seed=1, prefix="T"), task_frame(24, seed=2, prefix="V")
    texts = [TEMPLATE.format(**row) for row in train.to_dict("records")]
    texts += list(COMPANIES.values())
    hf_tokenizer = train_bpe_tokenizer(texts * 4, vocab_size=1000)
    model = build_tiny_llama(hf_tokenizer, ARCH, seed=5)
    # Pretraining on the task's prompts with random cities teaches the answer format, not the
    # mapping: the base model answers with some city, right one time in eight.
    rng = random.Random(3)
    shuffled = [
        TEMPLATE.format(**row) + " " + rng.choice(list(COMPANIES.values()))
        for row in train.to_dict("records")
    ]
    pretrain(
        model,
        hf_tokenizer,
        shuffled,
        {"steps": 150, "batch_size": 8, "block_size": 32, "lr": 0.003, "seed": 5},
    )
    base_dir = root / "base"
    model.save_pretrained(base_dir, safe_serialization=True)
    hf_tokenizer.save_pretrained(base_dir)
    tokenizer = load_text_tokenizer(base_dir)
    train_rows = encode_table(train, tokenizer, "train")
    validation_rows = encode_table(validation, tokenizer, "validation")
    return TinyTask(
        base_dir=base_dir,
        tokenizer=tokenizer,
        train=train,
        validation=validation,
        train_rows=train_rows.to_pandas(),
        validation_rows=validation_rows.to_pandas(),
        train_dir=write_shard_dir(train_rows, tokenizer, root / "shards/train"),
        validation_dir=write_shard_dir(validation_rows, tokenizer, root / "shards/validation"),
    )


def settings(method: str, **overrides: object) -> dict:
    """A checked variant of ``method`` on config.yaml's training defaults, CPU, with overrides."""
    config = copy.deepcopy(CONFIG)
    config["variants"] = {method: {"method": method, "device": "cpu", **overrides}}
    resolved = resolve_variant(config, method)
    check_variant(resolved)
    return resolved


# Learning rates at which each method moves within a few dozen steps on the tiny model.
LEARNING_RATE = {
    "full": 0.002,
    "lora": 0.005,
    "qlora": 0.005,
    "dora": 0.005,
    "ia3": 0.3,
    "prefix": 0.1,
    "prompt": 0.03,
}
LORA_ALL = {
    "r": 16,
    "alpha": 32,
    "dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def make_trainer(
    task: TinyTask,
    method: str,
    rows: pd.DataFrame | None = None,
    eval_rows: pd.DataFrame | None = None,
    provenance: dict | None = None,
    base_dir: Path | None = None,
    dtype: str = "auto",
    answer_f1: Callable[[torch.nn.Module], float] | None = None,
    **overrides: object,
) -> Trainer:
    """A Trainer for ``method`` on the task's base model (or the one in ``base_dir``, loaded in
    ``dtype``) as the train job loads it (LoRA-family on every linear layer); evaluated on
    ``eval_rows`` by the train job's F1 evaluator unless ``answer_f1`` is given."""
    extra = LORA_ALL if method in ("lora", "qlora", "dora") else {}
    variant = settings(method, **{"lr": LEARNING_RATE[method], **extra, **overrides})
    model, _ = load_trainable_model(variant, base_dir or task.base_dir, "cpu", dtype=dtype)
    rows = task.train_rows if rows is None else rows
    if answer_f1 is None and eval_rows is not None and variant["select_by"] == "f1":
        answer_f1 = answer_f1_evaluator(
            variant,
            eval_rows,
            rows,
            task.tokenizer,
            stop_ids=[],
            pad_id=task.tokenizer.eos_id,
            device="cpu",
        )
    return Trainer(
        model,
        rows,
        variant,
        task.tokenizer.eos_id,
        device="cpu",
        eval_rows=eval_rows,
        answer_f1=answer_f1,
        provenance=provenance,
    )


def generate(
    model: torch.nn.Module, prompt: torch.Tensor, max_new_tokens: int, eos: int, **extra: object
):
    """Greedy ``generate()`` of one unpadded prompt, stopping at ``eos`` (``extra``: more options)."""
    return model.generate(
        input_ids=prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=eos,
        **extra,
    )


@torch.inference_mode()
def validation_f1(model: torch.nn.Module, task: TinyTask, max_new_tokens: int = 12) -> float:
    """Mean character F1 of greedy answers on the validation rows."""
    model.eval()
    total = 0.0
    for ids, prompt_len, gold in zip(
        task.validation_rows["input_ids"],
        task.validation_rows["prompt_len"],
        task.validation["target"],
        strict=True,
    ):
        prompt = torch.tensor([list(ids[:prompt_len])], dtype=torch.long)
        output = generate(model, prompt, max_new_tokens, task.tokenizer.eos_id)[
            0, prompt.shape[1] :
        ].tolist()
        if task.tokenizer.eos_id in output:
            output = output[: output.index(task.tokenizer.eos_id)]
        total += char_f1(task.tokenizer.tokenizer.decode(output), gold)
    return total / len(task.validation)
