"""The tiny model zoo (tests/zoo.py) is what it claims: every family builds offline and loads with
transformers' Auto classes, in bf16, with the architecture feature it stands for, and its tokenizer
is of the stated kind."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from zoo import FAMILIES, make_model_dir

FEATURES = {
    "llama": lambda m: m.config.num_key_value_heads < m.config.num_attention_heads,
    "qwen2": lambda m: m.model.layers[0].self_attn.q_proj.bias is not None,
    "qwen3": lambda m: hasattr(m.model.layers[0].self_attn, "q_norm"),
    "gemma2": lambda m: m.config.final_logit_softcapping and m.config.sliding_window,
    "phi3": lambda m: hasattr(m.model.layers[0].self_attn, "qkv_proj"),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_loads_as_a_checkpoint_would(tmp_path, family):
    path = make_model_dir(tmp_path, family, chat=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    assert model.dtype == torch.bfloat16
    assert (
        json.loads((path / "config.json").read_text())["model_type"] == FAMILIES[family].model_type
    )
    assert FEATURES.get(family, lambda m: True)(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    user = [{"role": "user", "content": "질문?"}]
    prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    turn = [*user, {"role": "assistant", "content": "서울"}]
    whole = tokenizer.apply_chat_template(turn, tokenize=False)
    end_of_turn = FAMILIES[family].tokenizer.end_of_turn
    assert end_of_turn in whole[len(prompt) :]
    assert tokenizer.eos_token == end_of_turn
    logits = model(torch.tensor([tokenizer("서울")["input_ids"]])).logits
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("kind", ["bpe", "spm"])
def test_tokenizer_kinds(tmp_path, kind):
    path = make_model_dir(tmp_path, "llama", tokenizer_kind=kind)
    tokenizer = AutoTokenizer.from_pretrained(path)
    pieces = tokenizer.tokenize("백두화학의 영업이익 뷁")
    if kind == "spm":
        assert pieces[0].startswith("▁")
        # byte fallback for a syllable the tokenizer never saw
        assert any(p.startswith("<0x") for p in pieces), pieces
    else:
        assert not any("▁" in p for p in pieces)
        assert "Ġ" in "".join(pieces)  # byte-level: the space is a byte of the next piece
    assert tokenizer.decode(
        tokenizer("백두화학의 영업이익", add_special_tokens=False)["input_ids"]
    ) == ("백두화학의 영업이익")
