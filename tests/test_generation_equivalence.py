"""koqa's batched, cached, left-padded greedy generation computes, at every step, the logits of a full
forward pass of each prompt alone (no cache, no padding), for every adaptation method, with and
without shared prefixes, on a briefly pretrained tiny Llama whose answers stop in every way (EOS, a
line break, the length cap), so rows leave their batch mid-way.

Each variant is made the way training makes it (``trainable_model``), its trainable weights moved off
their initial values (LoRA starts as a no-op, IA3 as identity scaling), saved like a trained variant
and loaded back with ``load_variant``, as the predict job does. Prompt tuning through peft's
``generate()`` was off by ~1e-3 (position ids dropped for left-padded rows); fp32 on the CPU rounds at
~1e-7.

tests/test_architectures.py compares batched and alone logits on every model family with rows that
never stop; this file is the one where rows stop (EOS, line break, cap) and leave their batch and
its cache mid-way, in groups of three sharing a prefix, and where the tokens are also checked
against plain greedy decoding (a row that stopped too early or too late fails here only).
"""

from pathlib import Path

import pytest
import torch
from generation_check import batched_vs_alone
from tiny_task import ARCH
from transformers import PreTrainedTokenizerFast

from koqa.data.tokenizer import load_text_tokenizer
from koqa.files import write_json
from koqa.model.adapters import MANIFEST, load_variant, trainable_model
from koqa.model.basemodel import build_tiny_llama, load_base_model, pretrain
from koqa.predict.generate import (
    MIN_SHARED_TOKENS,
    prefix_groups,
    prepare_for_inference,
    stop_token_ids,
)
from koqa.train.variants import METHODS, resolve_variant

