"""The architecture matrix: every adaptation method on a tiny random-weight model of every family
(tests/zoo.py), through the pipeline's own code from tokens to generated answers.

Each combination is tokenized with the family's chat template (``build_layout``, ``encode_rows``),
trained a few steps (``trainable_model``, ``Trainer``), saved and reloaded (``save_variant``,
``load_variant``) and decoded in left-padded, KV-cached batches with shared prefixes
(``prepare_for_inference``, ``greedy_generate``). Checked:

- the training loss on the rows falls;
- the reloaded variant gives the trained model's logits (``RELOAD_TOLERANCE``);
- the logits of every generated step, in batches, equal those of a full forward pass of each prompt
  alone, no cache, no padding (``GENERATION_TOLERANCE``), prefix and prompt tuning included.

A combination the family cannot support is refused by ``koqa.model.families`` before any job starts;
the matrix checks that it is refused, then runs it with the settings the refusal suggests.
Checkpoints are saved in fp32 (real ones are bf16): the comparisons are about exactness, and fp32 on
the CPU rounds at about 1e-7. Set ``KOQA_MATRIX_TABLE`` to a path to get the results as a Markdown
table (docs/notes/model.md has one).

Cost: 36 s of CPU time for the 80 combinations on one thread (71 s of wall time on a 2-core
machine busy with other jobs); QLoRA's 4-bit layers are the slowest part.
"""

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from generation_check import batched_vs_alone
from tiny_task import CONFIG, settings
from zoo import FAMILIES, make_model_dir

from koqa.data.prompt import build_layout
from koqa.data.shards import encode_rows
from koqa.data.tokenizer import load_text_tokenizer
from koqa.model.adapters import load_variant, save_variant, trainable_model
from koqa.model.basemodel import load_base_model
from koqa.model.families import LIMITATIONS, check_family_support
from koqa.predict.generate import (
    MIN_SHARED_TOKENS,
    left_pad,
    prefix_groups,
    prepare_for_inference,
)
from koqa.train.loop import Trainer
from koqa.train.variants import LORA_METHODS, METHODS, VariantError

RELOAD_TOLERANCE = 1e-6
GENERATION_TOLERANCE = 1e-5  # fp32 on the CPU; padding-dependent prompt tuning was off by ~2e-3
MAX_NEW_TOKENS = 4
# One context, several questions: prompts sharing a prefix, of different lengths.
QUESTIONS = {
    "백두화학의 2023년 2분기 영업이익은 3,300억 원으로 시장 전망치를 웃돌았다고 3일 밝혔다. "
    "본사는 판교에 있다.": [
        ("영업이익은 얼마인가?", "3,300억 원"),
        ("본사는 어디에 있나?", "판교"),
    ],
    "누리중공업은 1994년 설립된 조선·플랜트 기업으로, 본사는 마곡에 있다.": [
        ("누리중공업은 언제 설립되었나?", "1994년"),
        ("본사는 어디인가?", "마곡"),
    ],
    "공정거래위원회는 교량 안전점검 용역 입찰담합에 가담한 11개 업체에 과징금 총 980억 원을 "
    "부과한다고 24일 밝혔다.": [
        ("과징금은 모두 얼마인가?", "980억 원"),
        ("몇 개 업체가 담합했나?", "11개"),
    ],
}
ROWS = pd.DataFrame(
    [
        {"context": context, "question": question, "target": answer}
        for context, pairs in QUESTIONS.items()
        for question, answer in pairs
    ]
).assign(
    id=lambda f: [f"R{i}" for i in range(len(f))],
    answer_start=lambda f: [c.find(a) for c, a in zip(f["context"], f["target"], strict=True)],
)
# Learning rates that move a random-weight model's answer loss within a few steps.
LEARNING_RATE = {
    "full": 3e-3,
    "lora": 1e-2,
    "qlora": 1e-2,
    "dora": 1e-2,
    "ia3": 1.0,
    "prefix": 0.1,
    "prompt": 0.3,
}
TRAINING = {"epochs": 3, "batch_size": 3}  # 6 optimizer steps
RESULTS: dict[tuple[str, str], dict] = {}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    """Tiny matrices: a second thread only adds synchronisation (60x slower 4-bit layers when the
    cores are busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family's tiny instruct checkpoint, in fp32, built on first use."""
    root, built = tmp_path_factory.mktemp("zoo"), {}

    class Dirs(dict):
        def __missing__(self, family: str) -> Path:
            built[family] = make_model_dir(root / family, family, chat=True, dtype=torch.float32)
            return built[family]

    return Dirs()


@pytest.fixture(scope="module", autouse=True)
def matrix_table() -> None:
    """After the module: the results as a Markdown table, when ``KOQA_MATRIX_TABLE`` names a file."""
    yield
    if os.environ.get("KOQA_MATRIX_TABLE") and RESULTS:
        Path(os.environ["KOQA_MATRIX_TABLE"]).write_text(_table(RESULTS), encoding="utf-8")


