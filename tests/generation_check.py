"""Compare koqa's batched generation with each prompt alone, at the level of logits.

``batched_vs_alone`` runs :func:`koqa.predict.generate.greedy_generate` (left-padded batches, KV
cache, shared prefixes) with a collector of every step's logits, then a full forward pass of each
prompt alone with the tokens it generated (no cache, no padding), and returns the generations and
the largest difference between the two sets of logits.
"""

from __future__ import annotations

import torch

from koqa.predict.generate import greedy_generate


@torch.inference_mode()
def alone_logits(model: torch.nn.Module, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """The next-token logits before each of ``tokens``, from one forward pass of the prompt alone
    and the tokens, no cache, no padding (causal: each step's logits are those of a forward pass
    of the tokens before it)."""
    sequence = torch.tensor([prompt + tokens[:-1]])
    return model(input_ids=sequence, use_cache=False).logits[0, -len(tokens) :]


def batched_vs_alone(
    model: torch.nn.Module, prompts: list[list[int]], **options: object
) -> tuple[list[list[int]], float]:
    """The generated tokens of ``greedy_generate(model, prompts, **options)`` and the largest
    absolute difference between any step's logits and those of the prompt alone."""
    seen: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(prompts))}

    def collect(indices: list[int], logits: torch.Tensor) -> None:
        for i, row_logits in zip(indices, logits, strict=True):
            seen[i].append(row_logits.float().clone())

    generated = greedy_generate(model, prompts, on_step=collect, **options)
    worst = 0.0
    for i, (prompt, tokens) in enumerate(zip(prompts, generated, strict=True)):
        batched = torch.stack(seen[i])
        assert batched.argmax(-1).tolist() == tokens, f"prompt {i}: tokens are not the argmax"
        worst = max(worst, float((batched - alone_logits(model, prompt, tokens)).abs().max()))
    return generated, worst