MAX_NEW_TOKENS = 10
TOLERANCE = 3e-5  # observed <= 9e-6 (qlora); prompt tuning through peft's generate(): ~1e-3
NOISE = {"full": 0.02, "lora": 0.2, "qlora": 0.2, "dora": 0.2}  # see _move_off_initial_values
# A short pretraining on these makes the model stop the way real answers do: at EOS after a
# sentence, at a line break, or not before the length cap.
CORPUS = [
    "한빛전자는 올해 1분기 영업이익이 3,500억 원으로 집계됐다고 밝혔다.",
    "세종바이오의 신임 대표로\n김민수 대표가 선임되었다.",
    "미래금융은 2024년 3월 부산에서 공급계약을 체결했다고 누가 언제 어디서 얼마인가 물었다.",
]
SHARED = "맥락: 세종바이오의 신임 대표로 김민수 대표가 선임되었다. 미래금융은 2024년"
PROMPTS = [
    "한빛전자는 올해 1분기 영업이익이 3,500억 원으로 집계됐다고",
    "세종바이오의 신임 대표로",
    "미래금융은",
    SHARED,  # with the next two: one context, several questions (a shared prefix)
    SHARED + " 3월 부산에서",
    SHARED + " 3월",
    "한빛전자는 올해",
]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A seeded tiny Llama, briefly pretrained on ``CORPUS``."""
    path = tmp_path_factory.mktemp("base")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    model = build_tiny_llama(tokenizer, ARCH, seed=3)
    settings = {"block_size": 64, "steps": 20, "batch_size": 4, "lr": 0.01, "seed": 1}
    pretrain(model, tokenizer, CORPUS * 8, settings)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def _make_variant(method: str, base_dir: Path, out_dir: Path) -> Path:
    """Build, perturb and save a variant of ``method`` as the train job would leave it."""
    out_dir.mkdir()
    write_json(
        {"variant": method, "method": method, "base_model": str(base_dir)}, out_dir / MANIFEST
    )
    if method == "zeroshot":
        return out_dir
    settings = resolve_variant({"train": {}, "variants": {method: {"method": method}}}, method)
    base = load_base_model(base_dir, quantize_4bit=method == "qlora")
    torch.manual_seed(0)  # LoRA's initialization: the same variant whatever ran before
    model = trainable_model(base, settings)
    _move_off_initial_values(model, method, base.get_input_embeddings().weight.detach().clone())
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


@torch.no_grad()
def _move_off_initial_values(model: torch.nn.Module, method: str, vocab: torch.Tensor) -> None:
    """Stand in for training: Gaussian noise on the trainable weights (small for ``full``, and for
    LoRA's factors, whose product would otherwise outweigh the model and magnify fp32 rounding to
    ~1e-4 between any two ways of computing the same logits). Prompt tuning's virtual tokens become
    embeddings of random vocabulary tokens instead (peft's sample-vocab initialization): random
    directions barely sway a pretrained model."""
    generator = torch.Generator().manual_seed(11)
    for parameter in (p for p in model.parameters() if p.requires_grad):
        if method == "prompt":
            rows = torch.randint(0, len(vocab), (parameter.shape[0],), generator=generator)
            parameter.copy_(vocab[rows])
        else:
            noise = torch.randn(parameter.shape, generator=generator).to(parameter.dtype)
            parameter.add_(noise * NOISE.get(method, 1.0))


@torch.inference_mode()
def _reference(model: torch.nn.Module, prompt: list[int], stop_ids: set[int]) -> list[int]:
    """Greedy decoding the slow, obvious way: one full forward pass per token, no cache, no padding."""
    tokens, generated = list(prompt), []
    for _ in range(MAX_NEW_TOKENS):
        logits = model(input_ids=torch.tensor([tokens]), use_cache=False).logits
        token = int(logits[0, -1].argmax())
        generated.append(token)
        tokens.append(token)
        if token in stop_ids:
            break
    return generated


@pytest.fixture(scope="module")
def prompts(base_dir: Path) -> list[list[int]]:
    tokenizer = load_text_tokenizer(base_dir)
    return [[tokenizer.bos_id, *tokenizer.encode(text)] for text in PROMPTS]


@pytest.fixture(scope="module")
def stop_ids(base_dir: Path) -> list[int]:
    tokenizer = load_text_tokenizer(base_dir)
    return stop_token_ids(tokenizer.tokenizer, tokenizer.eos_id)


@pytest.fixture(scope="module")
def base_generations(
    base_dir: Path, prompts: list[list[int]], stop_ids: list[int]
) -> list[list[int]]:
    """The reference generations of the base model alone."""
    model = load_base_model(base_dir)
    return [_reference(model, prompt, set(stop_ids)) for prompt in prompts]


@pytest.mark.parametrize("method", METHODS)
def test_batched_cached_generation_equals_each_prompt_alone(
    method: str,
    base_dir: Path,
    prompts: list[list[int]],
    stop_ids: list[int],
    base_generations: list[list[int]],
    tmp_path: Path,
) -> None:
    assert len({len(p) for p in prompts}) == len(prompts), "prompts must differ in length"
    shared = prefix_groups(prompts, MIN_SHARED_TOKENS)
    assert any(len(group) == 3 for _, group in shared), "three prompts must share a prefix"
    variant = load_variant(_make_variant(method, base_dir, tmp_path / method), base_dir, "cpu")
    model = prepare_for_inference(variant)

    expected = [_reference(model, prompt, set(stop_ids)) for prompt in prompts]
    for share_prefixes in (True, False):
        batched, worst = batched_vs_alone(
            model,
            prompts,
            stop_ids=stop_ids,
            pad_id=stop_ids[0],
            batch_size=3,
            max_new_tokens=MAX_NEW_TOKENS,
            device="cpu",
            share_prefixes=share_prefixes,
        )
        assert worst <= TOLERANCE, f"share_prefixes={share_prefixes}: logits off by {worst:.1e}"
        assert batched == expected, f"share_prefixes={share_prefixes}"
    if method != "zeroshot":  # the adapter must change the answers, or this proves nothing
        assert expected != base_generations


def test_generations_cover_every_way_to_stop(
    base_dir: Path, stop_ids: list[int], base_generations: list[list[int]]
) -> None:
    """The base model's generations stop at EOS, at a newline, and at the length cap: each way of
    stopping is exercised by the equivalence test above."""
    tokenizer = load_text_tokenizer(base_dir)
    endings = {
        "eos"
        if tokens[-1] == tokenizer.eos_id
        else "newline"
        if "\n" in tokenizer.tokenizer.decode([tokens[-1]])
        else "cap"
        for tokens in base_generations
    }
    assert endings == {"eos", "newline", "cap"}
