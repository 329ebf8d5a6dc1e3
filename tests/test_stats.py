"""Dataset statistics: the numbers are right, and every plot is written as a PNG."""

from pathlib import Path

import pandas as pd
import pytest

from koqa.data import stats

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _tables() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    train = pd.DataFrame(
        {
            "context": [
                "매출은 3.5% 늘었다. 이익은 줄었다.",
                "매출은 3.5% 늘었다. 이익은 줄었다.",
                "“타임”지가 꼽았다",
            ],
            "question": ["얼마?", "무엇이 줄었나?", "누가?"],
            "answer": ["3.5%", "이익", "타임 지"],
            "target": ["3.5%", "이익", "타임”지"],
            "align_method": ["exact", "exact", "fuzzy"],
        }
    )
    test = pd.DataFrame({"context": ["기사 본문이다."], "question": ["무엇?"]})
    tokens = {
        "train": pd.DataFrame(
            {
                "n_tokens": [10, 20, 30],
                "untruncated_tokens": [10, 20, 45],
                "context_truncated": [False, False, True],
            }
        ),
        "test": pd.DataFrame(
            {"n_tokens": [12], "untruncated_tokens": [12], "context_truncated": [False]}
        ),
    }
    return {"train": train, "test": test}, tokens


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("매출은 3.5% 늘었다. 이익은 줄었다.", 2),
        ("무엇인가? 그렇다! 끝", 3),
        ("", 0),
        ("제목 없음", 1),
    ],
)
def test_sentence_count(text: str, count: int) -> None:
    assert stats.sentence_count(text) == count


def test_summary_has_mean_max_and_percentiles() -> None:
    result = stats.summary(pd.Series(range(1, 101)))
    assert result == {
        "mean": 50.5,
        "max": 100.0,
        "p50": 50.5,
        "p90": 90.1,
        "p95": 95.05,
        "p99": 99.01,
    }
    assert stats.summary(pd.Series([], dtype=float)) == {}


def test_dataset_statistics() -> None:
    tables, tokens = _tables()
    dropped = {
        "train": pd.DataFrame({"id": ["a", "b"], "reason": ["question_too_long"] * 2}),
        "test": pd.DataFrame({"id": [], "reason": []}),
    }
    result = stats.dataset_statistics(tables, tokens, max_seq_len=32, dropped=dropped)
    train = result["splits"]["train"]
    assert (train["rows"], train["contexts"]) == (3, 2)
    assert train["tokens"]["truncated_rows"] == 1
    assert train["tokens"]["dropped_rows"] == 2
    assert train["tokens"]["dropped_by_reason"] == {"question_too_long": 2}
    assert result["splits"]["test"]["tokens"]["dropped_rows"] == 0
    assert train["tokens"]["untruncated_tokens"]["max"] == 45
    assert train["sentences_per_context"]["max"] == 2
    assert train["answer_words"] == {1: 2, 2: 1}
    assert train["answer_in_context"]["answer_substring"] == pytest.approx(2 / 3, abs=1e-4)
    assert train["answer_in_context"]["align_methods"]["fuzzy"] == 1
    assert "answer_words" not in result["splits"]["test"]
    special = result["special_characters"]
    top = {entry["char"]: entry["count"] for entry in special["top"]}
    assert top["."] == 5 and top["%"] == 2 and top["”"] == 1
    assert special["by_class"]["quotes"] == 2  # “ ” of the context (targets are not counted)


def test_plots_are_written(tmp_path: Path) -> None:
    tables, tokens = _tables()
    result = stats.dataset_statistics(tables, tokens, max_seq_len=32)
    paths = {
        name: tmp_path / f"{name}.png"
        for name in ("tokens", "words", "sentences", "chars", "align")
    }
    stats.plot_token_lengths(tokens, 32, paths["tokens"])
    stats.plot_answer_words(tables, paths["words"])
    stats.plot_sentences(tables, paths["sentences"])
    stats.plot_special_characters(result["special_characters"], paths["chars"])
    stats.plot_alignment(tables, paths["align"])
    for path in paths.values():
        assert path.read_bytes().startswith(PNG_SIGNATURE), path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
