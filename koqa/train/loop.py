"""The training loop shared by every method: a plain PyTorch loop, short enough to read in one go.

Why not ``transformers.Trainer``: koqa needs exact control of batching (length-grouped batches from the
shards' token counts), of resumption (a checkpoint with the step, which fixes the data position, and
the RNG state, which Trainer + peft resumes unreliably) and byte-identical results on CPU for the
same config.

One optimizer step = ``grad_accum`` micro-batches (on each process, when training data-parallel; see
:mod:`koqa.train.distributed`). The loss is the mean over answer tokens of the whole accumulated batch
(prompt tokens carry label -100 and never count). Every ``checkpoint_every`` steps the trainable
weights, optimizer, scheduler, step, RNG states and the checkpoint's identity are saved; a rerun
with the same identity (settings, world size, device type, autocast dtype, the training rows and
where the base model and shards came from) resumes from there and continues the step count; any
other checkpoint is ignored, with the reason in the log. The live metrics CSV sits beside the
checkpoint and is copied to its final place at the end. With ``eval_every`` the loss on
the validation shards is measured every that many steps (and at the end); the weights with the
lowest validation loss are the ones kept, and ``early_stopping_patience`` evaluations without
improvement end the training.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from koqa.data.shards import IGNORE_INDEX
from koqa.files import atomic_path
from koqa.train import distributed

log = logging.getLogger("koqa")
CHECKPOINT = "last.pt"
LIVE_METRICS = "metrics.csv"  # in the checkpoint directory while training
METRIC_FIELDS = [
    "step",
    "epoch",
    "loss",
    "val_loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "elapsed_s",
]


def pick_device(requested: str) -> str:
    """``auto`` means CUDA when present, else CPU."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda requested but no CUDA device is visible")
    return requested


