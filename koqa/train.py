"""The training loop shared by every method: a plain PyTorch loop, short enough to read in one go.

Why not ``transformers.Trainer``: koqa needs exact control of batching (length-grouped batches from the
shards' token counts), of resumption (a checkpoint with the data position and RNG state, which
Trainer + peft resumes unreliably) and byte-identical results on CPU for the same config.

One optimizer step = ``grad_accum`` micro-batches. The loss is the mean over answer tokens of the
whole accumulated batch (prompt tokens carry label -100 and never count). Every
``checkpoint_every`` steps the trainable weights, optimizer, scheduler, step and RNG state are saved;
a rerun with the same settings resumes from there and continues the step count.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import random
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from koqa.files import atomic_path
from koqa.shards import IGNORE_INDEX

log = logging.getLogger("koqa")
CHECKPOINT = "last.pt"
METRIC_FIELDS = ["step", "epoch", "loss", "lr", "tokens_per_s", "elapsed_s"]


def pick_device(requested: str) -> str:
    """``auto`` means CUDA when present, else CPU."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda requested but no CUDA device is visible")
    return requested


def autocast(device: str, precision: str) -> torch.autocast | nullcontext:
    """bf16 autocast where asked for (``auto``: on CUDA with bf16 support), else full precision."""
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device == "cuda" and torch.cuda.is_bf16_supported()
    )
    return torch.autocast(device, dtype=torch.bfloat16) if use_bf16 else nullcontext()


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
        input_ids[i, : len(ids)] = torch.as_tensor(ids)
        labels[i, : len(labs)] = torch.as_tensor(labs)
        attention_mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def _answer_tokens(rows: pd.DataFrame) -> int:
    """Tokens that carry a loss: the answer and EOS (labels are shifted, so position 0 never does)."""
    return int((rows["n_tokens"] - rows["prompt_len"].clip(lower=1)).sum())


def settings_hash(settings: dict) -> str:
    """A hash of the settings a checkpoint was made with (only a match may resume)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _lr_lambda(schedule: str, warmup: int, total: int):
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


class Trainer:
    """Trains the parameters of ``model`` that require grad on the rows of a training shard set."""

    def __init__(self, model: torch.nn.Module, rows: pd.DataFrame, settings: dict, pad_id: int):
        self.model, self.rows, self.settings, self.pad_id = model, rows, settings, pad_id
        self.device = pick_device(settings["device"])
        self.batches_per_epoch = math.ceil(len(rows) / settings["batch_size"])
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / settings["grad_accum"])
        self.total_steps = self.steps_per_epoch * settings["epochs"]
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"variant {settings['name']}: no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            params, lr=settings["lr"], weight_decay=settings["weight_decay"]
        )
        warmup = round(settings["warmup_ratio"] * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(settings["schedule"], warmup, self.total_steps)
        )
        self.step = 0
        self._epoch_batches: tuple[int, list[list[int]]] = (-1, [])

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, directory: Path) -> None:
        state = {
            "settings_hash": settings_hash(self.settings),
            "step": self.step,
            "weights": {
                n: p.detach().cpu() for n, p in self.model.named_parameters() if p.requires_grad
            },
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(directory / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    def try_resume(self, directory: Path) -> bool:
        path = directory / CHECKPOINT
        if not path.is_file():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["settings_hash"] != settings_hash(self.settings):
            log.info("ignoring checkpoint %s: made with other settings", path)
            return False
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state["weights"].items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]
        log.info("resumed from %s at step %d", path, self.step)
        return True

    # -- training ----------------------------------------------------------------------------
    def _micro_batches(self, epoch: int, group: int) -> list[pd.DataFrame]:
        s = self.settings
        if self._epoch_batches[0] != epoch:
            lengths = self.rows["n_tokens"].tolist()
            self._epoch_batches = (
                epoch,
                length_grouped_batches(lengths, s["batch_size"], s["seed"], epoch),
            )
        batches = self._epoch_batches[1]
        chosen = batches[group * s["grad_accum"] : (group + 1) * s["grad_accum"]]
        return [self.rows.iloc[b] for b in chosen]

    def _optimizer_step(self, micro_batches: list[pd.DataFrame]) -> tuple[float, int]:
        """One accumulated step; returns the mean answer-token loss and the tokens processed."""
        n_answer = sum(_answer_tokens(mb) for mb in micro_batches)
        total, tokens = 0.0, 0
        self.model.train()
        for mb in micro_batches:
            batch = {k: v.to(self.device) for k, v in collate(mb, self.pad_id).items()}
            with autocast(self.device, self.settings["precision"]):
                loss = self.model(**batch).loss * (_answer_tokens(mb) / n_answer)
            loss.backward()
            total += loss.item()
            tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], self.settings["max_grad_norm"]
        )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, tokens

    def run(self, checkpoint_dir: Path, metrics_path: Path) -> dict:
        """Train to the end (resuming if a matching checkpoint exists); return a summary."""
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.try_resume(checkpoint_dir)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        if resumed and metrics_path.exists():  # forget steps logged after the checkpoint
            logged = pd.read_csv(metrics_path)
            logged[logged["step"] <= self.step].to_csv(metrics_path, index=False)
        mode = "a" if resumed and metrics_path.exists() else "w"
        started = time.perf_counter()
        losses = []
        with open(metrics_path, mode, newline="") as handle:
            writer = csv.DictWriter(handle, METRIC_FIELDS)
            if mode == "w":
                writer.writeheader()
            bar = tqdm(
                total=self.total_steps, initial=self.step, desc=self.settings["name"], mininterval=5
            )
            while self.step < self.total_steps:
                epoch, group = divmod(self.step, self.steps_per_epoch)
                tick = time.perf_counter()
                loss, tokens = self._optimizer_step(self._micro_batches(epoch, group))
                self.step += 1
                losses.append(loss)
                writer.writerow(
                    {
                        "step": self.step,
                        "epoch": epoch,
                        "loss": f"{loss:.6f}",
                        "lr": f"{self.scheduler.get_last_lr()[0]:.3e}",
                        "tokens_per_s": f"{tokens / (time.perf_counter() - tick):.1f}",
                        "elapsed_s": f"{time.perf_counter() - started:.2f}",
                    }
                )
                bar.update()
                bar.set_postfix(loss=f"{loss:.3f}")
                if self.step % self.settings["checkpoint_every"] == 0:
                    handle.flush()
                    self.save_checkpoint(checkpoint_dir)
            bar.close()
        return {
            "variant": self.settings["name"],
            "method": self.settings["method"],
            "steps": self.step,
            "resumed": resumed,
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "train_seconds": round(time.perf_counter() - started, 2),
            "device": self.device,
            "trainable_parameters": sum(
                p.numel() for p in self.model.parameters() if p.requires_grad
            ),
        }
