"""Whole-text tokenization on the tokenizer kinds and chat templates of real model families
(tests/zoo.py): byte-level BPE and SentencePiece-style, each with and without its family's chat
template. Every expectation is computed by transformers itself (``AutoTokenizer``, its
``apply_chat_template`` and encodings of whole texts), independently of koqa's layout.

Costs about 10 s (plus importing transformers and torch): 40 tokenizers are trained on the embedded
sample; no model is built."""

from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from token_checks import cut_at_tokens
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from zoo import FAMILIES, TokenizerSpec, build_tokenizer

from koqa.data.prompt import build_layout
from koqa.data.shards import IGNORE_INDEX, encode_split
from koqa.data.tokenizer import TextTokenizer, load_text_tokenizer

TEMPLATE = "맥락: {context}\n질문: {question}\n답변:"
MAX_SEQ_LEN = 160
FILLER = "세종바이오의 신임 대표로 김민수 대표가 선임되었다. " * 12
CONTEXTS = [
    "한빛전자는 올해 영업이익이 3,500억 원이다.",  # short: never cut
    FILLER + "한빛전자는 올해 영업이익이 3,500억 원이다. " + FILLER,  # cut around the answer
    "미래금융은 2024년 3월 부산에서\n공급계약을 체결했다. " + FILLER,  # answer near the start
]
ROWS = [
    (0, "영업이익은 얼마인가?", "3,500억 원"),
    (0, "어느 회사인가?", "한빛전자"),
    (1, "영업이익은?", "3,500억 원"),
    (1, "신임 대표는 누구인가?", "김민수"),
    (2, "어디에서 계약했나?", "부산"),
]
CASES = [(family, kind) for family in sorted(FAMILIES) for kind in ("bpe", "spm")]


def _frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {"id": f"r{i}", "context": CONTEXTS[c], "question": q, "target": a}
            for i, (c, q, a) in enumerate(ROWS)
        ]
    )
    starts = [c.find(a) for c, a in zip(frame["context"], frame["target"], strict=True)]
    return frame.assign(answer_start=pd.array(starts, dtype="Int64"))


@cache
def _model_dir(root: Path, family: str, kind: str, chat: bool) -> Path:
    spec = FAMILIES[family].tokenizer
    path = root / f"{family}-{kind}-{'chat' if chat else 'plain'}"
    build_tokenizer(TokenizerSpec(**{**spec.__dict__, "kind": kind}), chat).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def zoo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo_tokenizers")


class Reference:
    """What transformers makes of a row: its prompt text and target text, as whole strings."""

    def __init__(self, model_dir: Path, chat: bool, end_of_turn: str, **kwargs: object) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.chat, self.end_of_turn, self.kwargs = chat, end_of_turn, kwargs

    def texts(self, context: str, question: str, answer: str) -> tuple[str, str]:
        """(prompt, prompt + answer + end of turn); a prompt's trailing spaces begin the answer."""
        user = TEMPLATE.format(context=context, question=question)
        if not self.chat:
            return user, user + " " + answer
        messages = [{"role": "user", "content": user}]
        generation = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, **self.kwargs
        )
        whole = self.tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": answer}], tokenize=False, **self.kwargs
        )
        prompt = whole[: whole.rindex(answer)]
        assert prompt.startswith(generation)
        end = whole.rindex(self.end_of_turn) + len(self.end_of_turn)
        return prompt.rstrip(" "), whole[:end]

    def encode(self, text: str) -> list[int]:
        """Plain prompts get the tokenizer's own special tokens; a chat template wrote its own."""
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    def target_end(self) -> int:
        """The token a target ends with: the end of turn, or EOS after a plain prompt."""
        if self.chat:
            return self.tokenizer.convert_tokens_to_ids(self.end_of_turn)
        return self.tokenizer.eos_token_id


