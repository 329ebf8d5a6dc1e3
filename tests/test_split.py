"""The grouped split: no context on both sides, deterministic, about the requested size."""

import pandas as pd
import pytest

from koqa.data.split import split_by_context


def _frame(n_contexts: int = 40, per_context: int = 3) -> pd.DataFrame:
    rows = [
        {"id": f"r{c}_{q}", "context": f"기사 {c}", "question": f"질문 {q}"}
        for c in range(n_contexts)
        for q in range(per_context)
    ]
    return pd.DataFrame(rows)


def test_no_context_in_both_splits_and_no_row_lost() -> None:
    frame = _frame()
    train, validation = split_by_context(frame, 0.2, seed=1)
    assert set(train["context"]).isdisjoint(validation["context"])
    assert sorted([*train["id"], *validation["id"]]) == sorted(frame["id"])
    assert len(validation) == pytest.approx(0.2 * len(frame), abs=3)


def test_deterministic_and_independent_of_row_order() -> None:
    frame = _frame()
    _, first = split_by_context(frame, 0.2, seed=1)
    _, shuffled = split_by_context(frame.sample(frac=1, random_state=3), 0.2, seed=1)
    _, other_seed = split_by_context(frame, 0.2, seed=2)
    assert set(first["id"]) == set(shuffled["id"])
    assert set(first["id"]) != set(other_seed["id"])


def test_needs_two_contexts() -> None:
    with pytest.raises(ValueError, match="two distinct contexts"):
        split_by_context(_frame(n_contexts=1), 0.2, seed=1)
