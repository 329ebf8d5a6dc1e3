"""The grouped split: no context on both sides, deterministic, about the requested size; with several
sources, validation from one of them, no validation context trained on, weighted sources repeated."""

import pandas as pd
import pytest

from koqa.data.split import split_sources


def _frame(n_contexts: int = 40, per_context: int = 3, source: str = "contest") -> pd.DataFrame:
    rows = [
        {
            "id": f"{source}{c}_{q}",
            "context": f"기사 {c}",
            "question": f"질문 {q}",
            "source": source,
        }
        for c in range(n_contexts)
        for q in range(per_context)
    ]
    return pd.DataFrame(rows)


def test_no_context_in_both_splits_and_no_row_lost() -> None:
    frame = _frame()
    train, validation, _ = split_sources(frame, 0.2, seed=1, validation_source="contest")
    assert set(train["context"]).isdisjoint(validation["context"])
    assert sorted([*train["id"], *validation["id"]]) == sorted(frame["id"])
    assert len(validation) == pytest.approx(0.2 * len(frame), abs=3)


def test_deterministic_and_independent_of_row_order() -> None:
    frame = _frame()

    def validation_ids(frame: pd.DataFrame, seed: int) -> set[str]:
        return set(split_sources(frame, 0.2, seed, "contest")[1]["id"])

    first = validation_ids(frame, seed=1)
    assert first == validation_ids(frame.sample(frac=1, random_state=3), seed=1)
    assert first != validation_ids(frame, seed=2)


def test_needs_two_contexts() -> None:
    with pytest.raises(ValueError, match="two distinct contexts"):
        split_sources(_frame(n_contexts=1), 0.2, seed=1, validation_source="contest")


def _two_sources() -> pd.DataFrame:
    """40 contest contexts and 30 KorQuAD ones, 5 of which are contest contexts too."""
    korquad = _frame(n_contexts=30, per_context=2, source="korquad")
    korquad["context"] = [f"기사 {35 + int(i[7:].split('_')[0])}" for i in korquad["id"]]
    return pd.concat([_frame(), korquad], ignore_index=True)


def test_validation_comes_from_the_chosen_source_and_is_never_trained_on() -> None:
    frame = _two_sources()
    train, validation, report = split_sources(frame, 0.2, seed=1, validation_source="contest")
    assert set(validation["source"]) == {"contest"}
    assert len(validation) == pytest.approx(0.2 * 120, abs=3)
    assert set(train["context"]).isdisjoint(validation["context"])
    left_out = frame[(frame["source"] == "korquad") & frame["context"].isin(validation["context"])]
    assert report["korquad"]["left_out"] == len(left_out)
    for name, counts in report.items():
        rows = counts["train_rows"] + counts["validation_rows"] + counts["left_out"]
        assert rows == counts["rows"] == (frame["source"] == name).sum()
    _, other_validation, _ = split_sources(frame, 0.2, seed=1, validation_source="korquad")
    assert set(other_validation["source"]) == {"korquad"}


def test_a_weight_repeats_each_training_row_of_its_source() -> None:
    frame = _two_sources()
    plain, validation, _ = split_sources(frame, 0.2, 1, "contest")
    weighted, same_validation, report = split_sources(frame, 0.2, 1, "contest", {"korquad": 3})
    pd.testing.assert_frame_equal(validation, same_validation)
    counts = weighted["id"].value_counts()
    for row in plain.itertuples():
        assert counts[row.id] == (3 if row.source == "korquad" else 1)
    assert report["korquad"]["train_rows_weighted"] == 3 * report["korquad"]["train_rows"]


def test_a_validation_source_without_rows_is_an_error() -> None:
    with pytest.raises(ValueError, match="'korquad' has no rows after cleaning"):
        split_sources(_frame(), 0.2, seed=1, validation_source="korquad")
