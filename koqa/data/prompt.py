"""The prompt layout: the texts around the context and the question, and what follows the prompt.

**Plain template** (``prompt.chat_template: false``): ``prompt.template`` with its ``{context}`` and
``{question}`` filled in is the prompt. It is encoded with the tokenizer's own special tokens (its
post-processor adds BOS where the family does: Llama, Gemma, SentencePiece tokenizers; Qwen adds
none), and the target is the answer, then EOS.

**Chat template**: the filled-in template is the user turn (after ``prompt.system``, if set) of the
tokenizer's chat template, rendered by transformers' ``apply_chat_template`` with
``prompt.chat_template_kwargs`` as template variables. The rendered text writes its own BOS, so it
is encoded without adding special tokens. The prompt is what the template writes before the
assistant's message: the generation prompt and anything the template puts between it and the
message (Qwen3's empty think block when thinking is on). The target is the message, then the
template's end of the assistant turn up to its last special token (``<|eot_id|>``, ``<|im_end|>``,
``<end_of_turn>``, ``<|im_end|><|endofturn|>``...; EOS if that end holds no special token): both
come from rendering the conversation with an assistant turn, which must start with the generation
prompt. Generation stops at those special tokens (:attr:`PromptLayout.stop_ids`).

Rendering 33k rows one by one is slow, so the template is rendered once with placeholders for the
context, the question and the answer; :meth:`PromptLayout.check_rendering` renders one real row and
checks it equals the substitution (a template that transforms its content fails there, clearly).

**The prompt/answer boundary.** A prompt that ends in spaces (EEVE's ``Assistant: ``, or a plain
template ending in a space) would end in a token of its own (a lone ``▁`` in a SentencePiece
tokenizer) that the model never sees before an answer: in the text, that space starts the answer's
first word. So the trailing spaces (not line breaks, which end a line in every tokenizer) move into
the answer: the prompt is encoded whole without them, the answer is what follows the prompt in the
whole encoding of prompt + answer, and the inference prompt is exactly the training prompt. A plain
template ending in a non-space (``답변:``) gets a space before the answer, as text would.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from jinja2 import TemplateError

from koqa.data.tokenizer import TextTokenizer

log = logging.getLogger("koqa")
# Placeholders while a template is rendered (Unicode private-use characters).
_CONTEXT, _QUESTION, _ANSWER = "\ue010", "\ue011", "\ue012"
_TRAILING_SPACES = re.compile(r"[ \t]+$")


@dataclass(frozen=True)
class PromptLayout:
    """The fixed texts of a prompt, and the texts and ids that close a target.

    A prompt is ``before + context + between + question + after``; a target is
    ``answer_prefix + answer + end_text`` encoded right after the prompt, then ``end_ids``.
    """

    before: str
    between: str
    after: str
    answer_prefix: str  # the prompt's trailing spaces, or " " after a plain template's "답변:"
    end_text: str  # a chat template's end of the assistant turn, up to its last special token
    end_ids: tuple[int, ...]  # appended after the encoded target: EOS, unless end_text ends it
    stop_ids: tuple[int, ...]  # where generation stops: the end-of-turn token(s) and EOS
    add_special_tokens: bool  # plain: the tokenizer's BOS; chat: the template writes its own
    # renders one real row as the template would: the prompt and its moved trailing spaces
    render: Callable[[str, str], str] | None = field(default=None, compare=False, repr=False)

    def prompt_text(self, context: str, question: str) -> str:
        """The whole prompt text of one row."""
        return f"{self.before}{context}{self.between}{question}{self.after}"

    def target_text(self, answer: str) -> str:
        """The text after the prompt in a training example (``end_ids`` follow it)."""
        return f"{self.answer_prefix}{answer}{self.end_text}"

    def check_rendering(self, context: str, question: str) -> None:
        """Check that the template renders a real row as the placeholder substitution does."""
        if self.render is None:
            return
        rendered = self.render(context, question)
        substituted = self.prompt_text(context, question) + self.answer_prefix
        if rendered != substituted:
            raise ValueError(
                "the chat template transforms its content, so koqa cannot render it once for all "
                f"rows: a real row renders as {rendered[-200:]!r}, the substitution gives "
                f"{substituted[-200:]!r} (last 200 characters); set prompt.chat_template: false"
            )

    def fingerprint(self) -> str:
        """A short hash of the layout, stored with the shards."""
        parts = (
            self.before,
            self.between,
            self.after,
            self.answer_prefix,
            self.end_text,
            str(self.end_ids),
            str(self.stop_ids),
            str(self.add_special_tokens),
        )
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _with_placeholders(template: str) -> str:
    """The template with its fields replaced by placeholders; checks it has one of each, in order."""
    for name in ("{context}", "{question}"):
        if template.count(name) != 1:
            raise ValueError(
                f"prompt.template must contain {name} exactly once, found it "
                f"{template.count(name)} times: {template!r}"
            )
    if template.index("{question}") < template.index("{context}"):
        raise ValueError(f"prompt.template must put {{context}} before {{question}}: {template!r}")
    return template.replace("{context}", _CONTEXT).replace("{question}", _QUESTION)


def _split_prompt(prompt: str, source: str) -> tuple[str, str, str, str]:
    """``before``, ``between``, ``after`` and the trailing spaces of a prompt with placeholders."""
    if prompt.count(_CONTEXT) != 1 or prompt.count(_QUESTION) != 1:
        raise ValueError(f"the {source} must contain the user's message exactly once")
    before, rest = prompt.split(_CONTEXT)
    if _QUESTION not in rest:
        raise ValueError(f"the {source} moved the question before the context")
    between, after = rest.split(_QUESTION)
    trailing = _TRAILING_SPACES.search(after)
    spaces = trailing.group() if trailing else ""
    return before, between, after.removesuffix(spaces), spaces


def _plain_layout(user: str, tokenizer: TextTokenizer) -> PromptLayout:
    before, between, after, spaces = _split_prompt(user, "prompt template")
    ends_in_space = bool(spaces) or after[-1:].isspace()
    eos = (tokenizer.eos_id,)
    return PromptLayout(
        before=before,
        between=between,
        after=after,
        answer_prefix=spaces if ends_in_space else " ",
        end_text="",
        end_ids=eos,
        stop_ids=eos,
        add_special_tokens=True,
    )


class _ChatRenderer:
    """Renders the conversation of one row through transformers' ``apply_chat_template``."""

    def __init__(
        self, tokenizer: TextTokenizer, system: str | None, kwargs: Mapping[str, object]
    ) -> None:
        self.tokenizer, self.system, self.kwargs = tokenizer, system, dict(kwargs)

    def __call__(self, user: str, answer: str | None = None) -> str:
        """The rendered conversation: with ``answer``, through the assistant's turn; else up to the
        generation prompt."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": user})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        try:
            return self.tokenizer.transformers.apply_chat_template(
                messages,
                tokenize=False,
                add_generation_prompt=answer is None,
                **self.kwargs,
            )
        except TemplateError as err:
            key = "prompt.system" if self.system else "prompt.chat_template"
            raise ValueError(f"{key}: the tokenizer's chat template refused it: {err}") from None

    def prompt(self, user: str) -> str:
        """What the template writes before the assistant's message."""
        return self(user, _ANSWER).split(_ANSWER)[0]


