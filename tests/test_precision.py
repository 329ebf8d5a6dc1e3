"""Native dtype: the base model loads in its checkpoint's dtype (bf16 for real models) unless
``model.dtype`` says otherwise; adapters train in fp32 on a bf16 base; full fine-tuning trains fp32
master weights and saves the model in the base's dtype again.

A bf16 copy of the tiny task's base model stands in for a real checkpoint.
"""

import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tiny_task import TinyTask, make_trainer, settings

from koqa.model.adapters import load_variant
from koqa.model.basemodel import load_base_model
from koqa.train.job import run_training


@pytest.fixture(scope="module")
def bf16_base(tiny_task: TinyTask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base model saved in bf16, with its tokenizer."""
    path = tmp_path_factory.mktemp("bf16") / "base"
    load_base_model(tiny_task.base_dir, dtype="bfloat16").save_pretrained(path)
    for tokenizer_file in tiny_task.base_dir.glob("tokenizer*"):
        shutil.copy(tokenizer_file, path)
    return path


def _dtypes(model: torch.nn.Module, trainable: bool) -> set[torch.dtype]:
    return {p.dtype for p in model.parameters() if p.requires_grad == trainable}


def test_the_base_loads_in_its_checkpoint_dtype_unless_told(
    tiny_task: TinyTask, bf16_base: Path
) -> None:
    assert load_base_model(bf16_base).dtype == torch.bfloat16
    assert load_base_model(bf16_base, dtype="float32").dtype == torch.float32
    assert load_base_model(tiny_task.base_dir).dtype == torch.float32
    assert load_base_model(tiny_task.base_dir, dtype="bfloat16").dtype == torch.bfloat16


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "prefix", "prompt"])
def test_adapters_train_in_fp32_on_a_bf16_base(
    method: str, tiny_task: TinyTask, bf16_base: Path, tmp_path: Path
) -> None:
    """The frozen base stays bf16 (half the memory of fp32); the adapter, its gradients and AdamW
    states are fp32, and a few steps change the loss."""
    rows = tiny_task.train_rows.iloc[:16]
    trainer = make_trainer(
        tiny_task, method, rows=rows, eval_rows=rows, base_dir=bf16_base, epochs=2
    )
    assert _dtypes(trainer.model, trainable=False) == {torch.bfloat16}
    assert _dtypes(trainer.model, trainable=True) == {torch.float32}
    before = trainer.evaluate()
    trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    states = trainer.optimizer.state.values()
    assert (
        {s["exp_avg"].dtype for s in states}
        == {s["exp_avg_sq"].dtype for s in states}
        == {torch.float32}
    )
    after = trainer.evaluate()
    assert math.isfinite(after) and after != before


def test_full_fine_tuning_trains_fp32_master_weights_and_saves_the_base_dtype(
    tiny_task: TinyTask, bf16_base: Path, tmp_path: Path
) -> None:
    """Updates far below bf16's resolution (lr 1e-6, where bf16 steps by ~4e-4 at 0.1) still move
    the fp32 master weights; the variant is written in bf16, as the base was, and loads back so."""
    trainer = make_trainer(tiny_task, "full", base_dir=bf16_base, epochs=1, batch_size=48, lr=1e-6)
    base = dict(load_base_model(bf16_base).named_parameters())
    assert _dtypes(trainer.model, trainable=True) == {torch.float32}
    trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, base[n].float())]
    assert len(moved) == len(base)

    job = tiny_task.job(settings("full", epochs=1, batch_size=48), tmp_path / "job")
    run_training(**{**job, "base_dir": str(bf16_base)})
    variant = Path(job["out_dir"])
    assert json.loads((variant / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(variant / "model.safetensors", framework="pt") as handle:
        assert {handle.get_slice(k).get_dtype() for k in handle.keys()} == {"BF16"}  # noqa: SIM118
    reloaded = load_variant(variant, bf16_base, "cpu")
    assert reloaded.dtype == torch.bfloat16
    assert load_variant(variant, bf16_base, "cpu", dtype="float32").dtype == torch.float32
    trained = dict(reloaded.named_parameters())
    assert any(not torch.equal(trained[n], p) for n, p in base.items())


def test_a_checkpoint_of_the_base_in_another_dtype_is_not_resumed(
    tiny_task: TinyTask, bf16_base: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints = tmp_path / "checkpoints"
    variant = {"epochs": 1, "checkpoint_every": 6, "base_dir": bf16_base}
    make_trainer(tiny_task, "lora", **variant).run(checkpoints, tmp_path / "metrics.csv")
    assert make_trainer(tiny_task, "lora", **variant).try_resume(checkpoints)
    with caplog.at_level(logging.INFO, logger="koqa"):
        assert not make_trainer(tiny_task, "lora", dtype="float32", **variant).try_resume(
            checkpoints
        )
    assert "made with other parameter_dtypes" in caplog.text
