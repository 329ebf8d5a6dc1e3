"""Deterministic train/validation split grouped by context: one article never lands in both.

Every row has a ``source`` (see :mod:`koqa.data.sources`). Validation rows come from one source
only; rows of the other sources whose context was drawn for validation are left out of training,
so no validation context is ever trained on. A source's ``weight`` repeats each of its training rows
that many times (oversampling).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import pandas as pd


def _group_key(context: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\0{context}".encode()).hexdigest()


def _validation_contexts(frame: pd.DataFrame, validation_fraction: float, seed: int) -> set[str]:
    """Contexts in seeded-hash order until they hold ``validation_fraction`` of the rows (at least
    one context, and at least one left for training)."""
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
    return chosen


def split_sources(
    frame: pd.DataFrame,
    validation_fraction: float,
    seed: int,
    validation_source: str,
    weights: Mapping[str, int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Split rows (with their ``source``) into (train, validation, report), whole contexts at a time.

    Contexts of ``validation_source`` are ordered by a seeded hash, so the split depends only on the
    data and the seed, not on row order; the first contexts in that order go to validation until it
    holds ``validation_fraction`` of that source's rows (at least one context, and at least one left
    for training). Training takes every row whose context is not among them, each row of a source
    with a ``weights`` entry repeated that many times. The report counts, per source, its rows, its
    training rows before and after weighting, its validation rows and the rows left out because a
    validation row of ``validation_source`` has their context.
    """
    if validation_source not in set(frame["source"]):
        raise ValueError(f"validation source {validation_source!r} has no rows after cleaning")
    from_validation_source = frame["source"] == validation_source
    held_out = frame["context"].isin(
        _validation_contexts(frame[from_validation_source], validation_fraction, seed)
    )
    validation = frame[held_out & from_validation_source]
    train = frame[~held_out]
    repeats = train["source"].map(weights or {}).fillna(1).astype(int)
    weighted = train.loc[train.index.repeat(repeats)]
    tables = {
        "rows": frame,
        "train_rows": train,
        "train_rows_weighted": weighted,
        "validation_rows": validation,
        "left_out": frame[held_out & ~from_validation_source],
    }
    report = {
        name: {key: int((table["source"] == name).sum()) for key, table in tables.items()}
        for name in frame["source"].unique()
    }
    return weighted.reset_index(drop=True), validation.reset_index(drop=True), report
