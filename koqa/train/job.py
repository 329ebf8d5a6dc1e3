"""One variant's training job, start to finish: load, wrap, train, save.

The output directory gets the trained weights (a peft adapter, or the full model) in safetensors and
``koqa_variant.json``; ``zeroshot`` gets the JSON alone. The metrics CSV, a summary JSON and a plot
of the loss curves go beside. When data-parallel, every process trains and rank 0 alone writes.

``python -m koqa.train.job JOB.json`` is how :func:`koqa.train.distributed.launch` starts each worker
(the JSON holds :func:`run_training`'s arguments).
"""

from __future__ import annotations

import csv
import logging
import shutil
import sys
from pathlib import Path

import pandas as pd
import torch

from koqa.data.shards import read_shards
from koqa.data.tokenizer import load_text_tokenizer
from koqa.files import atomic_path, read_json, write_json
from koqa.model.adapters import save_variant, trainable_model
from koqa.model.basemodel import load_base_model
from koqa.model.modelpath import model_fingerprint
from koqa.train.loop import (
    METRIC_FIELDS,
    Trainer,
    compute_dtype,
    distributed,
    peak_rss_mb,
    pick_device,
)
from koqa.train.variants import uses_gradient_checkpointing

log = logging.getLogger("koqa")


def training_provenance(base_dir: Path, shard_metadata: dict[str, str]) -> dict:
    """Where a training run's model and data come from: the base model's fingerprint and the
    training shards' metadata (tokenizer, prompt template, length limit)."""
    return {"base_model": model_fingerprint(base_dir), "shards": shard_metadata}


def _train(
    settings: dict,
    shard_dir: Path,
    validation_dir: Path | None,
    base_dir: Path,
    checkpoint_dir: Path,
    metrics_path: Path,
    trust_remote_code: bool,
) -> tuple[torch.nn.Module, dict]:
    """Load the base model, wrap it for the method, train; return the model and the summary."""
    method = settings["method"]
    device = distributed.worker_device(pick_device(settings["device"]))
    rows, shard_metadata = read_shards(shard_dir)
    eval_rows = read_shards(validation_dir)[0] if settings["eval_every"] else None
    torch.manual_seed(settings["seed"])
    base = load_base_model(
        base_dir,
        trust_remote_code=trust_remote_code,
        quantize_4bit=method == "qlora",
        compute_dtype=compute_dtype(device, settings["precision"]),
        device=device,
    )
    checkpointing = uses_gradient_checkpointing(settings, device)
    model = trainable_model(base, settings, gradient_checkpointing=checkpointing)
    pad_id = base.config.pad_token_id
    if pad_id is None:  # many causal LMs have no pad token; padding is masked anyway
        pad_id = load_text_tokenizer(base_dir).eos_id
    trainer = Trainer(
        model,
        rows,
        settings,
        pad_id,
        device=device,
        eval_rows=eval_rows,
        provenance=training_provenance(base_dir, shard_metadata),
    )
    summary = trainer.run(checkpoint_dir, metrics_path)
    summary["gradient_checkpointing"] = checkpointing
    return model, summary


def plot_losses(metrics_path: Path, svg_path: Path, title: str) -> None:
    """Training loss per step, and validation loss where it was measured, as an SVG."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    metrics = pd.read_csv(metrics_path)
    figure = Figure(figsize=(6, 3.5), layout="tight")
    axes = figure.subplots()
    if metrics.empty:
        axes.text(0.5, 0.5, "nothing trained", ha="center", va="center", transform=axes.transAxes)
    else:
        axes.plot(metrics["step"], metrics["loss"], label="training loss", linewidth=1)
        evaluated = metrics.dropna(subset=["val_loss"])
        if not evaluated.empty:
            axes.plot(evaluated["step"], evaluated["val_loss"], "o-", label="validation loss")
        axes.set_yscale("log")
        axes.legend()
    axes.set(xlabel="optimizer step", ylabel="loss (answer tokens)", title=title)
    with atomic_path(svg_path) as tmp, rc_context({"svg.fonttype": "none"}):
        figure.savefig(tmp, format="svg")


def run_training(
    settings: dict,
    *,
    shard_dir: str | Path,
    base_dir: str | Path,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    metrics_path: str | Path,
    summary_path: str | Path,
    plot_path: str | Path | None = None,
    validation_dir: str | Path | None = None,
    trust_remote_code: bool = False,
) -> dict:
    """Train variant ``settings['name']`` and write its outputs; return the summary."""
    method = settings["method"]
    metrics_path = Path(metrics_path)
    if method == "zeroshot":
        model = None
        with atomic_path(metrics_path) as tmp, open(tmp, "w", newline="") as handle:
            csv.DictWriter(handle, METRIC_FIELDS).writeheader()
        summary = {
            "variant": settings["name"],
            "method": method,
            "steps": 0,
            "train_seconds": 0.0,
            "peak_rss_mb": peak_rss_mb(),
        }
    else:
        model, summary = _train(
            settings,
            Path(shard_dir),
            Path(validation_dir) if validation_dir else None,
            Path(base_dir),
            Path(checkpoint_dir),
            metrics_path,
            trust_remote_code,
        )
    if not distributed.world().is_main:
        return summary
    save_variant(model, settings, base_dir, out_dir)
    log.info("rank %d wrote %s", distributed.world().rank, out_dir)
    if plot_path:
        plot_losses(metrics_path, Path(plot_path), f"{settings['name']} ({method})")
    write_json(summary, summary_path)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary


def main(argv: list[str]) -> None:
    """A data-parallel worker: join the process group, run the job in ``argv[0]``."""
    job = read_json(argv[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with distributed.process_group(pick_device(job["settings"]["device"])) as world:
        log.info("data-parallel worker %d of %d", world.rank, world.size)
        summary = run_training(**job)
    if world.is_main:
        log.info("summary: %s", summary)


if __name__ == "__main__":
    main(sys.argv[1:])
