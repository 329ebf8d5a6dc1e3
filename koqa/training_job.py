"""One variant's training job, start to finish: load, wrap, train, save.

The output directory gets the trained weights (a peft adapter, or the full model) in safetensors and
``koqa_variant.json``; ``zeroshot`` gets the JSON alone. The metrics CSV and a summary JSON go beside.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import torch

from koqa.adapters import MANIFEST, trainable_model
from koqa.basemodel import load_base_model
from koqa.files import atomic_path, write_json
from koqa.shards import read_shards
from koqa.tokenizer import load_text_tokenizer
from koqa.train import METRIC_FIELDS, Trainer, pick_device


def run_training(
    settings: dict,
    *,
    shard_dir: Path,
    base_dir: Path,
    out_dir: Path,
    checkpoint_dir: Path,
    metrics_path: Path,
    summary_path: Path,
    trust_remote_code: bool = False,
) -> dict:
    """Train variant ``settings['name']`` and write its outputs; return the summary."""
    method = settings["method"]
    manifest = {"variant": settings["name"], "method": method, "base_model": str(base_dir)}
    if method == "zeroshot":
        with atomic_path(metrics_path) as tmp, open(tmp, "w", newline="") as handle:
            csv.DictWriter(handle, METRIC_FIELDS).writeheader()
        summary = {"variant": settings["name"], "method": method, "steps": 0, "train_seconds": 0.0}
    else:
        rows, _ = read_shards(shard_dir)
        device = pick_device(settings["device"])
        torch.manual_seed(settings["seed"])
        base = load_base_model(
            base_dir,
            trust_remote_code=trust_remote_code,
            quantize_4bit=method == "qlora",
            device=device,
        )
        model = trainable_model(base, settings)
        pad_id = base.config.pad_token_id
        if pad_id is None:  # many causal LMs have no pad token; padding is masked anyway
            pad_id = load_text_tokenizer(base_dir).eos_id
        trainer = Trainer(model, rows, settings, pad_id)
        summary = trainer.run(checkpoint_dir, metrics_path)
    with atomic_path(out_dir) as tmp:
        if method != "zeroshot":
            model.save_pretrained(tmp, safe_serialization=True)
        tmp.mkdir(exist_ok=True)
        write_json(manifest, tmp / MANIFEST)
    write_json(summary, summary_path)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary
