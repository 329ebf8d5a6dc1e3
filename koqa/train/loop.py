"""The training loop shared by every method: a plain PyTorch loop, short enough to read in one go.

Why not ``transformers.Trainer``: koqa needs exact control of batching (length-grouped batches from the
shards' token counts), of resumption (a checkpoint with the step, which fixes the data position, and
the RNG state, which Trainer + peft resumes unreliably) and byte-identical results on CPU for the
same config.

One optimizer step = ``grad_accum`` micro-batches (on each process, when training data-parallel; see
:mod:`koqa.train.distributed`). The loss is the mean over answer tokens of the whole accumulated batch
(prompt tokens carry label -100 and never count). The first step runs the longest micro-batches
(most cells: rows x width), so a batch that does not fit in memory fails at once, not hours in.
Every ``checkpoint_every`` steps a checkpoint is saved (:mod:`koqa.train.checkpoint`: the trainable
weights, optimizer, scheduler, step, every process's RNG state and the run's identity); a rerun
with the same identity (settings, world size, device type, autocast dtype, parameter dtypes, the
training rows and where the base model and shards came from) resumes from the newest usable one
and continues the step count; any other checkpoint is passed over, with the reason in the log. The
per-step logs sit beside the checkpoints and are copied to their final place at the end:
``metrics.csv`` (loss, validation loss and F1, learning rate, gradient norm: the same bytes for the
same training, resumed or not) and ``timing.csv`` (tokens, seconds, tokens/s, elapsed: wall-clock
figures). With ``eval_every`` the loss on the validation shards is measured every that many steps (and
at the end), and with ``select_by: f1`` the character F1 of greedy answers on a subset of them too
(:mod:`koqa.train.answer_f1`); the weights of the best evaluation by ``select_by`` (the lowest loss
or the highest F1; ties: the earlier) are the ones kept, and ``early_stopping_patience`` evaluations
without improvement end the training.

Precision: the trainable weights and AdamW states are fp32 (peft keeps adapters in fp32 on a bf16
base; full fine-tuning trains fp32 master weights, see :mod:`koqa.train.job`); the forward and
backward passes run in the autocast dtype (bf16 on a GPU that has it), and under FSDP the gathered
layers too (``MixedPrecisionPolicy``, gradients reduced in fp32).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.profiler import record_function
from tqdm import tqdm

from koqa.data.shards import IGNORE_INDEX
from koqa.files import atomic_path
from koqa.runtime import peak_rss_mb
from koqa.train import distributed
from koqa.train.checkpoint import Checkpoints, load_weights, set_rng_state

log = logging.getLogger("koqa")
METRIC_FIELDS = ["step", "epoch", "loss", "val_loss", "val_f1", "lr", "grad_norm"]
TIMING_FIELDS = ["step", "tokens", "seconds", "tokens_per_s", "elapsed_s"]
# the live step logs, in the checkpoint directory while training
METRICS, TIMING = "metrics.csv", "timing.csv"
STEP_LOGS = {METRICS: METRIC_FIELDS, TIMING: TIMING_FIELDS}
# settings that change when and how much is saved, not what is trained: a checkpoint made with
# other values of these is resumed all the same
BOOKKEEPING = ("checkpoint_every", "keep_checkpoints")


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
    lengths: list[int], batch_size: int, seed: int, epoch: int, longest_first: int = 1
) -> list[list[int]]:
    """Batches of similar length: shuffle, sort within mega-batches of 32 batches, shuffle batches,
    then move the ``longest_first`` batches with the most cells (rows x longest row) to the front,
    largest first (the first optimizer step's micro-batches: what runs out of memory shows at once).

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
    by_cells = sorted(
        range(len(batches)),
        key=lambda b: -len(batches[b]) * max(lengths[i] for i in batches[b]),
    )
    front = by_cells[:longest_first]
    moved = set(front)
    return [batches[b] for b in front] + [b for i, b in enumerate(batches) if i not in moved]


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


def loss_window(rows: pd.DataFrame) -> int:
    """How many last positions of a collated batch the loss needs logits for: from the shortest
    prompt's last token (whose logit predicts its first answer token) to the longest row's end.

    The model's LM head and the loss run on these alone (``logits_to_keep``): on contest rows ~20
    of ~300 positions. At a 128k vocabulary every position's fp32 logits take 512 KB (2 GB for a
    batch of 4 x 1,024 tokens, again for their gradient), and the LM head is 5-20% of a step's
    FLOPs."""
    return int(rows["n_tokens"].max() - rows["prompt_len"].clip(lower=1).min() + 1)


def largest_loss_window(rows: pd.DataFrame, settings: dict) -> int:
    """The largest :func:`loss_window` of the micro-batches of every epoch of a training (what the
    memory plan must allow for)."""
    columns = rows[["n_tokens", "prompt_len"]]
    return max(
        loss_window(columns.iloc[batch])
        for epoch in range(settings["epochs"])
        for batch in length_grouped_batches(
            columns["n_tokens"].tolist(), settings["batch_size"], settings["seed"], epoch
        )
    )


def prepended_labels(model: torch.nn.Module) -> int:
    """Label positions the model puts before the batch's own: peft's prompt tuning prepends its
    virtual tokens' (-100), and so returns their logits too."""
    config = getattr(model, "active_peft_config", None)
    return config.num_virtual_tokens if config and config.peft_type == "PROMPT_TUNING" else 0


def windowed(batch: dict, window: int, prepended: int = 0) -> dict:
    """``batch`` asking the model for the logits of its last ``window`` positions only (plus the
    ``prepended`` ones, :func:`prepended_labels`), with the labels of those positions: the same
    loss, without the LM head and the cross-entropy elsewhere (labels are shifted inside the model:
    the logit at a kept position is scored against the next kept label)."""
    return batch | {"labels": batch["labels"][:, -window:], "logits_to_keep": window + prepended}


def answer_tokens(rows: pd.DataFrame) -> int:
    """Tokens that carry a loss: the answer and EOS (labels are shifted, so position 0 never does)."""
    return int((rows["n_tokens"] - rows["prompt_len"].clip(lower=1)).sum())


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


@contextmanager
def step_logs(directory: Path, restored: Path | None) -> Iterator[dict[str, csv.DictWriter]]:
    """The live per-step CSVs (:data:`STEP_LOGS`) in ``directory``, line-buffered (a killed job
    loses no logged step). A resumed run starts from the ``restored`` checkpoint's copies: the
    rows up to its step, byte for byte (never parsed and written again)."""
    directory.mkdir(parents=True, exist_ok=True)
    writers = {}
    with ExitStack() as stack:
        for name, fields in STEP_LOGS.items():
            if restored:
                shutil.copyfile(restored / name, directory / name)
            handle = stack.enter_context(
                open(directory / name, "a" if restored else "w", newline="", buffering=1)
            )
            writers[name] = csv.DictWriter(handle, fields)
            if not restored:
                writers[name].writeheader()
        yield writers


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
        answer_f1: Callable[[torch.nn.Module], float] | None = None,
        provenance: dict | None = None,
    ):
        """``eval_rows``: the validation rows the loss is measured on; ``answer_f1``: the
        validation F1 of the model's answers (:func:`koqa.train.answer_f1.answer_f1_evaluator`),
        needed when the settings select by F1. ``provenance``: where the base model and the shards
        came from (see :func:`koqa.train.job.training_provenance`); a checkpoint must match it to
        be resumed. When data-parallel, ``model`` is wrapped for it
        (:func:`distributed.data_parallel`)."""
        self.model, self.rows, self.settings, self.pad_id = model, rows, settings, pad_id
        self.device, self.eval_rows, self.answer_f1 = device, eval_rows, answer_f1
        self.by_f1 = settings["select_by"] == "f1"
        if self.by_f1 and eval_rows is not None and settings["eval_every"] and answer_f1 is None:
            raise ValueError(
                f"variants.{settings['name']}.select_by: f1 needs an answer_f1 evaluator"
            )
        self.autocast_dtype = autocast_dtype(device, settings["precision"])
        self.world = distributed.world()
        self.sharded = settings["method"] == "full" and self.world.size > 1
        if self.sharded and self.autocast_dtype == torch.float16:
            raise ValueError(
                f"variants.{settings['name']}.precision: fp16 loss scaling is per process, which "
                "sharded (FSDP) full fine-tuning cannot use; use bf16 or fp32"
            )
        self.identity = self._identity(provenance or {})
        self.engine = distributed.data_parallel(
            model, device=device, shard=self.sharded, compute_dtype=self.autocast_dtype
        )
        # every process draws its own dropout masks
        torch.manual_seed(settings["seed"] + self.world.rank)
        self.micro_per_step = settings["grad_accum"] * self.world.size
        batches_per_epoch = math.ceil(len(rows) / settings["batch_size"])
        self.steps_per_epoch = math.ceil(batches_per_epoch / self.micro_per_step)
        self.total_steps = self.steps_per_epoch * settings["epochs"]
        self.prepended = prepended_labels(model)
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError(f"variant {settings['name']}: no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            self.params.values(), lr=settings["lr"], weight_decay=settings["weight_decay"]
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
        # the best evaluation so far (step 0: none yet)
        self.best = {"step": 0, "val_loss": None, "val_f1": None, "evals_since": 0}
        self.restored_from: Path | None = None
        self._epoch_batches: tuple[int, list[list[int]]] = (-1, [])

    # -- checkpoints -------------------------------------------------------------------------
    def _identity(self, provenance: dict) -> dict:
        """What a checkpoint must have been made with to be resumed: the same settings, world,
        device type, autocast and parameter dtypes, on the same rows of the same base model and
        shards (as JSON reads it back)."""
        identity = {
            "settings": {k: v for k, v in self.settings.items() if k not in BOOKKEEPING},
            "world_size": self.world.size,
            "device_type": torch.device(self.device).type,
            "autocast_dtype": str(self.autocast_dtype),
            "parameter_dtypes": sorted({str(p.dtype) for p in self.model.parameters()}),
            "training_rows": rows_fingerprint(self.rows),
            **provenance,
        }
        return json.loads(json.dumps(identity))

    def _checkpoints(self, directory: Path) -> Checkpoints:
        keep = self.settings["keep_checkpoints"]
        return Checkpoints(Path(directory), self.world, self.sharded, keep, self.device)

    def _local_weights(self) -> dict[str, torch.Tensor]:
        """This process's trainable weights (its shards under FSDP), by parameter name."""
        return {name: distributed.local(param) for name, param in self.params.items()}

    def save_checkpoint(self, directory: Path) -> None:
        """Save checkpoint ``step-{step}`` in ``directory`` (every process takes part)."""
        state = {
            "identity": self.identity,
            "step": self.step,
            "elapsed_s": self.elapsed,
            "best": self.best,
            "logs": list(STEP_LOGS),
        }
        training = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        logs = [Path(directory) / name for name in STEP_LOGS]
        self._checkpoints(directory).save(self.step, state, self._local_weights(), training, logs)

    def try_resume(self, directory: Path) -> bool:
        """Restore the newest usable checkpoint in ``directory``; False when there is none."""
        shapes = {name: tuple(w.shape) for name, w in self._local_weights().items()}
        restored = self._checkpoints(directory).restore(self.identity, shapes)
        if restored is None:
            return False
        load_weights(restored.weight_files, self._local_weights())
        self.optimizer.load_state_dict(restored.training["optimizer"])
        self.scheduler.load_state_dict(restored.training["scheduler"])
        self.scaler.load_state_dict(restored.training["scaler"])
        set_rng_state(restored.rng)
        state = restored.state
        self.step, self.elapsed, self.best = state["step"], state["elapsed_s"], state["best"]
        self.restored_from = restored.path
        log.info("resumed from %s at step %d of %d", restored.path, self.step, self.total_steps)
        return True

    # -- training ----------------------------------------------------------------------------
    def _micro_batches(self, epoch: int, position: int) -> list[pd.DataFrame]:
        """The micro-batches of step ``position`` of ``epoch``, over all processes."""
        s = self.settings
        if self._epoch_batches[0] != epoch:
            lengths = self.rows["n_tokens"].tolist()
            batches = length_grouped_batches(
                lengths, s["batch_size"], s["seed"], epoch, longest_first=self.micro_per_step
            )
            self._epoch_batches = (epoch, batches)
        first = position * self.micro_per_step
        chosen = self._epoch_batches[1][first : first + self.micro_per_step]
        return [self.rows.iloc[b] for b in chosen]

    def _batch(self, rows: pd.DataFrame) -> dict[str, torch.Tensor | int]:
        """The model's inputs for ``rows``, logits and loss over :func:`loss_window` only."""
        tensors = {k: v.to(self.device) for k, v in collate(rows, self.pad_id).items()}
        return windowed(tensors, loss_window(rows), self.prepended)

    def _optimizer_step(self, micro_batches: list[pd.DataFrame]) -> StepResult:
        """One accumulated step; this process runs its share of the micro-batches
        (:func:`distributed.rank_share`)."""
        n_answer = sum(answer_tokens(mb) for mb in micro_batches)
        # summed on the device in float64, read once per step (no sync per micro-batch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        tokens, cells = 0, 0
        self.engine.train()
        share = distributed.rank_share(micro_batches, stand_in=micro_batches[0].iloc[:1])
        for i, (mb, counts) in enumerate(share):
            weight = answer_tokens(mb) / n_answer if counts else 0.0
            with distributed.gradient_sync(self.engine, last=i == len(share) - 1):
                with record_function("koqa.data"):
                    batch = self._batch(mb)
                with autocast_to(self.device, self.autocast_dtype), record_function("koqa.forward"):
                    loss = self.engine(**batch).loss * weight
                # DDP and FSDP average the gradients over processes: scale the sum back up
                with record_function("koqa.backward"):
                    self.scaler.scale(loss * self.world.size).backward()
            loss_sum += loss.detach().double()
            if counts:
                tokens += int(mb["n_tokens"].sum())  # what collate leaves unmasked
                cells += len(mb) * int(mb["n_tokens"].max())
        loss_sum = loss_sum.item()
        if self.world.size > 1:
            loss_sum, tokens, cells = distributed.sum_values([loss_sum, tokens, cells], self.device)
        with record_function("koqa.optimizer"):
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                list(self.params.values()), self.settings["max_grad_norm"]
            )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss_sum, int(tokens), int(cells), distributed.scalar(grad_norm))

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean answer-token loss on the validation rows (their batches shared out over
        processes)."""
        rows = self.eval_rows.sort_values("n_tokens", kind="stable")
        size = self.settings["batch_size"]
        batches = [rows.iloc[start : start + size] for start in range(0, len(rows), size)]
        loss_sum, n_answer = 0.0, 0
        self.model.eval()
        for mb, counts in distributed.rank_share(batches, stand_in=batches[0].iloc[:1]):
            with autocast_to(self.device, self.autocast_dtype):
                loss = self.model(**self._batch(mb)).loss
            if counts:
                loss_sum += loss.item() * answer_tokens(mb)
                n_answer += answer_tokens(mb)
        if self.world.size > 1:
            loss_sum, n_answer = distributed.sum_values([loss_sum, n_answer], self.device)
        return loss_sum / n_answer

    def evaluate_f1(self) -> float:
        """The validation F1 of the model's greedy answers. Every process answers every row (a
        sharded model's processes must run the same forward passes) and the mean is taken, so
        that all agree on the best step."""
        f1 = self.answer_f1(self.model)
        if self.world.size > 1:
            (f1,) = distributed.sum_values([f1], self.device)
            f1 /= self.world.size
        return f1

    def _improves(self, val_loss: float, val_f1: float | None) -> bool:
        """Whether an evaluation beats the best so far by ``select_by`` (a tie does not)."""
        if not self.best["step"]:
            return True
        if self.by_f1:
            return val_f1 > self.best["val_f1"]
        return val_loss < self.best["val_loss"]

    def _after_evaluation(
        self, val_loss: float, val_f1: float | None, checkpoint_dir: Path
    ) -> None:
        """Save the weights when they are the best so far; count evaluations without
        improvement."""
        if self._improves(val_loss, val_f1):
            self.best = {
                "step": self.step,
                "val_loss": val_loss,
                "val_f1": val_f1,
                "evals_since": 0,
            }
            self._checkpoints(checkpoint_dir).save_best(self.step, self._local_weights())
        else:
            self.best["evals_since"] += 1

    def _stopped_early(self) -> bool:
        patience = self.settings["early_stopping_patience"]
        return bool(patience) and self.best["evals_since"] >= patience

    def _restore_best(self, checkpoint_dir: Path) -> None:
        files = self._checkpoints(checkpoint_dir).best_files(self.best["step"])
        load_weights(files, self._local_weights())
        log.info(
            "kept the weights of step %d (validation loss %.4f, F1 %s)",
            self.best["step"],
            self.best["val_loss"],
            "not measured" if self.best["val_f1"] is None else f"{self.best['val_f1']:.4f}",
        )

    def _train_steps(
        self, checkpoint_dir: Path, logs: dict[str, csv.DictWriter] | None, eval_every: int
    ) -> RunStats:
        """Optimizer steps until the planned count or an early stop, logging and checkpointing."""
        stats = RunStats()
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=self.settings["name"],
            mininterval=5,
            disable=logs is None,
        )
        while self.step < self.total_steps and not self._stopped_early():
            epoch, position = divmod(self.step, self.steps_per_epoch)
            tick = time.perf_counter()
            with record_function("koqa.step"):
                with record_function("koqa.data"):
                    micro_batches = self._micro_batches(epoch, position)
                result = self._optimizer_step(micro_batches)
            step_seconds = time.perf_counter() - tick
            self.step += 1
            val_loss = val_f1 = None
            if eval_every and (self.step % eval_every == 0 or self.step == self.total_steps):
                val_loss = self.evaluate()
                val_f1 = self.evaluate_f1() if self.by_f1 else None
                self._after_evaluation(val_loss, val_f1, checkpoint_dir)
            self.elapsed += time.perf_counter() - tick
            stats.add(result, step_seconds)
            if logs:
                logs[METRICS].writerow(
                    {
                        "step": self.step,
                        "epoch": epoch,
                        "loss": f"{result.loss:.6f}",
                        "val_loss": "" if val_loss is None else f"{val_loss:.6f}",
                        "val_f1": "" if val_f1 is None else f"{val_f1:.6f}",
                        "lr": f"{self.scheduler.get_last_lr()[0]:.3e}",
                        "grad_norm": f"{result.grad_norm:.4f}",
                    }
                )
                logs[TIMING].writerow(
                    {
                        "step": self.step,
                        "tokens": result.tokens,
                        "seconds": f"{step_seconds:.3f}",
                        "tokens_per_s": f"{result.tokens / step_seconds:.1f}",
                        "elapsed_s": f"{self.elapsed:.2f}",
                    }
                )
            bar.update()
            bar.set_postfix(
                loss=f"{result.loss:.3f}", tokens_per_s=f"{result.tokens / step_seconds:.0f}"
            )
            if self.step % self.settings["checkpoint_every"] == 0 or self._stopped_early():
                self.save_checkpoint(checkpoint_dir)
        bar.close()
        return stats

    def run(
        self, checkpoint_dir: Path, metrics_path: Path, timing_path: Path | None = None
    ) -> dict:
        """Train to the end (resuming if a usable checkpoint exists); return a summary.

        The step logs are written live in ``checkpoint_dir`` (Snakemake deletes a job's outputs
        before it runs, so a resumed job's steps before the checkpoint live there) and copied to
        ``metrics_path`` and ``timing_path`` at the end."""
        checkpoint_dir = Path(checkpoint_dir)
        resumed_at = self.step if self.try_resume(checkpoint_dir) else None
        eval_every = self.settings["eval_every"] if self.eval_rows is not None else 0
        is_main = self.world.is_main
        live_logs = step_logs(checkpoint_dir, self.restored_from) if is_main else nullcontext()
        with live_logs as logs:
            stats = self._train_steps(checkpoint_dir, logs, eval_every)
        for name, path in ((METRICS, metrics_path), (TIMING, timing_path)):
            if is_main and path:
                with atomic_path(path) as tmp:
                    shutil.copyfile(checkpoint_dir / name, tmp)
        if self.best["step"]:
            self._restore_best(checkpoint_dir)
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
            "trainable_parameters": sum(p.numel() for p in self.params.values()),
            "peak_rss_mb": peak_rss_mb(),
        }
        if eval_every:
            summary |= {
                "select_by": self.settings["select_by"],
                "best_step": self.best["step"],
                "best_val_loss": self.best["val_loss"],
                "best_val_f1": self.best["val_f1"],
                "stopped_early": self.step < self.total_steps,
            }
        if torch.device(self.device).type == "cuda":
            summary["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20)
        return summary
