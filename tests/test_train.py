"""The training loop learns, and learns the right thing.

On the tiny task of ``tests/tiny_task.py`` (company -> city, a mapping no context states): every
method lowers the loss on the rows it trains on; ``lora`` and ``full`` answer unseen validation rows
far better than the untrained model; and the same training with labels shifted against the inputs
(the seed notebook's bug: prefix vectors prepended without shifting the labels) does not. One
accumulated optimizer step has the gradients of one forward pass over all its rows.
"""

import copy
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_task import COMPANIES, TinyTask, encode, make_trainer, validation_f1

from koqa.data.shards import IGNORE_INDEX
from koqa.model.basemodel import load_base_model
from koqa.train.loop import answer_tokens, autocast_dtype, compute_dtype, length_grouped_batches
from koqa.train.variants import METHODS

TRAINABLE = [method for method in METHODS if method != "zeroshot"]
MARGIN = 0.4  # validation F1 over zeroshot that counts as having learned the task


@pytest.mark.parametrize("method", TRAINABLE)
def test_loss_on_a_fixed_set_decreases(method: str, tiny_task: TinyTask, tmp_path: Path) -> None:
    """16 rows that all answer 서울: every method, however few its parameters, can lower that loss."""
    fixed = encode(tiny_task.train.iloc[:16].assign(target="서울"), tiny_task.tokenizer)
    trainer = make_trainer(tiny_task, method, rows=fixed, eval_rows=fixed, epochs=20)
    before = trainer.evaluate()
    summary = trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    after = trainer.evaluate()
    assert summary["steps"] == 40
    assert after < 0.95 * before, f"{method}: loss {before:.3f} -> {after:.3f}"


@pytest.fixture(scope="module")
def zeroshot_f1(tiny_task: TinyTask) -> float:
    return validation_f1(load_base_model(tiny_task.base_dir), tiny_task)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_trained_variant_beats_zeroshot(
    method: str, tiny_task: TinyTask, zeroshot_f1: float, tmp_path: Path
) -> None:
    trainer = make_trainer(tiny_task, method, epochs=6)
    trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    f1 = validation_f1(trainer.model, tiny_task)
    assert f1 >= zeroshot_f1 + MARGIN, f"{method}: F1 {f1:.3f}, zeroshot {zeroshot_f1:.3f}"


def test_labels_shifted_against_inputs_do_not_beat_zeroshot(
    tiny_task: TinyTask, zeroshot_f1: float, tmp_path: Path
) -> None:
    """The control that shows the test above can fail: the same LoRA training with every label one
    position late (the model is taught to repeat its current token) must not learn the task."""
    shifted = tiny_task.train_rows.copy()
    shifted["labels"] = [[-100, *labels[:-1]] for labels in shifted["labels"]]
    trainer = make_trainer(tiny_task, "lora", rows=shifted, epochs=6)
    trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    assert validation_f1(trainer.model, tiny_task) < zeroshot_f1 + MARGIN


def test_loss_counts_answer_tokens_only(tiny_task: TinyTask) -> None:
    """The loss the Trainer reports is the mean over answer tokens, prompt tokens masked: it equals
    a cross-entropy computed by hand over exactly the answer positions."""
    rows = tiny_task.train_rows.iloc[:4]
    trainer = make_trainer(tiny_task, "full", eval_rows=rows)
    model = trainer.model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, prompt_len in zip(rows["input_ids"], rows["prompt_len"], strict=True):
            ids = torch.tensor([list(ids)], dtype=torch.long)
            logits = model(input_ids=ids).logits[0, prompt_len - 1 : -1]
            targets = ids[0, prompt_len:]
            total += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            count += len(targets)
    assert count == answer_tokens(rows)
    assert trainer.evaluate() == pytest.approx(total / count, rel=1e-5)


