"""bench/quality.py, the F1-lever harness, without running the pipeline: the held-out split it feeds
the pipeline, the levers' overlays against the config schema, and the held-out scoring it reads back
from a scratch directory. Cost: under 5 s."""

import importlib.util
import os
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml

from koqa.config import load_config
from koqa.data.ingest import read_records
from koqa.files import write_csv, write_json
from koqa.predict.ensemble import ensemble_members
from koqa.score.metric import char_f1
from koqa.train.variants import check_all

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources/sample/train.csv"
SCHEMA = yaml.safe_load((REPO / "schemas/config.schema.yaml").read_text(encoding="utf-8"))
_spec = importlib.util.spec_from_file_location("bench_quality", REPO / "bench/quality.py")
quality = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = quality  # dataclasses look their module up there
_spec.loader.exec_module(quality)


def test_heldout_split_keeps_whole_contexts_apart_and_loses_no_row(tmp_path: Path) -> None:
    counts = quality.split_heldout(SAMPLE, tmp_path, fraction=0.1, seed=13)
    rows = read_records(SAMPLE, required=("answer",))
    train = read_records(tmp_path / "train.json", required=("answer",))
    test = read_records(tmp_path / "test.csv")
    gold = pd.read_csv(tmp_path / "gold.csv", keep_default_na=False, dtype=str)
    sample = pd.read_csv(tmp_path / "sample_submission.csv", keep_default_na=False, dtype=str)
    assert counts == {"train_rows": len(train), "test_rows": len(test), "test_contexts": 7}
    assert not set(train["context"]) & set(test["context"])
    assert sorted([*train["id"], *test["id"]]) == sorted(rows["id"])
    assert list(gold["id"]) == list(sample["id"]) == list(test["id"])
    by_id = rows.set_index("id")
    assert list(gold["answer"]) == list(by_id.loc[gold["id"], "answer"])
    assert list(train["answer"]) == list(by_id.loc[train["id"], "answer"])
    assert set(sample["answer"]) == {quality.PLACEHOLDER}
    again = tmp_path / "again"
    quality.split_heldout(SAMPLE, again, fraction=0.1, seed=13)
    assert (again / "gold.csv").read_bytes() == (tmp_path / "gold.csv").read_bytes()


def test_a_repeated_split_leaves_the_files_untouched(tmp_path: Path) -> None:
    """The harness splits again on every run: rewritten files would make Snakemake retrain all."""
    quality.split_heldout(SAMPLE, tmp_path, fraction=0.1, seed=13)
    files = sorted(tmp_path.iterdir())
    for path in files:
        os.utime(path, ns=(1, 1))
    quality.split_heldout(SAMPLE, tmp_path, fraction=0.1, seed=13)
    assert [path.stat().st_mtime_ns for path in files] == [1] * len(files)
    quality.split_heldout(SAMPLE, tmp_path, fraction=0.2, seed=13)
    assert all(path.stat().st_mtime_ns > 1 for path in files)


def test_heldout_train_file_keeps_answer_start(tmp_path: Path) -> None:
    squad = tmp_path / "squad.json"
    context = "서울은 한국의 수도이다. 서울에는 한강이 흐른다."
    qas = [
        {"id": f"q{i}", "question": f"질문 {i}", "answers": [{"text": "서울", "answer_start": s}]}
        for i, s in enumerate((0, 14))
    ]
    paragraphs = [
        {"context": context, "qas": qas},
        {
            "context": "다른 문단",
            "qas": [
                {"id": "q9", "question": "무엇?", "answers": [{"text": "문단", "answer_start": 3}]}
            ],
        },
    ]
    write_json({"data": [{"title": "t", "paragraphs": paragraphs}]}, squad)
    quality.split_heldout(squad, tmp_path / "out", fraction=0.5, seed=0)
    train = read_records(tmp_path / "out/train.json", required=("answer",))
    original = read_records(squad).set_index("id")
    assert list(train["answer_start"]) == list(original.loc[train["id"], "answer_start"])
    assert len(train) in (1, 2)


