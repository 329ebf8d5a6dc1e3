"""Checks on tokenized rows shared by the shard and tokenization tests."""

from transformers import PreTrainedTokenizerFast


def cut_at_tokens(tokenizer: PreTrainedTokenizerFast, context: str, start: int, end: int) -> bool:
    """[start, end) runs from a token's start to a token's end of the context's own encoding,
    whitespace at the edges dropped."""
    spans = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    starts = {s for s, _ in spans["offset_mapping"]}
    ends = {e for _, e in spans["offset_mapping"]}
    kept = context[start:end]
    return (
        kept == kept.strip()
        and any(s <= start and not context[s:start].strip() for s in starts)
        and any(e >= end and not context[end:e].strip() for e in ends)
    )
