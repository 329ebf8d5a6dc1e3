"""The prompt layout: where the context, the question and the answer go in a training example.

The config's ``prompt.template`` (default ``맥락: {context}\\n질문: {question}\\n답변:``) is used
literally except for its ``{context}`` and ``{question}`` fields. With ``prompt.chat_template``, the
filled-in template becomes the user turn of the tokenizer's own chat template (``chat_template`` in
``tokenizer_config.json`` or ``chat_template.jinja``), rendered with Jinja as ``transformers``'
``apply_chat_template(..., add_generation_prompt=True)`` renders it, without importing transformers.
A chat template that reads the date gets none, so it falls back to its fixed default and shards stay
reproducible.

Either way the layout is ``[bos] prefix | context | suffix(question) | separator answer eos``: the
context sits between two fixed texts, so :mod:`koqa.data.shards` can cut only the context when a row is
too long.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from koqa.data.tokenizer import TextTokenizer

# Placeholders for the context and the question while a template is rendered (Unicode private use).
_CONTEXT, _QUESTION = "\ue010", "\ue011"


@dataclass(frozen=True)
class PromptLayout:
    """The fixed texts around the context and the question, and how the answer is attached."""

    prefix: str
    suffix: str  # contains the question placeholder
    add_bos: bool  # plain templates get the tokenizer's BOS; chat templates write their own
    answer_separator: str  # " " after a prompt that ends in a non-space ("답변:"), else ""

    def question_text(self, question: str) -> str:
        """The text after the context, with ``question`` filled in."""
        return self.suffix.replace(_QUESTION, question)

    def fingerprint(self) -> str:
        """A short hash of the layout, stored with the shards."""
        parts = (self.prefix, self.suffix, str(self.add_bos), self.answer_separator)
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


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def render_chat_template(
    source: str, messages: list[dict[str, str]], special_tokens: dict[str, str]
) -> str:
    """Render a Hugging Face chat template for ``messages``, ending with the assistant's turn."""
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.globals["raise_exception"] = _raise_exception
    return environment.from_string(source).render(
        messages=messages, add_generation_prompt=True, **special_tokens
    )


def _split(rendered: str, source: str) -> tuple[str, str]:
    if rendered.count(_CONTEXT) != 1 or rendered.count(_QUESTION) != 1:
        raise ValueError(f"the {source} must contain the user's message exactly once")
    prefix, suffix = rendered.split(_CONTEXT)
    if _QUESTION not in suffix:
        raise ValueError(f"the {source} moved the question before the context")
    return prefix, suffix


def build_layout(
    template: str, tokenizer: TextTokenizer, chat_template: bool = False, system: str | None = None
) -> PromptLayout:
    """The layout for the config's ``prompt`` section and a tokenizer."""
    user = _with_placeholders(template)
    if not chat_template:
        prefix, suffix = _split(user, "prompt template")
        add_bos = tokenizer.bos_id is not None
    else:
        if not tokenizer.chat_template:
            raise ValueError(
                "prompt.chat_template is true but the tokenizer has no chat template "
                "(no chat_template in tokenizer_config.json, no chat_template.jinja)"
            )
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        try:
            rendered = render_chat_template(
                tokenizer.chat_template, messages, tokenizer.special_tokens
            )
        except TemplateError as err:
            raise ValueError(f"the tokenizer's chat template refused the prompt: {err}") from None
        prefix, suffix = _split(rendered, "rendered chat template")
        add_bos = False
    separator = "" if suffix[-1:].isspace() else " "
    return PromptLayout(prefix, suffix, add_bos, separator)