def _end_of_turn(text: str, special: Mapping[str, int]) -> str:
    """``text`` (what a template writes after the assistant's message) up to its last special token;
    empty when it holds none."""
    ends = [text.rindex(token) + len(token) for token in special if token in text]
    return text[: max(ends)] if ends else ""


def _chat_layout(
    user: str,
    tokenizer: TextTokenizer,
    system: str | None,
    kwargs: Mapping[str, object],
) -> PromptLayout:
    template = tokenizer.chat_template
    if not template:
        raise ValueError(
            "prompt.chat_template is true but the tokenizer has no chat template "
            "(no chat_template in tokenizer_config.json, no chat_template.jinja)"
        )
    if "strftime_now" in template and "date_string" not in kwargs:
        log.warning(
            "the chat template reads today's date: shards made on another day differ; set "
            "prompt.chat_template_kwargs: {date_string: ...} to fix it"
        )
    renderer = _ChatRenderer(tokenizer, system, kwargs)
    generation_prompt = renderer(user)
    conversation = renderer(user, _ANSWER)
    if not conversation.startswith(generation_prompt) or conversation.count(_ANSWER) != 1:
        raise ValueError(
            f"the chat template of {tokenizer.transformers.name_or_path} renders the assistant's "
            "turn in another form than its generation prompt; koqa cannot tell where the answer "
            f"goes: generation prompt ends {generation_prompt[-80:]!r}, the conversation with an "
            f"answer ends {conversation[-120:]!r}"
        )
    prompt, after_answer = conversation.split(_ANSWER)
    before, between, after, spaces = _split_prompt(prompt, "rendered chat template")
    special = tokenizer.special_tokens()
    end_text = _end_of_turn(after_answer, special)
    end_tokens = [i for i in tokenizer.encode(end_text) if i in special.values()]
    return PromptLayout(
        before=before,
        between=between,
        after=after,
        answer_prefix=spaces,
        end_text=end_text,
        end_ids=() if end_text else (tokenizer.eos_id,),
        stop_ids=tuple(dict.fromkeys((*end_tokens, tokenizer.eos_id))),
        add_special_tokens=False,
        render=lambda context, question: renderer.prompt(
            user.replace(_CONTEXT, context).replace(_QUESTION, question)
        ),
    )


def build_layout(
    template: str,
    tokenizer: TextTokenizer,
    chat_template: bool = False,
    system: str | None = None,
    chat_template_kwargs: Mapping[str, object] | None = None,
) -> PromptLayout:
    """The layout for the config's ``prompt`` section and a tokenizer."""
    user = _with_placeholders(template)
    if chat_template:
        return _chat_layout(user, tokenizer, system, chat_template_kwargs or {})
    if system:
        raise ValueError("prompt.system is set but prompt.chat_template is false: no place for it")
    return _plain_layout(user, tokenizer)


def layout_from_config(prompt: Mapping[str, object], tokenizer: TextTokenizer) -> PromptLayout:
    """:func:`build_layout` for the config's ``prompt`` section."""
    return build_layout(
        prompt["template"],
        tokenizer,
        prompt["chat_template"],
        prompt["system"],
        prompt["chat_template_kwargs"],
    )
