"""The loss over the answer window only (koqa.train.loop.loss_window): the same loss and gradients as
the whole batch's logits, for every method, with far fewer logits computed.

The rows are the tiny task's, encoded by the pipeline's own ``encode_rows``; one batch mixes
prompts of different lengths (right padding), so the window starts at the shortest prompt's end and
the longer rows' prompts reach into it. Compared at fp32: the loss within 1e-6, every trainable
parameter's gradient within 1e-6 of its largest entry (the two differ only in the order of a
reduction).
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from tiny_task import LEARNING_RATE, TinyTask, make_trainer

from koqa.train.loop import collate, largest_loss_window, length_grouped_batches, loss_window
from koqa.train.variants import METHODS

TOLERANCE = 1e-6


def _mixed_batch(rows: pd.DataFrame, size: int = 6) -> pd.DataFrame:
    """``size`` rows whose prompt lengths differ (the shortest and longest prompts among them)."""
    by_prompt = rows.sort_values("prompt_len", kind="stable")
    batch = pd.concat([by_prompt.head(size // 2), by_prompt.tail(size - size // 2)])
    assert batch["prompt_len"].nunique() > 1, "the batch must mix prompt lengths"
    return batch


def _loss_and_grads(trainer, batch: dict) -> tuple[torch.Tensor, dict, int]:
    trainer.model.eval()  # no dropout: both passes see the same network
    trainer.model.zero_grad(set_to_none=True)
    output = trainer.model(**batch)
    output.loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in trainer.params.items()}
    return output.loss.detach(), grads, output.logits.shape[1]


@pytest.mark.parametrize("method", [m for m in METHODS if m != "zeroshot"])
def test_the_window_gives_the_whole_batch_loss_and_gradients(
    method: str, tiny_task: TinyTask
) -> None:
    trainer = make_trainer(tiny_task, method)
    rows = _mixed_batch(tiny_task.train_rows)
    whole, whole_grads, whole_logits = _loss_and_grads(trainer, collate(rows, trainer.pad_id))
    windowed, window_grads, window_logits = _loss_and_grads(trainer, trainer._batch(rows))

    width = int(rows["n_tokens"].max())
    assert window_logits == loss_window(rows) + trainer.prepended
    assert loss_window(rows) < width / 2, "the window must leave most logits out"
    assert abs(float(windowed - whole)) <= TOLERANCE
    for name, grad in whole_grads.items():
        scale = max(float(grad.abs().max()), 1e-12)
        difference = float((window_grads[name] - grad).abs().max())
        assert difference <= TOLERANCE * max(scale, 1.0), f"{name}: {difference:.2e}"
    assert whole_logits == width + trainer.prepended


def test_the_window_reaches_back_to_the_shortest_prompt(tiny_task: TinyTask) -> None:
    rows = _mixed_batch(tiny_task.train_rows)
    labels = collate(rows, pad_id=0)["labels"]
    first_label = int((labels != -100).any(0).nonzero()[0])
    # the logit before the first labelled position predicts it: it is the window's first
    assert loss_window(rows) == labels.shape[1] - (first_label - 1)


def test_the_largest_window_is_the_largest_of_every_epoch(tiny_task: TinyTask) -> None:
    trainer = make_trainer(tiny_task, "lora", epochs=3, batch_size=8, lr=LEARNING_RATE["lora"])
    rows, s = tiny_task.train_rows, trainer.settings
    windows = [
        loss_window(rows.iloc[batch])
        for epoch in range(3)
        for batch in length_grouped_batches(
            rows["n_tokens"].tolist(), s["batch_size"], s["seed"], epoch
        )
    ]
    assert largest_loss_window(rows, s) == max(windows)
    assert len(set(windows)) > 1
