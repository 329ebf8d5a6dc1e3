"""MLflow tracking into a local sqlite:/// store (offline): a train job's settings, per-step metrics
and summary, then its validation score, read back through MLflow's own client. Skipped without
mlflow (the optional `tracking` extra)."""

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from koqa.tracking import check_tracking, log_score, log_training

mlflow = pytest.importorskip("mlflow")

SETTINGS = {
    "name": "lora_r4_s1",
    "method": "lora",
    "r": 4,
    "lr": 0.0002,
    "target_modules": ["q_proj", "v_proj"],
}
SUMMARY = {"variant": "lora_r4_s1", "steps": 3, "best_step": 2, "best_val_f1": 0.25, "ok": True}
SCORE = {"f1": 0.5, "em": 0.25, "n": 4, "by_length": {"21+": {"f1": 0.1}}}


def _job_files(tmp_path: Path) -> tuple[Path, Path]:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(
        "step,epoch,loss,val_loss,val_f1,lr,grad_norm\n"
        "1,0,2.500000,,,1.000e-04,1.0000\n"
        "2,0,2.000000,2.100000,0.250000,2.000e-04,0.5000\n"
        "3,0,1.500000,2.200000,0.125000,1.000e-04,0.2500\n",
        encoding="utf-8",
    )
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(SUMMARY), encoding="utf-8")
    return metrics, summary


def test_a_train_job_and_its_score_are_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tracking = {"mlflow_uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "test"}
    run_id = log_training(tracking, SETTINGS, *_job_files(tmp_path))
    assert log_score(tracking, "lora_r4_s1", SCORE) == run_id

    client = mlflow.tracking.MlflowClient(tracking["mlflow_uri"])
    run = client.get_run(run_id)
    assert run.info.run_name == "lora_r4_s1" and run.info.status == "FINISHED"
    assert run.data.tags["koqa.method"] == "lora"
    assert run.data.params == {
        "name": "lora_r4_s1",
        "method": "lora",
        "r": "4",
        "lr": "0.0002",
        "target_modules": '["q_proj", "v_proj"]',
    }
    table = pd.read_csv(tmp_path / "metrics.csv")
    for key in ("loss", "val_loss", "val_f1", "lr", "grad_norm"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        expected = [
            (int(s), float(v))
            for s, v in zip(table["step"], table[key], strict=True)
            if pd.notna(v)
        ]
        assert history == expected, key
    metrics = run.data.metrics
    assert metrics["summary.best_val_f1"] == 0.25 and "summary.ok" not in metrics
    assert (run.data.tags["summary.ok"], run.data.tags["summary.variant"]) == ("True", "lora_r4_s1")
    assert (metrics["val_score.f1"], metrics["val_score.by_length.21plus.f1"]) == (0.5, 0.1)
    # nothing but the store in the working directory (no mlruns/ of artifacts)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "metrics.csv",
        "mlflow.db",
        "summary.json",
    ]


def test_a_variant_without_a_train_run_gets_its_own_and_a_rerun_a_new_one(tmp_path: Path) -> None:
    tracking = {"mlflow_uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "test"}
    first = log_training(tracking, SETTINGS, *_job_files(tmp_path))
    second = log_training(tracking, SETTINGS, *_job_files(tmp_path))
    assert first != second and log_score(tracking, "lora_r4_s1", SCORE) == second
    ensemble = log_score(tracking, "ensemble", SCORE)
    assert ensemble not in (first, second)
    run = mlflow.tracking.MlflowClient(tracking["mlflow_uri"]).get_run(ensemble)
    assert run.info.run_name == "ensemble" and run.data.metrics["val_score.f1"] == 0.5


def test_off_logs_nothing_and_a_broken_store_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _job_files(tmp_path)
    assert log_training({"mlflow_uri": None, "experiment": "test"}, SETTINGS, *files) is None
    assert not list(tmp_path.glob("*.db"))  # nothing made, not even an empty store
    (tmp_path / "broken.db").write_bytes(b"not a database")
    broken = {"mlflow_uri": f"sqlite:///{tmp_path}/broken.db", "experiment": "test"}
    with caplog.at_level(logging.WARNING, logger="koqa"):
        assert log_training(broken, SETTINGS, *files) is None
        assert log_score(broken, "lora_r4_s1", SCORE) is None
    assert caplog.text.count("MLflow tracking of") == 2


def test_tracking_without_mlflow_stops_before_any_job(monkeypatch: pytest.MonkeyPatch) -> None:
    check_tracking({"mlflow_uri": "sqlite:///m.db"})
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    check_tracking({"mlflow_uri": None})
    with pytest.raises(RuntimeError, match=r"pip install 'koqa\[tracking\]'"):
        check_tracking({"mlflow_uri": "sqlite:///m.db"})