def autocast_dtype(device: str, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means full fp32.

    ``auto`` is bf16 on a GPU that has it, fp16 on an older GPU, fp32 on the CPU (bf16 on the CPU
    is available on request: faster on CPUs with AVX512-BF16, less exact)."""
    on_gpu = torch.device(device).type == "cuda"
    if precision == "auto":
        if not on_gpu:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and not on_gpu:
        raise ValueError("precision: fp16 autocast needs a GPU; use bf16 or fp32 on the CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def compute_dtype(device: str, precision: str) -> torch.dtype:
    """The dtype 4-bit layers compute in: the autocast dtype, else fp32."""
    return autocast_dtype(device, precision) or torch.float32


def autocast(device: str, precision: str) -> torch.autocast | nullcontext:
    """An autocast context for ``precision`` on ``device`` (see :func:`autocast_dtype`)."""
    return autocast_to(device, autocast_dtype(device, precision))


def autocast_to(device: str, dtype: torch.dtype | None) -> torch.autocast | nullcontext:
    """An autocast context for ``dtype`` on ``device`` (None: none, full fp32)."""
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else nullcontext()


def length_grouped_batches(
    lengths: list[int], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """Batches of similar length: shuffle, sort within mega-batches of 32 batches, shuffle batches.

    Little padding, yet a different mix every epoch; deterministic for a given seed and epoch.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * 32
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(rows: pd.DataFrame, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch of shard rows into tensors (padding is masked and carries no label)."""
    width = int(rows["n_tokens"].max())
    n = len(rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    for i, (ids, labs) in enumerate(zip(rows["input_ids"], rows["labels"], strict=True)):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(labs)] = torch.tensor(labs)
        attention_mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def answer_tokens(rows: pd.DataFrame) -> int:
    """Tokens that carry a loss: the answer and EOS (labels are shifted, so position 0 never does)."""
    return int((rows["n_tokens"] - rows["prompt_len"].clip(lower=1)).sum())


def peak_rss_mb() -> float | None:
    """The most resident memory this process has used so far, in MiB (Linux's VmHWM; None where
    there is no /proc). Not ``getrusage``: its maximum carries a parent's memory across fork+exec."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)


def lr_factor(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    """The learning-rate multiplier of each step: linear warm-up over ``warmup`` steps, then
    ``cosine`` or ``linear`` decay to 0 at ``total`` (or ``constant``)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if schedule == "linear":
            return 1 - progress
        return 1.0

    return factor


@dataclass
class StepResult:
    """What one optimizer step did, summed over processes."""

    loss: float
    tokens: int  # non-padding tokens
    cells: int  # batch width x rows: tokens plus padding
    grad_norm: float


@dataclass
class RunStats:
    """Totals over the steps of one run (this session, when resumed)."""

    first_loss: float | None = None
    last_loss: float | None = None
    tokens: int = 0
    cells: int = 0
    seconds: float = 0.0  # in optimizer steps, without evaluation

    def add(self, step: StepResult, seconds: float) -> None:
        if self.first_loss is None:
            self.first_loss = step.loss
        self.last_loss = step.loss
        self.tokens += step.tokens
        self.cells += step.cells
        self.seconds += seconds


def rows_fingerprint(rows: pd.DataFrame) -> dict:
    """The training rows' count and a hash of their tokens and labels, in order."""
    digest = hashlib.sha256()
    for column in ("input_ids", "labels"):
        for values in rows[column]:
            digest.update(np.asarray(values, dtype=np.int64).tobytes())
            digest.update(b"|")
    return {"rows": len(rows), "sha256": digest.hexdigest()}


def _load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy saved tensors into the model's parameters of the same names."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


@contextmanager
def metrics_log(path: Path, resumed_step: int | None) -> Iterator[csv.DictWriter]:
    """The live per-step metrics CSV, line-buffered (a killed job loses no logged step); on resume
    it keeps the rows up to the checkpoint's step and appends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    append = resumed_step is not None and path.exists()
    if append:
        logged = pd.read_csv(path)
        logged[logged["step"] <= resumed_step].to_csv(path, index=False)
    with open(path, "a" if append else "w", newline="", buffering=1) as handle:
        writer = csv.DictWriter(handle, METRIC_FIELDS)
        if not append:
            writer.writeheader()
        yield writer


class Trainer:
    """Trains the parameters of ``model`` that require grad on the rows of a training shard set."""

    def __init__(
        self,
        model: torch.nn.Module,
        rows: pd.DataFrame,
        settings: dict,
        pad_id: int,
        *,
        device: str,
        eval_rows: pd.DataFrame | None = None,
        provenance: dict | None = None,
    ):
        """``provenance``: where the base model and the shards came from (see
        :func:`koqa.train.job.training_provenance`); a checkpoint must match it to be resumed."""
        self.model, self.rows, self.settings, self.pad_id = model, rows, settings, pad_id
        self.device, self.eval_rows, self.provenance = device, eval_rows, provenance or {}
        self.autocast_dtype = autocast_dtype(device, settings["precision"])
        self.world = distributed.world()
        self.micro_per_step = settings["grad_accum"] * self.world.size
        batches_per_epoch = math.ceil(len(rows) / settings["batch_size"])
        self.steps_per_epoch = math.ceil(batches_per_epoch / self.micro_per_step)
        self.total_steps = self.steps_per_epoch * settings["epochs"]
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(f"variant {settings['name']}: no trainable parameters")
        if self.world.size > 1:
            distributed.broadcast_parameters(self.params)
        self.optimizer = torch.optim.AdamW(
            self.params, lr=settings["lr"], weight_decay=settings["weight_decay"]
        )
        warmup = round(settings["warmup_ratio"] * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(settings["schedule"], warmup, self.total_steps)
        )
        self.scaler = torch.amp.GradScaler(
            torch.device(device).type,
            enabled=self.autocast_dtype == torch.float16,
        )
        self.step = 0
        self.elapsed = 0.0  # wall seconds of steps and evaluations, carried across resumptions
        self.best = {"val_loss": math.inf, "step": 0, "evals_since": 0, "weights": {}}
        self._epoch_batches: tuple[int, list[list[int]]] = (-1, [])
        self.identity = self._identity()

    # -- checkpoints -------------------------------------------------------------------------
    def _trainable_weights(self) -> dict[str, torch.Tensor]:
        return {
            n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad
        }

    def _identity(self) -> dict:
        """What a checkpoint must have been made with to be resumed: the same settings, world,
        device type and autocast dtype, on the same rows of the same base model and shards."""
        return {
            "settings": self.settings,
            "world_size": self.world.size,
            "device_type": torch.device(self.device).type,
            "autocast_dtype": str(self.autocast_dtype),
            "training_rows": rows_fingerprint(self.rows),
            **self.provenance,
        }

    def save_checkpoint(self, directory: Path) -> None:
        """Write ``last.pt`` atomically (rank 0 only)."""
        if not self.world.is_main:
            return
        state = {
            **self.identity,
            "step": self.step,
            "elapsed_s": self.elapsed,
            "weights": self._trainable_weights(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "best": self.best,
        }
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    def try_resume(self, directory: Path) -> bool:
        """Restore a matching checkpoint from ``directory``; False when there is none."""
        path = directory / CHECKPOINT
        if not path.is_file():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        changed = [key for key, value in self.identity.items() if state.get(key) != value]
        if changed:
            log.info("ignoring checkpoint %s, starting afresh: other %s", path, ", ".join(changed))
            return False
        _load_weights(self.model, state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.step, self.elapsed, self.best = state["step"], state["elapsed_s"], state["best"]
        log.info("resumed from %s at step %d of %d", path, self.step, self.total_steps)
        return True

    # -- training ----------------------------------------------------------------------------
    def _micro_batches(self, epoch: int, position: int) -> list[pd.DataFrame]:
        """The micro-batches of step ``position`` of ``epoch``, over all processes."""
        s = self.settings
        if self._epoch_batches[0] != epoch:
            lengths = self.rows["n_tokens"].tolist()
            self._epoch_batches = (
                epoch,
                length_grouped_batches(lengths, s["batch_size"], s["seed"], epoch),
            )
        first = position * self.micro_per_step
        chosen = self._epoch_batches[1][first : first + self.micro_per_step]
        return [self.rows.iloc[b] for b in chosen]

    def _optimizer_step(self, micro_batches: list[pd.DataFrame]) -> StepResult:
        """One accumulated step; this process runs every ``world.size``-th micro-batch."""
        n_answer = sum(answer_tokens(mb) for mb in micro_batches)
        # summed on the device in float64, read once per step (no sync per micro-batch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        tokens, cells = 0, 0
        self.model.train()
        for mb in micro_batches[self.world.rank :: self.world.size]:
            batch = {k: v.to(self.device) for k, v in collate(mb, self.pad_id).items()}
            with autocast_to(self.device, self.autocast_dtype):
                loss = self.model(**batch).loss * (answer_tokens(mb) / n_answer)
            self.scaler.scale(loss).backward()
            loss_sum += loss.detach().double()
            tokens += int(mb["n_tokens"].sum())  # what collate leaves unmasked
            cells += len(mb) * int(mb["n_tokens"].max())
        loss_sum = loss_sum.item()
        if self.world.size > 1:
            distributed.sum_gradients(self.params)
            loss_sum, tokens, cells = distributed.sum_values([loss_sum, tokens, cells], self.device)
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.settings["max_grad_norm"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss_sum, int(tokens), int(cells), float(grad_norm))

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean answer-token loss on the validation rows (shared out over processes)."""
        rows = self.eval_rows.iloc[self.world.rank :: self.world.size]
        rows = rows.sort_values("n_tokens", kind="stable")
        loss_sum, n_answer = 0.0, 0
        self.model.eval()
        for start in range(0, len(rows), self.settings["batch_size"]):
            mb = rows.iloc[start : start + self.settings["batch_size"]]
            batch = {k: v.to(self.device) for k, v in collate(mb, self.pad_id).items()}
            with autocast_to(self.device, self.autocast_dtype):
                loss = self.model(**batch).loss
            loss_sum += loss.item() * answer_tokens(mb)
            n_answer += answer_tokens(mb)
        if self.world.size > 1:
            loss_sum, n_answer = distributed.sum_values([loss_sum, n_answer], self.device)
        return loss_sum / n_answer

    def _after_evaluation(self, val_loss: float) -> None:
        """Remember the best weights; count evaluations without improvement."""
        if val_loss < self.best["val_loss"]:
            self.best = {
                "val_loss": val_loss,
                "step": self.step,
                "evals_since": 0,
                "weights": self._trainable_weights(),
            }
        else:
            self.best["evals_since"] += 1

    def _stopped_early(self) -> bool:
        patience = self.settings["early_stopping_patience"]
        return bool(patience) and self.best["evals_since"] >= patience

    def _restore_best(self) -> None:
        _load_weights(self.model, self.best["weights"])
        log.info(
            "kept the weights of step %d (validation loss %.4f)",
            self.best["step"],
            self.best["val_loss"],
        )

    def _train_steps(
        self, checkpoint_dir: Path, metrics: csv.DictWriter | None, eval_every: int
    ) -> RunStats:
        """Optimizer steps until the planned count or an early stop, logging and checkpointing."""
        stats = RunStats()
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=self.settings["name"],
            mininterval=5,
            disable=metrics is None,
        )
        while self.step < self.total_steps and not self._stopped_early():
            epoch, position = divmod(self.step, self.steps_per_epoch)
            tick = time.perf_counter()
            result = self._optimizer_step(self._micro_batches(epoch, position))
            step_seconds = time.perf_counter() - tick
            self.step += 1
            val_loss = None
            if eval_every and (self.step % eval_every == 0 or self.step == self.total_steps):
                val_loss = self.evaluate()
                self._after_evaluation(val_loss)
            self.elapsed += time.perf_counter() - tick
            stats.add(result, step_seconds)
            if metrics:
                metrics.writerow(
                    {
                        "step": self.step,
                        "epoch": epoch,
                        "loss": f"{result.loss:.6f}",
                        "val_loss": "" if val_loss is None else f"{val_loss:.6f}",
                        "lr": f"{self.scheduler.get_last_lr()[0]:.3e}",
                        "grad_norm": f"{result.grad_norm:.4f}",
                        "tokens_per_s": f"{result.tokens / step_seconds:.1f}",
                        "elapsed_s": f"{self.elapsed:.2f}",
                    }
                )
            bar.update()
            bar.set_postfix(loss=f"{result.loss:.3f}")
            if self.step % self.settings["checkpoint_every"] == 0 or self._stopped_early():
                self.save_checkpoint(checkpoint_dir)
        bar.close()
        return stats

    def run(self, checkpoint_dir: Path, metrics_path: Path) -> dict:
        """Train to the end (resuming if a matching checkpoint exists); return a summary.

        The metrics are logged live in ``checkpoint_dir`` (Snakemake deletes a job's outputs before
        it runs, so a resumed job's steps before the checkpoint live there) and copied to
        ``metrics_path`` at the end."""
        resumed_at = self.step if self.try_resume(checkpoint_dir) else None
        eval_every = self.settings["eval_every"] if self.eval_rows is not None else 0
        live_metrics = Path(checkpoint_dir) / LIVE_METRICS
        log_metrics = metrics_log(live_metrics, resumed_at) if self.world.is_main else nullcontext()
        with log_metrics as metrics:
            stats = self._train_steps(checkpoint_dir, metrics, eval_every)
        if self.world.is_main:
            with atomic_path(metrics_path) as tmp:
                shutil.copyfile(live_metrics, tmp)
        if self.best["weights"]:
            self._restore_best()
        summary = {
            "variant": self.settings["name"],
            "method": self.settings["method"],
            "steps": self.step,
            "planned_steps": self.total_steps,
            "resumed_from_step": resumed_at,
            "first_loss": stats.first_loss,
            "final_loss": stats.last_loss,
            "train_seconds": round(self.elapsed, 2),
            "tokens_per_s": round(stats.tokens / stats.seconds, 1) if stats.seconds else None,
            "padding_fraction": round(1 - stats.tokens / stats.cells, 4) if stats.cells else None,
            "device": self.device,
            "world_size": self.world.size,
            "trainable_parameters": sum(p.numel() for p in self.params),
            "peak_rss_mb": peak_rss_mb(),
        }
        if eval_every:
            summary |= {
                "best_step": self.best["step"],
                "best_val_loss": self.best["val_loss"],
                "stopped_early": self.step < self.total_steps,
            }
        if torch.device(self.device).type == "cuda":
            summary["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20)
        return summary
