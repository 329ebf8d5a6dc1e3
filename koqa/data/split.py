"""Deterministic train/validation split grouped by context: one article never lands in both."""

from __future__ import annotations

import hashlib

import pandas as pd


def _group_key(context: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\0{context}".encode()).hexdigest()


def split_by_context(
    frame: pd.DataFrame, validation_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (train, validation), whole contexts at a time.

    Contexts are ordered by a seeded hash, so the split depends only on the data and the seed, not on
    row order; the first contexts in that order go to validation until it holds
    ``validation_fraction`` of the rows (at least one context, and at least one left for training).
    """
    contexts = frame["context"].unique()
    if len(contexts) < 2:
        raise ValueError("need at least two distinct contexts to split train and validation")
    order = sorted(contexts, key=lambda c: _group_key(c, seed))
    sizes = frame["context"].value_counts()
    target = validation_fraction * len(frame)
    chosen, count = set(), 0
    for context in order[:-1]:
        if chosen and count + sizes[context] / 2 > target:
            break
        chosen.add(context)
        count += sizes[context]
    in_validation = frame["context"].isin(chosen)
    return frame[~in_validation].reset_index(drop=True), frame[in_validation].reset_index(drop=True)
