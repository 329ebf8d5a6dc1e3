"""Context-constrained decoding (koqa.predict.constrain) on both tokenizer kinds (tests/zoo.py:
byte-level BPE and SentencePiece-style with byte fallback).

- The mask alone, driven by random logits: every path it allows spells a span of its context
  (sound), and every tokenization of a context span, a leading space or a mid-word start included,
  is allowed token by token (complete).
- The predict job's way, on random-weight models with a LoRA and a prompt-tuning variant loaded as
  the job loads them, rows encoded by the pipeline (contexts cut to ``max_seq_len``): every
  constrained generation spells a span of its prompt's context; left-padded batches with shared
  prefixes give each prompt's tokens alone; where the free generation already spells a span of the
  context, the constrained one is the same.

Cost: about 10 s on one core.
"""

from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_task import CONFIG, settings
from zoo import FAMILIES, build_tokenizer, make_model_dir

from koqa.data.prompt import build_layout
from koqa.data.shards import encode_rows
from koqa.data.tokenizer import load_text_tokenizer
from koqa.model.adapters import load_variant, save_variant, trainable_model
from koqa.model.basemodel import load_base_model
from koqa.predict.constrain import ContextConstraint, SpanIndex, SpanState, token_bytes
from koqa.predict.constrain_choice import constrain_decision, use_constraint
from koqa.predict.generate import greedy_generate, prepare_for_inference, stop_token_ids
from koqa.predict.job import prompt_contexts

KINDS = ["bpe", "spm"]
CONTEXTS = [
    "백두화학의 2023년 2분기 영업이익은 3,300억 원으로 시장 전망치를 웃돌았다고 3일 밝혔다.",
    "누리중공업은 1994년 설립된 조선·플랜트 기업으로, 본사는 마곡에 있다.",
    "공정거래위원회는 교량 안전점검 용역 입찰담합에 가담한 11개 업체에 과징금 총 980억 원을 "
    "부과한다고 24일 밝혔다. 😀 Ωmega",  # characters the tiny vocabularies lack: byte tokens
    "짧다",
]
QUESTIONS = ["얼마인가?", "어디에 있나?", "언제인가?"]
MAX_NEW_TOKENS = 8


def _spans_a_context(tokenizer, tokens: list[int], context: str) -> bool:
    """Whether the decoded tokens, less their leading spaces, are a substring of ``context``."""
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    return text.lstrip(" ") in context and "\ufffd" not in text


def _body(tokens: list[int], stops: list[int]) -> list[int]:
    """The generated tokens before the stop token."""
    return tokens[:-1] if tokens and tokens[-1] in stops else tokens


@pytest.fixture(scope="module", params=KINDS)
def kind_tokenizer(request: pytest.FixtureRequest):
    """(kind, the backend tokenizer, its stop ids) of the Llama family crossed with ``kind``."""
    spec = FAMILIES["llama"].tokenizer
    spec = type(spec)(**{**spec.__dict__, "kind": request.param})
    wrapped = build_tokenizer(spec, chat=False)
    backend = wrapped.backend_tokenizer
    return request.param, backend, stop_token_ids(backend, wrapped.eos_token_id)


def test_token_bytes_spell_what_the_tokenizer_decodes(kind_tokenizer) -> None:
    _, tokenizer, _ = kind_tokenizer
    pieces = token_bytes(tokenizer)
    for context in CONTEXTS:
        ids = tokenizer.encode(context, add_special_tokens=False).ids
        spelled = b"".join(pieces[i] for i in ids).decode()
        assert spelled.removeprefix(" ") == tokenizer.decode(ids) == context