def _check_split(tokenizer: TextTokenizer, layout, reference: Reference, frame, split) -> list:
    """Encode ``frame`` for ``split`` and check every row against ``reference``; return the rows."""
    if split == "test":
        frame = frame.drop(columns=["target", "answer_start"])
    encoded = encode_split(frame, tokenizer, layout, MAX_SEQ_LEN, split)
    assert encoded.dropped.empty and encoded.targets_apart == 0
    for row, source in zip(encoded.rows.to_pylist(), frame.itertuples(), strict=True):
        start, end = row["context_start"], row["context_end"]
        ids, n = row["input_ids"], row["prompt_len"]
        answer = getattr(source, "target", "모름")  # test rows: any answer shows the prompt
        prompt_text, whole_text = reference.texts(
            source.context[start:end], source.question, answer
        )
        assert ids[:n] == reference.encode(prompt_text), (split, row["id"])
        if split != "test":
            whole = reference.encode(whole_text)
            if not reference.chat:
                whole.append(reference.tokenizer.eos_token_id)
            assert ids == whole, (split, row["id"])
            assert ids[-1] == reference.target_end() and ids[-1] in layout.stop_ids
        assert row["labels"] == [IGNORE_INDEX] * n + ids[n:]
        assert (n if split != "train" else row["n_tokens"]) <= MAX_SEQ_LEN
        if row["context_truncated"]:
            assert cut_at_tokens(reference.tokenizer, source.context, start, end)
        else:
            assert (start, end) == (0, len(source.context))
        if split == "train":  # the answer stays inside the window
            assert start <= source.answer_start <= source.answer_start + len(answer) <= end
        else:  # the start of the context is kept
            assert start == 0
    return encoded.rows.to_pylist()


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
@pytest.mark.parametrize(("family", "kind"), CASES)
def test_rows_are_whole_text_encodings(zoo_root: Path, family: str, kind: str, chat: bool) -> None:
    model_dir = _model_dir(zoo_root, family, kind, chat)
    tokenizer = load_text_tokenizer(model_dir)
    layout = build_layout(TEMPLATE, tokenizer, chat_template=chat)
    reference = Reference(model_dir, chat, FAMILIES[family].tokenizer.end_of_turn)
    rows = {
        split: _check_split(tokenizer, layout, reference, _frame(), split)
        for split in ("train", "validation", "test")
    }
    prompts = {
        split: [row["input_ids"][: row["prompt_len"]] for row in split_rows]
        for split, split_rows in rows.items()
    }
    assert prompts["validation"] == prompts["test"]  # validation prompts are test prompts
    assert [row["context_truncated"] for row in rows["test"]] == [False, False, True, True, True]
    bos = FAMILIES[family].tokenizer.bos
    first = {ids[0] for ids in prompts["test"]}
    if bos and (not chat or family in ("llama", "gemma2", "gemma3", "mistral")):
        assert first == {reference.tokenizer.convert_tokens_to_ids(bos)}
    elif bos is None and not chat:  # Qwen, HyperCLOVA X: no BOS
        assert not first & set(reference.tokenizer.all_special_ids)


def test_a_prompt_ending_in_a_space_does_not_end_in_a_lone_space_token(zoo_root: Path) -> None:
    """EEVE's generation prompt ends in ``Assistant: ``: encoded alone, a SentencePiece tokenizer
    ends it with a lone ``▁`` that no answer follows in the whole text."""
    model_dir = _model_dir(zoo_root, "solar", "spm", True)
    tokenizer = load_text_tokenizer(model_dir)
    layout = build_layout(TEMPLATE, tokenizer, chat_template=True)
    row = encode_split(_frame(), tokenizer, layout, MAX_SEQ_LEN, "train").rows.to_pylist()[1]
    hf = AutoTokenizer.from_pretrained(model_dir)
    prompt, answer = row["input_ids"][: row["prompt_len"]], row["input_ids"][row["prompt_len"] :]
    assert hf.convert_ids_to_tokens(prompt[-1]) == ":"
    assert hf.convert_ids_to_tokens(answer)[0].startswith("▁한")
    assert hf.convert_ids_to_tokens(answer[-1]) == "</s>"
    rendered = hf.apply_chat_template(
        [{"role": "user", "content": "질문"}], add_generation_prompt=True, tokenize=False
    )
    assert hf.convert_ids_to_tokens(hf(rendered, add_special_tokens=False)["input_ids"][-1]) == "▁"


@pytest.mark.parametrize("kind", ["bpe", "spm"])
def test_qwen3_thinking_switch_gives_one_prompt(zoo_root: Path, kind: str) -> None:
    """The empty think block belongs to the prompt whether the template writes it in the
    generation prompt (thinking off) or in the assistant's turn (thinking on)."""
    model_dir = _model_dir(zoo_root, "qwen3", kind, True)
    tokenizer = load_text_tokenizer(model_dir)
    frame = _frame()
    rows = {}
    for thinking in (True, False):
        kwargs = {"enable_thinking": thinking}
        layout = build_layout(TEMPLATE, tokenizer, chat_template=True, chat_template_kwargs=kwargs)
        reference = Reference(model_dir, True, "<|im_end|>", **kwargs)
        _check_split(tokenizer, layout, reference, frame, "test")
        rows[thinking] = encode_split(frame, tokenizer, layout, MAX_SEQ_LEN, "train").rows
        assert layout.after.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert rows[True].to_pylist() == rows[False].to_pylist()


