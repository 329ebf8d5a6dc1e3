"""The submission: ordered like the sample, never empty, never a newline, or a clear failure."""

import pandas as pd
import pytest

from koqa.submission import SubmissionError, build_submission, choose_variant, leaderboard

IDS = ["TEST_0000", "TEST_0001", "TEST_0002"]


def test_orders_like_the_sample_and_fills_empty_answers() -> None:
    predictions = pd.DataFrame({"id": IDS[::-1], "answer": ["셋", "", "하나\n둘"]})
    submission = build_submission(predictions, IDS, fallback="-")
    assert submission["id"].tolist() == IDS
    assert submission["answer"].tolist() == ["하나 둘", "-", "셋"]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (IDS[:2], r"missing \['TEST_0002'\]"),
        ([*IDS, "TEST_9999"], r"unexpected \['TEST_9999'\]"),
        ([*IDS, "TEST_0000"], "repeat ids"),
    ],
)
def test_wrong_ids_fail_with_a_clear_message(ids: list[str], message: str) -> None:
    predictions = pd.DataFrame({"id": ids, "answer": ["x"] * len(ids)})
    with pytest.raises(SubmissionError, match=message):
        build_submission(predictions, IDS, fallback="-")


def test_leaderboard_sorted_and_best_chosen() -> None:
    board = leaderboard(
        [
            {"variant": "zeroshot", "method": "zeroshot", "f1": 0.1, "em": 0.0, "n": 3},
            {"variant": "lora", "method": "lora", "f1": 0.7, "em": 0.3, "n": 3},
            {"variant": "full", "method": "full", "f1": 0.5, "em": 0.2, "n": 3},
        ]
    )
    assert board["variant"].tolist() == ["lora", "full", "zeroshot"]
    assert choose_variant(board, "best") == "lora"
    assert choose_variant(board, "full") == "full"
    with pytest.raises(SubmissionError, match="not on the leaderboard"):
        choose_variant(board, "dora")
