"""One variant's training job, start to finish: load, wrap, train, save.

The output directory gets the trained weights (a peft adapter, or the full model) in safetensors and
``koqa_variant.json``; ``zeroshot`` gets the JSON alone. The metrics and timing CSVs, a summary JSON
and a plot of the loss curves go beside. When data-parallel, every process trains and rank 0 alone
writes.

The base model loads in ``model.dtype`` (``auto``: the checkpoint's own, bf16 for real models).
Adapters train in fp32 on it (peft's ``autocast_adapter_dtype``). Full fine-tuning keeps fp32 only
where it must: the master weights, their gradients and the AdamW states are fp32 (bf16 updates of
size lr x grad vanish against bf16 weights), the forward and backward run in the autocast dtype (and
under FSDP, the gathered layers: ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``); the
trained model is saved in the base's dtype again.

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
from transformers import PreTrainedModel

from koqa.data.shards import read_shards, stop_ids
from koqa.data.tokenizer import load_text_tokenizer
from koqa.files import atomic_path, read_json, write_json
from koqa.model.adapters import save_variant, trainable_model
from koqa.model.basemodel import load_base_model
from koqa.model.modelpath import model_fingerprint
from koqa.train.answer_f1 import AnswerF1, answer_f1_evaluator
from koqa.train.loop import (
    METRIC_FIELDS,
    TIMING_FIELDS,
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


def load_trainable_model(
    settings: dict,
    base_dir: Path,
    device: str,
    *,
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, torch.dtype]:
    """The base model loaded in ``dtype`` on ``device`` and wrapped for ``settings['method']``,
    and the dtype it loaded in; full fine-tuning's weights become fp32 master weights."""
    torch.manual_seed(settings["seed"])  # adapter initialization
    base = load_base_model(
        base_dir,
        trust_remote_code=trust_remote_code,
        quantize_4bit=settings["method"] == "qlora",
        compute_dtype=compute_dtype(device, settings["precision"]),
        device=device,
        dtype=dtype,
    )
    base_dtype = base.dtype
    checkpointing = uses_gradient_checkpointing(settings, device)
    return prepare_for_training(base, settings, checkpointing), base_dtype


def prepare_for_training(
    base: PreTrainedModel, settings: dict, gradient_checkpointing: bool
) -> PreTrainedModel:
    """The loaded base wrapped for ``settings['method']``; full fine-tuning's weights become fp32
    master weights (see the module docstring). The memory planner builds its model this way too."""
    if settings["method"] == "full":
        base.float()
    return trainable_model(base, settings, gradient_checkpointing=gradient_checkpointing)


def _train(
    settings: dict,
    shard_dir: Path,
    validation_dir: Path | None,
    base_dir: Path,
    checkpoint_dir: Path,
    log_paths: tuple[Path, Path | None],
    trust_remote_code: bool,
    dtype: str,
) -> tuple[torch.nn.Module | None, dict]:
    """Load the base model, wrap it for the method, train; return the model to save (None on
    ranks other than 0) and the summary."""
    device = distributed.worker_device(pick_device(settings["device"]))
    rows, shard_metadata = read_shards(shard_dir)
    eval_rows, eval_metadata = read_shards(validation_dir) if settings["eval_every"] else (None, {})
    model, base_dtype = load_trainable_model(
        settings, base_dir, device, dtype=dtype, trust_remote_code=trust_remote_code
    )
    tokenizer = load_text_tokenizer(base_dir)
    pad_id = model.config.pad_token_id
    if pad_id is None:  # many causal LMs have no pad token; padding is masked anyway
        pad_id = tokenizer.eos_id
    answer_f1: AnswerF1 | None = None
    if eval_rows is not None and settings["select_by"] == "f1":
        answer_f1 = answer_f1_evaluator(
            settings,
            eval_rows,
            rows,
            tokenizer,
            stop_ids=stop_ids(eval_metadata),
            pad_id=pad_id,
            device=device,
        )
    trainer = Trainer(
        model,
        rows,
        settings,
        pad_id,
        device=device,
        eval_rows=eval_rows,
        answer_f1=answer_f1,
        provenance=training_provenance(base_dir, shard_metadata),
    )
    summary = trainer.run(checkpoint_dir, *log_paths)
    summary["gradient_checkpointing"] = uses_gradient_checkpointing(settings, device)
    if settings["method"] == "full":
        model = _full_model_to_save(model, trainer.sharded, base_dir, base_dtype, trust_remote_code)
    return model, summary


def _full_model_to_save(
    model: torch.nn.Module,
    sharded: bool,
    base_dir: Path,
    dtype: torch.dtype,
    trust_remote_code: bool,
) -> torch.nn.Module | None:
    """The fully fine-tuned model in the base's ``dtype``, on rank 0: under FSDP its weights are
    gathered (every rank takes part) into a copy of the base on rank 0's CPU."""
    if not sharded:
        return model.to(dtype)
    weights = distributed.full_state_dict(model)
    if not distributed.world().is_main:
        return None
    whole = load_base_model(base_dir, trust_remote_code=trust_remote_code, dtype=dtype)
    whole.load_state_dict(weights)
    return whole


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
    timing_path: str | Path | None = None,
    dtype: str = "auto",
) -> dict:
    """Train variant ``settings['name']`` and write its outputs; return the summary.

    ``dtype``: the config's ``model.dtype`` (see :func:`koqa.model.basemodel.load_base_model`)."""
    method = settings["method"]
    metrics_path = Path(metrics_path)
    timing_path = Path(timing_path) if timing_path else None
    if method == "zeroshot":
        model = None
        for path, fields in ((metrics_path, METRIC_FIELDS), (timing_path, TIMING_FIELDS)):
            if path:
                with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
                    csv.DictWriter(handle, fields).writeheader()
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
            (metrics_path, timing_path),
            trust_remote_code,
            dtype,
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