def test_system_message_and_its_refusal(zoo_root: Path) -> None:
    qwen = load_text_tokenizer(_model_dir(zoo_root, "qwen2", "bpe", True))
    layout = build_layout(TEMPLATE, qwen, chat_template=True, system="너는 경제 기자다.")
    assert layout.before.startswith("<|im_start|>system\n너는 경제 기자다.<|im_end|>")
    assert "You are Qwen" not in layout.before
    default = build_layout(TEMPLATE, qwen, chat_template=True)
    assert "You are Qwen" in default.before and default.fingerprint() != layout.fingerprint()
    gemma = load_text_tokenizer(_model_dir(zoo_root, "gemma2", "spm", True))
    with pytest.raises(
        ValueError, match=r"prompt\.system: .* refused it: System role not supported"
    ):
        build_layout(TEMPLATE, gemma, chat_template=True, system="너는 경제 기자다.")


def test_stop_ids_are_the_end_of_turn_tokens_and_eos(zoo_root: Path) -> None:
    model_dir = _model_dir(zoo_root, "hyperclovax", "bpe", True)
    hf = AutoTokenizer.from_pretrained(model_dir)
    layout = build_layout(TEMPLATE, load_text_tokenizer(model_dir), chat_template=True)
    assert layout.end_text == "<|im_end|><|endofturn|>"
    assert layout.stop_ids == tuple(hf.convert_tokens_to_ids(["<|im_end|>", "<|endofturn|>"]))
    plain_dir = _model_dir(zoo_root, "hyperclovax", "bpe", False)
    plain = build_layout(TEMPLATE, load_text_tokenizer(plain_dir))
    assert (
        plain.stop_ids == plain.end_ids == (AutoTokenizer.from_pretrained(plain_dir).eos_token_id,)
    )


def _with_template(path: Path, template: str, corpus: list[str] | None = None) -> TextTokenizer:
    """A byte-level BPE (trained on ``corpus``, else the zoo's Llama-3 one) with ``template``,
    saved to ``path``."""
    if corpus:
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.train_from_iterator(
            corpus,
            trainers.BpeTrainer(
                vocab_size=400,
                special_tokens=["<s>", "</s>", "<|end|>"],
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            ),
        )
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<s>",
            eos_token="</s>",
            additional_special_tokens=["<|end|>"],
        )
    else:
        tokenizer = build_tokenizer(FAMILIES["llama"].tokenizer, chat=True)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(path)
    return load_text_tokenizer(path)


def test_a_template_that_transforms_its_content_is_refused(tmp_path: Path) -> None:
    template = (
        "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | replace('\\n', ' ') }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    tokenizer = _with_template(tmp_path, template)
    layout = build_layout(TEMPLATE, tokenizer, chat_template=True)
    with pytest.raises(ValueError, match="the chat template transforms its content"):
        encode_split(_frame().iloc[[4]], tokenizer, layout, MAX_SEQ_LEN, "test")


def test_an_assistant_turn_unlike_the_generation_prompt_is_refused(tmp_path: Path) -> None:
    template = (
        "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>model<|end_header_id|>\n\n{% endif %}"
    )
    with pytest.raises(ValueError, match=r"chat template of .* renders the assistant's turn in"):
        build_layout(TEMPLATE, _with_template(tmp_path, template), chat_template=True)


def test_an_answer_merging_with_the_prompt_is_a_recorded_drop(tmp_path: Path) -> None:
    """The prompt ends in ``A:`` and the answer starts with ``(``: a byte-level BPE that learned
    ``:(`` encodes the whole text with one token across the boundary."""
    template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }} A:"
        "{% else %}{{ m['content'] }}<|end|>{% endif %}{% endfor %}"
    )
    corpus = ["A:(주)한빛 A:(주)미래 " * 5, "맥락: 질문: 답변: 한빛 미래 주식회사"] * 50
    tokenizer = _with_template(tmp_path, template, corpus)
    layout = build_layout(TEMPLATE, tokenizer, chat_template=True)
    frame = _frame().iloc[[0, 1]].assign(target=["3,500억 원", "(주)한빛"])
    frame["answer_start"] = pd.array([-1, -1], dtype="Int64")
    train = encode_split(frame, tokenizer, layout, MAX_SEQ_LEN, "train")
    assert train.rows.column("id").to_pylist() == ["r0"]
    assert train.dropped.to_dict("list")["reason"] == ["answer_merges_with_prompt"]
    assert train.dropped["id"].tolist() == ["r1"]
    validation = encode_split(frame, tokenizer, layout, MAX_SEQ_LEN, "validation")
    assert validation.dropped.empty and validation.targets_apart == 1
    row = validation.rows.to_pylist()[1]
    prompt = tokenizer.tokenizer.encode(
        layout.prompt_text(frame["context"][1], frame["question"][1]), add_special_tokens=False
    ).ids
    assert row["input_ids"][: row["prompt_len"]] == prompt
    assert row["input_ids"][row["prompt_len"] :] == tokenizer.encode("(주)한빛<|end|>")
