"""Optional MLflow tracking (``tracking.mlflow_uri``; off when null).

Each train job, once its outputs are written, logs one MLflow run named after the variant (tags
``koqa.variant``, ``koqa.method``) in the experiment ``tracking.experiment``: the variant's settings
as params, every row of its ``metrics.csv`` as per-step metrics (loss, val_loss, val_f1, lr,
grad_norm), and its summary: numbers as ``summary.*`` metrics, the rest (device, booleans) as
``summary.*`` tags. Nothing is logged as an artifact: a ``sqlite:///`` store would put artifacts in
an ``mlruns/`` folder of the job's working directory.
The score rule adds the variant's validation scores (``val_score.f1``, ``val_score.em``, and per
answer length ``val_score.by_length.1-3.f1`` ...) to the newest run of that variant, or to a run of its own (the ensemble trains
nothing). The logging reads the files the jobs wrote, so a resumed job logs its whole history.

Tracking never fails a job: a store that cannot be reached is a warning in the job's log, and the
job's outputs stand; a missing mlflow stops the workflow before any job (:func:`check_tracking`).
mlflow is an optional dependency (``pip install 'koqa[tracking]'``: mlflow-skinny, with SQLAlchemy
and Alembic for a ``sqlite:///`` store, which works offline), imported only when tracking is on.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger("koqa")
VARIANT_TAG, METHOD_TAG = "koqa.variant", "koqa.method"
# metrics.csv columns logged per step (step and epoch are the x axis)
STEP_METRICS = ("loss", "val_loss", "val_f1", "lr", "grad_norm")
# MLflow takes at most this many params, and metrics, per call
PARAMS_PER_CALL, METRICS_PER_CALL = 100, 1000
INSTALL = "pip install 'koqa[tracking]'"


def check_tracking(tracking: Mapping[str, Any]) -> None:
    """Fail before any job starts when tracking is on and mlflow is not installed."""
    if tracking.get("mlflow_uri") and importlib.util.find_spec("mlflow") is None:
        raise RuntimeError(
            f"tracking.mlflow_uri is set but mlflow is not installed: {INSTALL} "
            "(or set tracking.mlflow_uri: null)"
        )


def _client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri`` (mlflow's own telemetry off)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


@contextmanager
def _never_failing(what: str) -> Iterator[None]:
    """Log a tracking failure as a warning instead of failing the job."""
    try:
        yield
    except Exception as error:  # any store error: the job's outputs stand
        log.warning("MLflow tracking of %s failed, the job goes on: %s", what, error)


def _params(settings: Mapping[str, Any]) -> dict[str, str]:
    """Settings as MLflow params: strings, lists and mappings as JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for key, value in sorted(settings.items())
    }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _flat(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The values of a (nested) record by dotted key, as MLflow allows one (``21+`` -> ``21plus``)."""
    flat = {}
    for key, value in record.items():
        name = re.sub(r"[^\w./ -]", "_", f"{prefix}{key}".replace("+", "plus"))
        flat |= _flat(value, f"{name}.") if isinstance(value, Mapping) else {name: value}
    return flat


def _numbers(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) record, by dotted key (:func:`_flat`)."""
    return {k: float(v) for k, v in _flat(record, prefix).items() if _is_number(v)}


def _step_metrics(metrics_csv: Path) -> list[tuple[str, float, int]]:
    """(key, value, step) of every logged value of ``metrics_csv``."""
    table = pd.read_csv(metrics_csv)
    return [
        (key, float(value), int(step))
        for key in STEP_METRICS
        if key in table
        for step, value in zip(table["step"], table[key], strict=True)
        if pd.notna(value)
    ]


def log_training(
    tracking: Mapping[str, Any], settings: Mapping[str, Any], metrics_csv: Path, summary_json: Path
) -> str | None:
    """Log a finished train job as a new MLflow run; return its id (None when tracking is off or
    failed)."""
    if not tracking.get("mlflow_uri"):
        return None
    with _never_failing(f"variant {settings['name']}"):
        from mlflow.entities import Metric, Param, RunTag

        client = _client(tracking["mlflow_uri"])
        run = client.create_run(
            _experiment_id(client, tracking["experiment"]),
            run_name=settings["name"],
            tags={VARIANT_TAG: settings["name"], METHOD_TAG: settings["method"]},
        )
        run_id = run.info.run_id
        summary = json.loads(Path(summary_json).read_text(encoding="utf-8"))
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v, step in _step_metrics(metrics_csv)]
        metrics += [Metric(k, v, now, 0) for k, v in _numbers(summary, "summary.").items()]
        params = [Param(k, v) for k, v in _params(settings).items()]
        tags = [
            RunTag(k, str(v)) for k, v in _flat(summary, "summary.").items() if not _is_number(v)
        ]
        client.log_batch(run_id, tags=tags)
        for start in range(0, len(params), PARAMS_PER_CALL):
            client.log_batch(run_id, params=params[start : start + PARAMS_PER_CALL])
        for start in range(0, len(metrics), METRICS_PER_CALL):
            client.log_batch(run_id, metrics=metrics[start : start + METRICS_PER_CALL])
        client.set_terminated(run_id)
        return run_id
    return None


def log_score(tracking: Mapping[str, Any], variant: str, score: Mapping[str, Any]) -> str | None:
    """Log a variant's validation score to its newest run (a new run if it has none); return the
    run's id (None when tracking is off or failed)."""
    if not tracking.get("mlflow_uri"):
        return None
    with _never_failing(f"the score of {variant}"):
        client = _client(tracking["mlflow_uri"])
        experiment = _experiment_id(client, tracking["experiment"])
        runs = client.search_runs(
            [experiment],
            filter_string=f"tags.`{VARIANT_TAG}` = '{variant}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if runs:
            run_id = runs[0].info.run_id
        else:
            run_id = client.create_run(
                experiment, run_name=variant, tags={VARIANT_TAG: variant}
            ).info.run_id
            client.set_terminated(run_id)
        for key, value in _numbers(score, "val_score.").items():
            client.log_metric(run_id, key, value)
        return run_id
    return None