@pytest.mark.parametrize("setup", sorted(quality.SETUPS))
@pytest.mark.parametrize("lever", quality.LEVERS, ids=lambda lever: lever.name)
def test_every_lever_is_a_valid_config_for_every_setup(
    tmp_path: Path, setup: str, lever: "quality.Lever"
) -> None:
    configfiles = list(quality.SETUPS[setup].configfiles)
    variants = list(load_config(REPO / "config.yaml", *configfiles)["variants"])
    overlay = tmp_path / "lever.yaml"
    overlay.write_text(yaml.safe_dump(lever.overlay(variants)), encoding="utf-8")
    config = load_config(REPO / "config.yaml", *configfiles, overlay)
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    check_all(config)
    ensemble_members(config)


def test_collect_scores_heldout_answers_against_the_gold_file(tmp_path: Path) -> None:
    write_csv(pd.DataFrame({"id": ["a", "b"], "answer": ["서울", "2015년 8월"]}),
              tmp_path / quality.HELDOUT / "gold.csv")  # fmt: skip
    board = pd.DataFrame({"variant": ["full", "ensemble"], "f1": [0.5, 0.25]})
    write_csv(board, tmp_path / "results/leaderboard.tsv", sep="\t")
    answers = {"full": ["서울", "2015년"], "ensemble": ["부산", ""]}
    for variant, validation_f1 in zip(board["variant"], board["f1"], strict=True):
        score = {"variant": variant, "f1": validation_f1, "n": 10}
        write_json(score, tmp_path / f"results/scores/{variant}.json")
        predictions = pd.DataFrame({"id": ["a", "b"], "answer": answers[variant]})
        write_csv(predictions, tmp_path / f"results/predictions/{variant}/test.csv")
    write_json({"used": True}, tmp_path / "results/predictions/full/snap.json")
    records = {r["variant"]: r for r in quality.collect(tmp_path)}
    expected = (char_f1("서울", "서울") + char_f1("2015년", "2015년 8월")) / 2
    assert records["full"]["test_f1"] == pytest.approx(expected, abs=1e-4)
    assert records["ensemble"]["test_f1"] == 0.0
    assert records["full"]["validation_f1"] == 0.5 and records["full"]["test_n"] == 2
    assert records["full"]["postprocessing"] == {"used": True}
    assert records["ensemble"]["postprocessing"] is None
    table = quality.markdown([{"setup": "s", "lever": "baseline"} | r for r in records.values()])
    assert f"0.500 / {expected:.3f}" in table


def test_cloze_questions_ask_for_a_noun_or_a_whole_date_at_its_place() -> None:
    import random

    from synthetic_qa import DATE, cloze_questions

    context = "머리말. 1989년 2월 15일 서울 농민 시위를 주도한 혐의로 임종석이 지명수배되었다."
    rows = cloze_questions(context, per_sentence=10, rng=random.Random(0))
    answers = [row["answer"] for row in rows]
    # every word of the date reaches the whole date, once; particles are left out; words with
    # neither a particle nor a digit (서울, 주도한) and the short sentence are not asked about
    assert sorted(answers) == sorted(["1989년 2월 15일", "시위", "혐의", "임종석"])
    for row in rows:
        assert context[row["answer_start"] :].startswith(row["answer"])
        assert row["answer"] not in row["question"]
        assert row["question"].endswith("?")
    date = next(row for row in rows if row["answer"].startswith("1989"))
    assert DATE.search(date["answer"]) and date["question"].split()[0] == "서울"


def test_synthetic_questions_train_beside_the_real_ones_and_never_see_held_out_contexts(
    tmp_path: Path,
) -> None:
    setup = quality.Setup(SAMPLE, synthetic=2)
    overlay = yaml.safe_load(quality.prepare(tmp_path, setup).read_text(encoding="utf-8"))
    synthetic = read_records(tmp_path / quality.HELDOUT / "synthetic.json", required=("answer",))
    train = read_records(tmp_path / quality.HELDOUT / "train.json", required=("answer",))
    test = read_records(tmp_path / quality.HELDOUT / "test.csv")
    assert len(synthetic) > len(train)
    assert set(synthetic["context"]) <= set(train["context"])
    assert not set(synthetic["context"]) & set(test["context"])
    for row in synthetic.itertuples():
        assert row.context[int(row.answer_start) :].startswith(row.answer)
    configfiles = [*quality.SETUPS["korquad"].configfiles, REPO / "bench/quality/synthetic.yaml"]
    config = load_config(
        REPO / "config.yaml", *configfiles, tmp_path / quality.HELDOUT / "data.yaml"
    )
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    assert [s["name"] for s in overlay["data"]["train"][1:]] == [quality.SYNTHETIC]
    assert overlay["split"]["validation_source"] == "train"