def test_every_path_the_mask_allows_spells_a_context_span(kind_tokenizer) -> None:
    """Random logits, stop tokens pushed down until the last step: long random walks through the
    mask of a batch of different contexts, each must spell a span of its own context."""
    kind, tokenizer, stops = kind_tokenizer
    index = SpanIndex(tokenizer, stops)
    width = tokenizer.get_vocab_size() + 3  # a model may have more logits than the tokenizer ids
    generator = torch.Generator().manual_seed(0)
    lengths = []
    for _ in range(20):
        state = SpanState(index, CONTEXTS, "cpu")
        alive = torch.arange(len(CONTEXTS))
        generated = [[] for _ in CONTEXTS]
        steps = 12
        for step in range(steps):
            logits = torch.randn((len(CONTEXTS), width), generator=generator)
            logits[:, stops] -= 0 if step == steps - 1 else 100
            allowed = state.allowed(alive, width, steps_left=steps - 1 - step)
            logits = logits.masked_fill(~allowed, -torch.inf)
            tokens = logits.argmax(-1)
            state.advance(alive, tokens)
            for row, token in enumerate(tokens.tolist()):
                generated[row].append(token)
        for row, context in enumerate(CONTEXTS):
            body = [t for t in generated[row] if t not in stops]
            body = body[: next((i for i, t in enumerate(generated[row]) if t in stops), None)]
            assert body, f"{kind}: row {row} generated nothing"
            assert _spans_a_context(tokenizer, body, context), (
                f"{kind}: {tokenizer.decode(body)!r} is not in {context!r}"
            )
            lengths.append(len(tokenizer.decode(body)))
    assert max(lengths) >= 8, "the walks must reach past a few characters"


def _allowed_all_the_way(index: SpanIndex, context: str, tokens: list[int]) -> bool:
    """Whether the mask of ``context`` allows ``tokens`` one after the other, then a stop."""
    state, alive = SpanState(index, [context], "cpu"), torch.arange(1)
    for token in tokens:
        if not state.allowed(alive, index.vocab_size, steps_left=99)[0, token]:
            return False
        state.advance(alive, torch.tensor([token]))
    return bool(state.allowed(alive, index.vocab_size, steps_left=99)[0, index.stop_ids].all())


def test_every_tokenization_of_a_context_span_is_allowed(kind_tokenizer) -> None:
    """Spans at every character start and of several lengths (most start mid-word), encoded alone,
    with a leading space, and cut into single characters: all allowed; text outside the context
    is not."""
    kind, tokenizer, stops = kind_tokenizer
    index = SpanIndex(tokenizer, stops)
    context = CONTEXTS[0]
    encode = tokenizer.encode
    for start in range(len(context)):
        for length in (1, 3, 7):
            span = context[start : start + length].strip()
            if not span:
                continue
            ways = [
                encode(span, add_special_tokens=False).ids,
                encode(" " + span, add_special_tokens=False).ids,
                [i for char in span for i in encode(char, add_special_tokens=False).ids],
            ]
            # (SentencePiece prepends a space to each character encoded alone: not the span)
            ways = [t for t in ways if tokenizer.decode(t).lstrip(" ") == span]
            assert len(ways) >= 2, f"{kind}: {span!r}"
            for tokens in ways:
                assert _allowed_all_the_way(index, context, tokens), f"{kind}: {span!r}: {tokens}"
    for outside in ("마곡", "원으로 시장 전망치를 웃돌았다고 4일"):
        tokens = encode(outside, add_special_tokens=False).ids
        assert not _allowed_all_the_way(index, context, tokens), f"{kind}: {outside!r}"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    """Tiny models: a second thread only adds synchronisation on a busy machine."""
    threads, _ = torch.get_num_threads(), torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("constrain_zoo")
    return {
        kind: make_model_dir(
            root / kind, "llama", chat=True, tokenizer_kind=kind, dtype=torch.float32
        )
        for kind in KINDS
    }


def _variant(method: str, base_dir: Path, out_dir: Path):
    """A ``method`` variant moved off its initial values (LoRA starts as a no-op), saved and loaded
    back as the predict job loads it."""
    variant = settings(method)
    model = trainable_model(load_base_model(base_dir), variant)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in (p for p in model.parameters() if p.requires_grad):
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    save_variant(model, variant, base_dir, out_dir)
    return prepare_for_inference(load_variant(out_dir, base_dir, "cpu"))