# Answers from 1 to ~20 tokens: micro-batches carry very different numbers of answer tokens, so a
# mean of micro-batch means (or a mean per row) gives other gradients than the mean per token.
ANSWERS = [
    "서울",
    "부산광역시 해운대구 센텀중앙로 79",
    "대구",
    "인천 송도",
    "광주광역시 서구 상무중앙로",
]
# fp32 sums in another order (one batch of 8 against 3 micro-batches of 90, 17 and 6 answer tokens):
# seen up to 2.6e-7 of the largest gradient entry; a mean of micro-batch means is off by 0.33 of it.
GRADIENT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def _one_batch_gradients(
    model: torch.nn.Module, rows: pd.DataFrame, pad_id: int
) -> tuple[float, dict[str, torch.Tensor]]:
    """The plain reference: every row right-padded into one batch, one forward pass, the
    cross-entropy of each answer token (the label of position t is predicted at t - 1) averaged
    over all answer tokens of the batch; its loss and the gradients of the trainable weights."""
    width = int(rows["n_tokens"].max())
    input_ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), IGNORE_INDEX)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, row_labels) in enumerate(zip(rows["input_ids"], rows["labels"], strict=True)):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(row_labels)
        attention_mask[i, : len(ids)] = 1
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    targets = labels[:, 1:]
    answer = targets != IGNORE_INDEX
    loss = torch.nn.functional.cross_entropy(logits[answer], targets[answer], reduction="sum")
    loss = loss / answer.sum()
    loss.backward()
    gradients = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), gradients


@pytest.mark.parametrize("method", ["full", "lora", "prefix"])
def test_accumulated_gradients_equal_one_large_batch(
    method: str, tiny_task: TinyTask, tmp_path: Path
) -> None:
    """8 rows of different lengths in one optimizer step of ``grad_accum: 3`` micro-batches of 3
    rows (the last of 2): the gradients the optimizer is given, the logged loss and gradient norm
    equal those of one forward pass over the 8 rows with the mean loss per answer token."""
    frame = tiny_task.train.iloc[:8]
    rows = encode(frame.assign(target=(ANSWERS * 2)[:8]), tiny_task.tokenizer)
    answer_lengths = rows["n_tokens"] - rows["prompt_len"]
    assert answer_lengths.max() >= 5 * answer_lengths.min(), "the normalisation must matter"
    trainer = make_trainer(
        tiny_task, method, rows=rows, epochs=1, batch_size=3, grad_accum=3, max_grad_norm=1e9
    )
    assert trainer.total_steps == 1
    reference = copy.deepcopy(trainer.model).train()
    seen = {}
    trainer.optimizer.register_step_pre_hook(
        lambda *_: seen.update({n: p.grad.clone() for n, p in trainer.params.items()})
    )
    trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")

    loss, expected = _one_batch_gradients(reference, rows, tiny_task.tokenizer.eos_id)
    assert seen.keys() == expected.keys()
    scale = max(float(g.abs().max()) for g in expected.values())
    for name, gradient in expected.items():
        torch.testing.assert_close(
            seen[name] / scale, gradient / scale, **GRADIENT_TOLERANCE, msg=name
        )
    logged = pd.read_csv(tmp_path / "metrics.csv").iloc[0]
    assert logged["loss"] == pytest.approx(loss, rel=1e-5)
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in expected.values()]))
    assert logged["grad_norm"] == pytest.approx(float(norm), rel=1e-4, abs=1e-4)


def test_length_grouped_batches_pad_little_and_cover_every_row_once() -> None:
    lengths = [(i * 37) % 300 + 20 for i in range(1000)]
    batches = length_grouped_batches(lengths, batch_size=8, seed=1, epoch=0)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    cells = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    assert 1 - sum(lengths) / cells < 0.05
    assert batches != length_grouped_batches(lengths, batch_size=8, seed=1, epoch=1)
    assert batches == length_grouped_batches(lengths, batch_size=8, seed=1, epoch=0)


def _cells(batch: list[int], lengths: list[int]) -> int:
    return len(batch) * max(lengths[i] for i in batch)


