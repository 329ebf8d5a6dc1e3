"""Best checkpoint by validation F1: the evaluator scores the answers koqa's greedy decoding gives,
the weights kept are those of the evaluation with the highest F1 (ties: the earlier), and the train
job records every evaluation's loss and F1 and the step it kept."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_task import TinyTask, make_trainer, settings, validation_f1

from koqa.train.answer_f1 import answer_f1_evaluator, eval_subset
from koqa.train.job import run_training


def _evaluator(task: TinyTask, **overrides: object):
    return answer_f1_evaluator(
        settings("lora", **overrides),
        task.validation_rows,
        task.train_rows,
        task.tokenizer,
        stop_ids=[],
        pad_id=task.tokenizer.eos_id,
        device="cpu",
    )


def test_the_evaluator_scores_the_greedy_answers_against_the_targets(
    tiny_task: TinyTask, tmp_path: Path
) -> None:
    """The same F1 as transformers' generate() one prompt at a time against the task's own target
    strings (an implementation that shares nothing with the evaluator's batching, prompt slicing
    or gold decoding), on a model that answers some rows right and some wrong."""
    trainer = make_trainer(tiny_task, "lora", epochs=1)
    trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    evaluate = dataclasses.replace(_evaluator(tiny_task, eval_rows=1000), max_new_tokens=12)
    assert len(evaluate.prompts) == len(tiny_task.validation)
    expected = validation_f1(trainer.model, tiny_task, max_new_tokens=12)
    assert 0.05 < expected < 0.95  # neither all wrong nor all right: a shifted row would show
    assert evaluate(trainer.model) == pytest.approx(expected, abs=1e-12)


def test_the_subset_is_fixed_and_the_same_for_every_variant(tiny_task: TinyTask) -> None:
    rows = tiny_task.validation_rows
    subset = eval_subset(rows, 10)
    assert len(subset) == 10 and subset.index.is_monotonic_increasing
    assert subset["id"].tolist() == eval_subset(rows, 10)["id"].tolist()
    assert subset["id"].tolist() != rows["id"].iloc[:10].tolist()  # drawn, not the first rows
    assert eval_subset(rows, 100) is rows
    lora, full = _evaluator(tiny_task, eval_rows=10), _evaluator(tiny_task, eval_rows=10, seed=3)
    assert lora.prompts == full.prompts and len(lora.gold) == 10


class ScriptedF1:
    """Returns the given F1 values in turn, keeping a copy of the trainable weights it saw."""

    def __init__(self, values: list[float]) -> None:
        self.values, self.seen = list(values), []

    def __call__(self, model: torch.nn.Module) -> float:
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        self.seen.append(weights)
        return self.values[len(self.seen) - 1]


def test_the_weights_kept_are_those_of_the_highest_f1_not_the_lowest_loss(
    tiny_task: TinyTask, tmp_path: Path
) -> None:
    """Four evaluations whose F1 peaks first (tied by the third) while the validation loss keeps
    falling: the first evaluation's weights are restored, and both measures are logged."""
    scripted = ScriptedF1([0.5, 0.3, 0.5, 0.1])
    trainer = make_trainer(
        tiny_task,
        "lora",
        eval_rows=tiny_task.validation_rows,
        answer_f1=scripted,
        epochs=1,
        eval_every=3,
        select_by="f1",
    )
    assert trainer.total_steps == 12
    summary = trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    evaluated = metrics.dropna(subset=["val_loss"])
    assert evaluated["step"].tolist() == [3, 6, 9, 12]
    assert evaluated["val_f1"].tolist() == [0.5, 0.3, 0.5, 0.1]
    # loss and F1 disagree: the loss would have kept a later step
    assert int(evaluated.loc[evaluated["val_loss"].idxmin(), "step"]) != 3
    assert (summary["select_by"], summary["best_step"], summary["best_val_f1"]) == ("f1", 3, 0.5)
    assert summary["best_val_loss"] == pytest.approx(evaluated["val_loss"].iloc[0], abs=1e-6)
    kept = {name: param.detach() for name, param in trainer.params.items()}
    last = scripted.seen[-1]
    assert any(not torch.equal(kept[name], last[name]) for name in kept)
    for name, weights in scripted.seen[0].items():
        assert torch.equal(kept[name], weights), name


def test_the_train_job_selects_by_f1_and_records_it(tiny_task: TinyTask, tmp_path: Path) -> None:
    """Through run_training (the evaluator built from the shards): the summary's best step is the
    first evaluation of the highest logged F1."""
    variant = settings("lora", epochs=1, eval_every=4, eval_rows=16, lr=0.005, dropout=0.0)
    summary = run_training(**tiny_task.job(variant, tmp_path))
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    evaluated = pd.read_csv(tmp_path / "metrics.csv").dropna(subset=["val_loss"])
    assert evaluated["val_f1"].notna().all() and len(evaluated) == 3
    best = evaluated.loc[evaluated["val_f1"].idxmax()]
    assert (summary["select_by"], summary["best_step"]) == ("f1", int(best["step"]))
    assert summary["best_val_f1"] == pytest.approx(best["val_f1"], abs=1e-6)
