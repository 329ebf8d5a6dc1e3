"""What reruns after prediction: only the settings that change the generated text rerun it, and new
test generations rerun no validation answers or scores. Dry runs of the shared end-to-end run, whose
config and files are restored afterwards."""

import os
from pathlib import Path

import pytest
import yaml
from workflow_util import snakemake_ok

pytestmark = pytest.mark.slow


def _dry_run_with(workdir: Path, **predict: object) -> str:
    path = workdir / "tests/config/test.yaml"
    original = path.read_text(encoding="utf-8")
    config = yaml.safe_load(original)
    config.setdefault("predict", {}).update(predict)
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    try:
        return snakemake_ok(workdir, "--cores", "2", "--dry-run")
    finally:
        path.write_text(original, encoding="utf-8")


def test_settings_that_do_not_change_the_output_rerun_nothing(local_run: Path) -> None:
    assert (
        yaml.safe_load((local_run / "tests/config/test.yaml").read_text())["predict"][
            "max_new_tokens"
        ]
        != "auto"
    )  # so the quantile and margin are unused
    output = _dry_run_with(
        local_run,
        batch_size=3,
        share_prefixes=False,
        max_new_tokens_quantile=0.5,
        max_new_tokens_margin=0,
    )
    assert "Nothing to be done" in output


def test_a_longer_generation_limit_reruns_prediction(local_run: Path) -> None:
    output = _dry_run_with(local_run, max_new_tokens=9)
    assert "validation.generated.csv" in output and "test.generated.csv" in output


def test_new_test_generations_rerun_no_validation_answers_or_scores(local_run: Path) -> None:
    path = local_run / "results/predictions/lora/test.generated.csv"
    original, stat = path.read_bytes(), path.stat()
    path.write_bytes(original + "TEST_9999,새 답\n".encode())
    try:
        output = snakemake_ok(local_run, "--cores", "2", "--dry-run")
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "results/predictions/lora/test.csv" in output
    assert "validation.csv" not in output and "results/scores" not in output