def test_the_longest_batches_come_first_and_the_others_keep_their_order() -> None:
    lengths = [(i * 37) % 300 + 20 for i in range(1000)]
    plain = length_grouped_batches(lengths, batch_size=8, seed=1, epoch=0, longest_first=0)
    first = length_grouped_batches(lengths, batch_size=8, seed=1, epoch=0, longest_first=3)
    largest = sorted((_cells(batch, lengths) for batch in plain), reverse=True)[:3]
    assert [_cells(batch, lengths) for batch in first[:3]] == largest
    assert first[3:] == [batch for batch in plain if batch not in first[:3]]


def test_the_first_optimizer_step_runs_the_longest_micro_batches(
    tiny_task: TinyTask, tmp_path: Path
) -> None:
    """What runs out of memory shows in the first step: its two micro-batches are the two with the
    most cells (rows x width) of the epoch, largest first."""
    trainer = make_trainer(tiny_task, "lora", epochs=1, batch_size=6, grad_accum=2)
    shapes = []
    trainer.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(kwargs["input_ids"].numel()), with_kwargs=True
    )
    trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    lengths = tiny_task.train_rows["n_tokens"].tolist()
    seed = trainer.settings["seed"]
    batches = length_grouped_batches(lengths, batch_size=6, seed=seed, epoch=0, longest_first=0)
    assert len(shapes) == len(batches)
    assert shapes[:2] == sorted((_cells(batch, lengths) for batch in batches), reverse=True)[:2]
    assert shapes[2:] != sorted(shapes[2:], reverse=True)  # the others stay shuffled


def test_early_stopping_keeps_the_best_weights(tiny_task: TinyTask, tmp_path: Path) -> None:
    """Validation rows whose answers contradict the training rows: the validation loss rises as
    training fits, so training stops early and the weights of the lowest validation loss stay."""
    rows = tiny_task.train.iloc[:16]
    cities = list(COMPANIES.values())
    wrong_city = dict(zip(cities, cities[1:] + cities[:1], strict=True))
    contradicting = encode(rows.assign(target=rows["target"].map(wrong_city)), tiny_task.tokenizer)
    trainer = make_trainer(
        tiny_task,
        "full",
        eval_rows=contradicting,
        epochs=10,
        eval_every=2,
        early_stopping_patience=2,
        select_by="loss",
    )
    summary = trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    assert summary["stopped_early"] and summary["steps"] < summary["planned_steps"]
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    evaluated = metrics.dropna(subset=["val_loss"])
    assert len(evaluated) == summary["steps"] // 2
    assert summary["best_step"] == int(evaluated.loc[evaluated["val_loss"].idxmin(), "step"])
    assert trainer.evaluate() == pytest.approx(summary["best_val_loss"], rel=1e-5)


@pytest.mark.parametrize(
    ("device", "precision", "expected"),
    [
        ("cpu", "auto", None),
        ("cpu", "fp32", None),
        ("cpu", "bf16", torch.bfloat16),
        ("cuda:1", "fp16", torch.float16),
    ],
)
def test_autocast_dtype(device: str, precision: str, expected: torch.dtype | None) -> None:
    assert autocast_dtype(device, precision) is expected


@pytest.mark.parametrize(
    ("device", "precision", "expected"),
    [
        ("cpu", "auto", torch.float32),
        ("cpu", "bf16", torch.bfloat16),
        ("cuda:1", "fp16", torch.float16),  # a data-parallel worker's GPU
        ("cuda:1", "fp32", torch.float32),
    ],
)
def test_4bit_layers_compute_in_the_autocast_dtype(
    device: str, precision: str, expected: torch.dtype
) -> None:
    assert compute_dtype(device, precision) is expected


def test_fp16_on_the_cpu_is_refused() -> None:
    with pytest.raises(ValueError, match="fp16 autocast needs a GPU"):
        autocast_dtype("cpu", "fp16")


def test_bf16_autocast_trains_on_the_cpu(tiny_task: TinyTask, tmp_path: Path) -> None:
    fixed = encode(tiny_task.train.iloc[:16].assign(target="서울"), tiny_task.tokenizer)
    trainer = make_trainer(
        tiny_task, "lora", rows=fixed, eval_rows=fixed, epochs=10, precision="bf16"
    )
    before = trainer.evaluate()
    trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    assert trainer.evaluate() < 0.8 * before