@pytest.mark.parametrize("method", ["lora", "prompt"])
@pytest.mark.parametrize("kind", KINDS)
def test_constrained_generation_stays_in_the_context_and_batches_exactly(
    kind: str, method: str, model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    base_dir = model_dirs[kind]
    tokenizer = load_text_tokenizer(base_dir)
    layout = build_layout(CONFIG["prompt"]["template"], tokenizer, chat_template=True)
    frame = pd.DataFrame(
        [
            {"id": f"R{i}-{j}", "context": c, "question": q}
            for i, c in enumerate(CONTEXTS)
            for j, q in enumerate(QUESTIONS)
        ]
    )
    frame.to_parquet(tmp_path / "rows.parquet")
    rows = encode_rows(frame, tokenizer, layout, max_seq_len=60).to_pandas()
    assert rows["context_truncated"].any(), "a context must be cut, so its window matters"
    contexts = prompt_contexts(rows, tmp_path / "rows.parquet")
    prompts = [list(ids[:n]) for ids, n in zip(rows["input_ids"], rows["prompt_len"], strict=True)]
    stops = stop_token_ids(tokenizer.tokenizer, tokenizer.eos_id)
    model = _variant(method, base_dir, tmp_path / "variant")
    constraint = ContextConstraint(SpanIndex(tokenizer.tokenizer, stops), contexts)
    options = {"stop_ids": stops, "pad_id": tokenizer.eos_id, "max_new_tokens": MAX_NEW_TOKENS}
    options["device"] = "cpu"

    batched = greedy_generate(model, prompts, batch_size=4, constraint=constraint, **options)
    for tokens, context in zip(batched, contexts, strict=True):
        body = _body(tokens, stops)
        assert body and _spans_a_context(tokenizer.tokenizer, body, context), (
            f"{tokenizer.tokenizer.decode(tokens)!r} is not in {context!r}"
        )
    assert max(len(_body(t, stops)) for t in batched) > 2

    alone = greedy_generate(
        model, prompts, batch_size=1, share_prefixes=False, constraint=constraint, **options
    )
    assert batched == alone

    # where the free generation spells a span of the context, the constrained one is the same:
    # each free generation's longest start that spells whole characters, as the context
    free = greedy_generate(model, prompts, batch_size=4, **options)
    spelled = [_whole_characters(tokenizer.tokenizer, _body(t, stops)) for t in free]
    assert sum(spelled) >= 6, f"too few free tokens to compare with: {spelled}"
    texts = [tokenizer.tokenizer.decode(t[:n]) for t, n in zip(free, spelled, strict=True)]
    within = ContextConstraint(constraint.index, texts)
    again = greedy_generate(model, prompts, batch_size=4, constraint=within, **options)
    for tokens, free_tokens, n in zip(again, free, spelled, strict=True):
        assert tokens[:n] == free_tokens[:n]


def _whole_characters(tokenizer, tokens: list[int]) -> int:
    """How many of ``tokens``, from the first, spell the longest run of whole characters."""
    return max(
        (n for n in range(len(tokens) + 1) if "\ufffd" not in tokenizer.decode(tokens[:n])),
        default=0,
    )


def test_the_choice_keeps_the_decoding_with_the_higher_validation_f1(tmp_path: Path) -> None:
    gold = {"a": "서울", "b": "980억 원"}
    free, constrained = {"a": "서울", "b": "980억 원"}, {"a": "서울시", "b": "980억"}
    decision = constrain_decision(free, constrained, gold)
    assert decision["f1_constrained"] < decision["f1_free"] and not decision["used"]
    assert decision["changed"] == 2
    decision = constrain_decision({"a": "부산", "b": "980억"}, {"a": "서울", "b": "980억"}, gold)
    assert decision["used"]
    decision = constrain_decision(free, free, gold)  # a tie keeps free decoding
    assert decision["changed"] == 0 and not decision["used"]
    path = tmp_path / "constrain.json"
    path.write_text('{"used": true}', encoding="utf-8")
    assert use_constraint("auto", path) and use_constraint("always", None)
    assert not use_constraint("never", path)
    with pytest.raises(ValueError, match="needs the validation decision"):
        use_constraint("auto", None)


def test_prompt_contexts_are_the_kept_windows_and_name_missing_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"id": ["a", "b"], "context": ["서울과 부산", "980억 원"]}).to_parquet(path)
    shard_rows = pd.DataFrame({"id": ["b", "a"], "context_start": [0, 4], "context_end": [4, 6]})
    assert prompt_contexts(shard_rows, path) == ["980억", "부산"]
    with pytest.raises(ValueError, match=r"rows.parquet: no row for shard ids \['c'\]"):
        prompt_contexts(shard_rows.assign(id=["b", "c"]), path)