def _table(results: dict[tuple[str, str], dict]) -> str:
    lines = [
        "| family | " + " | ".join(METHODS) + " |",
        "|---" * (len(METHODS) + 1) + "|",
    ]
    for family in FAMILIES:
        cells = []
        for method in METHODS:
            r = results.get((family, method))
            if r is None:
                cells.append("failed or not run")
                continue
            trained = "-" if r["loss"] is None else "{:.3f}→{:.3f}".format(*r["loss"])
            cells.append(f"{r['note']}{trained}; {r['reload']:.0e}; {r['generation']:.0e}")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _variant(family: str, method: str) -> tuple[dict, str]:
    """The variant as a config with only the method would make it; a combination that
    ``koqa.model.families`` refuses must be refused, and then gets the settings it suggests."""
    overrides = dict(TRAINING)
    if method in LORA_METHODS:
        overrides["dropout"] = 0.0
    if method != "zeroshot":
        overrides["lr"] = LEARNING_RATE[method]
    variant = settings(method, **overrides)
    limitation = LIMITATIONS.get((FAMILIES[family].model_type, method))
    if limitation is None:
        check_family_support(variant, FAMILIES[family].model_type)
        return variant, ""
    with pytest.raises(VariantError, match=f"{method} does not work on"):
        check_family_support(variant, FAMILIES[family].model_type)
    assert limitation.workaround, "a refused combination must say what works instead"
    return settings(method, **overrides, **limitation.workaround), "with the workaround: "


def _logits(model: torch.nn.Module, rows: pd.DataFrame, pad_id: int) -> torch.Tensor:
    """Logits of the rows, left-padded, masked."""
    input_ids, mask = left_pad([list(ids) for ids in rows["input_ids"]], pad_id)
    with torch.no_grad():
        return model.eval()(input_ids=input_ids, attention_mask=mask).logits[:, -8:]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_method_trains_reloads_and_generates_exactly(
    family: str, method: str, model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    base_dir = model_dirs[family]
    variant, note = _variant(family, method)
    tokenizer = load_text_tokenizer(base_dir)
    layout = build_layout(CONFIG["prompt"]["template"], tokenizer, chat_template=True)
    rows = encode_rows(ROWS, tokenizer, layout, max_seq_len=256).to_pandas()
    pad_id = tokenizer.eos_id
    base = load_base_model(base_dir, quantize_4bit=method == "qlora")

    # trains
    model, loss = None, None
    if method != "zeroshot":
        torch.manual_seed(0)
        model = trainable_model(base, variant)
        trainer = Trainer(model, rows, variant, pad_id, device="cpu", eval_rows=rows)
        before = trainer.evaluate()
        trainer.run(tmp_path / "checkpoints", tmp_path / "metrics.csv")
        loss = (before, trainer.evaluate())
        assert loss[1] < before - 0.005, f"loss {before:.3f} -> {loss[1]:.3f}"

    # reloads
    save_variant(model, variant, base_dir, tmp_path / "variant")
    reloaded = load_variant(tmp_path / "variant", base_dir, "cpu")
    reload_diff = (_logits(reloaded, rows, pad_id) - _logits(model or base, rows, pad_id)).abs()
    assert reload_diff.max() <= RELOAD_TOLERANCE

    # generates, batched, exactly as each prompt alone
    prompts = [list(ids[:n]) for ids, n in zip(rows["input_ids"], rows["prompt_len"], strict=True)]
    assert len({len(p) for p in prompts}) > 1, "prompts must differ in length, so padding is real"
    assert any(len(group) > 1 for _, group in prefix_groups(prompts, MIN_SHARED_TOKENS))
    _, worst = batched_vs_alone(
        prepare_for_inference(reloaded),
        prompts,
        stop_ids=[],  # every row decodes every step (stopping: test_generation_equivalence.py)
        pad_id=pad_id,
        batch_size=4,
        max_new_tokens=MAX_NEW_TOKENS,
        device="cpu",
    )
    RESULTS[family, method] = {
        "note": note,
        "loss": loss,
        "reload": float(reload_diff.max()),
        "generation": worst,
    }
    assert worst <= GENERATION_TOLERANCE


@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_prompts_past_the_sliding_window_share_no_prefix(
    family: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Padding between a shared prefix and a suffix counts inside a sliding window: once a row can
    reach past the window, koqa shares no prefix and stays exact (it was off by ~0.2 here)."""
    model = load_base_model(make_model_dir(tmp_path, family, dtype=torch.float32, sliding_window=8))
    generator = torch.Generator().manual_seed(1)
    shared = torch.randint(5, 900, (MIN_SHARED_TOKENS + 2,), generator=generator).tolist()
    prompts = [shared + torch.randint(5, 900, (n,), generator=generator).tolist() for n in (1, 6)]
    assert prefix_groups(prompts, MIN_SHARED_TOKENS) == [(len(shared), [0, 1])]
    options = {"stop_ids": [], "pad_id": 0, "batch_size": 2, "max_new_tokens": 3, "device": "cpu"}
    _, worst = batched_vs_alone(model.eval(), prompts, **options)
    assert worst <= GENERATION_TOLERANCE
    assert "sliding window: no shared prefixes" in caplog.text
