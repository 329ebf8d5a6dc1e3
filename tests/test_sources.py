"""Several training files: data.train's entries, their ids across files, a capped source's seeded
sample and the cleaning report per source."""

import pandas as pd
import pytest
from input_files import csv_text, write_file
from test_clean import OPTIONS

from koqa.data.clean import clean_table
from koqa.data.ingest import InputError, read_records
from koqa.data.sources import (
    Source,
    SourceError,
    combine_sources,
    part_sources,
    source_settings,
    training_sources,
    validation_source,
)

DATA = {"format": "auto", "encoding": "auto", "test": "open/test.csv"}


def test_a_plain_path_is_one_source_named_after_its_file() -> None:
    (source,) = training_sources({**DATA, "train": "open/train.csv"})
    assert source == Source("train", "open/train.csv", "auto", "auto", cap=None, weight=1)
    (test,) = part_sources({**DATA, "train": "open/train.csv"}, "test")
    assert (test.name, test.path) == ("test", "open/test.csv")


def test_entries_take_their_own_settings_or_the_data_defaults() -> None:
    data = {
        **DATA,
        "train": [
            "open/train.csv",
            {"path": "k/KorQuAD_v1.0_train.json", "format": "squad", "cap": 100, "weight": 2},
            {"path": "x/train.csv", "name": "extra", "encoding": "cp949"},
        ],
    }
    sources = training_sources(data)
    assert [s.name for s in sources] == ["train", "KorQuAD_v1.0_train", "extra"]
    assert [(s.format, s.encoding) for s in sources] == [
        ("auto", "auto"),
        ("squad", "auto"),
        ("auto", "cp949"),
    ]
    assert source_settings(sources, "cap") == {"KorQuAD_v1.0_train": 100}
    assert source_settings(sources, "weight") == {"KorQuAD_v1.0_train": 2}


def test_two_entries_with_one_name_are_refused() -> None:
    with pytest.raises(SourceError, match=r"data\.train\[1\]: source name 'train' is also .*\[0\]"):
        training_sources({**DATA, "train": ["a/train.csv", "b/train.csv"]})


def test_the_validation_source_must_be_a_training_source() -> None:
    data = {**DATA, "train": ["open/train.csv", {"path": "k.json", "name": "korquad"}]}
    assert validation_source({"data": data, "split": {"validation_source": None}}) == "train"
    assert validation_source({"data": data, "split": {"validation_source": "korquad"}}) == "korquad"
    with pytest.raises(SourceError, match=r"split\.validation_source: 'kq' is not the name"):
        validation_source({"data": data, "split": {"validation_source": "kq"}})


def _write(tmp_path, name: str, ids: list[str], city: str = "서울") -> str:
    """A training CSV whose every row asks about one context that names ``city``."""
    context = f"그 회사의 본사는 {city}에 있다."
    rows = [{"id": i, "context": context, "question": f"{i}?", "answer": city} for i in ids]
    return str(write_file(tmp_path / name, csv_text(rows)))


def _ingest(*paths: str) -> list[tuple[Source, pd.DataFrame]]:
    return [
        (Source(f"s{n}", path, "auto", "auto"), read_records(path, required=("answer",)))
        for n, path in enumerate(paths)
    ]


def test_sources_combine_with_their_names_and_ids_may_not_repeat(tmp_path) -> None:
    first = _write(tmp_path, "a.csv", ["A1", "A2"])
    second = _write(tmp_path, "b.csv", ["B1", "A2"])
    combined = combine_sources(_ingest(first, _write(tmp_path, "c.csv", ["C1"])))
    assert combined["source"].tolist() == ["s0", "s0", "s1"]
    with pytest.raises(
        InputError, match=r"b\.csv: row 2, field 'id': 'A2' is also the id of .*a\.csv row 2"
    ):
        combine_sources(_ingest(first, second))


def _clean_two_sources(tmp_path, caps: dict | None = None, seed: int = 0):
    contest = _write(tmp_path, "contest.csv", [f"T{i}" for i in range(6)])
    # one korquad row repeats a contest row's context and question: merged as a duplicate
    korquad = _write(tmp_path, "korquad.csv", [f"K{i}" for i in range(20)], "대구")
    frame = combine_sources(_ingest(contest, korquad))
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "id": "K_dup", "source": "s1"}
    return frame, clean_table(frame, OPTIONS, labelled=True, caps=caps, seed=seed)


def test_a_capped_source_keeps_a_seeded_sample_and_the_report_counts_each_source(
    tmp_path,
) -> None:
    frame, result = _clean_two_sources(tmp_path, caps={"s1": 5}, seed=3)
    kept = result.kept
    assert (kept["source"] == "s1").sum() == 5 and (kept["source"] == "s0").sum() == 6
    assert result.dropped.groupby("reason")["source"].agg(set).to_dict() == {
        "duplicate": {"s1"},
        "over_cap": {"s1"},
    }
    report = result.report["sources"]
    assert report["s1"] == {
        "rows_in": 21,
        "rows_kept": 5,
        "rows_dropped": 16,
        "dropped_by_reason": {"duplicate": 1, "over_cap": 15},
    }
    assert report["s0"]["rows_kept"] == report["s0"]["rows_in"] == 6
    assert result.report["rows_in"] == result.report["rows_kept"] + result.report["rows_dropped"]
    assert result.report["align_methods"]["exact"] == len(kept)

    shuffled = clean_table(
        frame.sample(frac=1, random_state=1), OPTIONS, True, caps={"s1": 5}, seed=3
    ).kept
    other_seed = clean_table(frame, OPTIONS, True, caps={"s1": 5}, seed=4).kept
    assert set(shuffled["id"]) == set(kept["id"])
    assert set(other_seed["id"]) != set(kept["id"])


def test_without_caps_every_row_is_kept(tmp_path) -> None:
    _, result = _clean_two_sources(tmp_path)
    assert result.report["sources"]["s1"]["rows_kept"] == 20
    assert "over_cap" not in set(result.dropped["reason"])
