"""End to end on a real SLURM cluster: the workflow through `snakemake --profile profiles/slurm` on
the single-node test cluster of tools/slurm/start.sh (one fake GPU), in a scratch copy of the
repository.

Checks that SLURM gave each train and predict job the GPU it asked for and the data jobs none, that
the outputs equal those of a local run of the same config, and that a failing job fails the run with
the job's SLURM log path in the message.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from workflow_util import REPO, copy_repo, run_snakemake, snakemake_ok

pytestmark = pytest.mark.slow

GPU_RULES = ("train", "predict")
# The test cluster answers at once: check job states every 2 s rather than the profile's 10 s.
SLURM_ARGS = ("--profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "2")
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S+/slurm_logs/rule_(\w+)/")
TIMEOUT_S = 1200  # a status command that never sees jobs finish would otherwise hang the suite


def _controller_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
    return " is UP" in ping.stdout


def _why_no_cluster() -> str | None:
    """Why tools/slurm/start.sh cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "starting the test cluster needs root (it installs packages and starts daemons)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """The running test cluster (.ci/run starts one), else one started here until the session ends.
    Outside CI, a machine that cannot install SLURM skips; under CI the start must succeed."""
    if _controller_up():
        yield
        return
    reason = _why_no_cluster()
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    subprocess.run(["bash", str(REPO / "tools/slurm/start.sh")], check=True)
    yield
    subprocess.run(["bash", str(REPO / "tools/slurm/stop.sh")], check=True)


def _job_env() -> dict[str, str]:
    """Each SLURM job runs `snakemake` again inside its allocation (sbatch --export=ALL), so the
    interpreter's bin directory must be on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path}


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The whole DAG on SLURM: the scratch copy it ran in and Snakemake's output."""
    workdir = copy_repo(tmp_path_factory.mktemp("koqa_slurm"))
    started = time.perf_counter()
    output = snakemake_ok(workdir, *SLURM_ARGS, env=_job_env(), timeout=TIMEOUT_S)
    print(f"SLURM run: {time.perf_counter() - started:.1f} s")
    return workdir, output


def _job_record(job_id: str) -> dict[str, str]:
    """SLURM's record of a job (kept for MinJobAge after it ends): state, GPUs asked and given."""
    text = subprocess.run(
        ["scontrol", "show", "job", "--details", "--oneliner", job_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    record = {}
    for key in ("JobState", "TresPerJob", "JOB_GRES"):
        match = re.search(rf"\b{key}=(\S*)", text)
        record[key] = match[1] if match else ""
    return record


def test_gpu_jobs_got_a_gpu_and_data_jobs_none(slurm_run: tuple[Path, str]) -> None:
    workdir, output = slurm_run
    jobs = SUBMITTED.findall(output)
    rules = [rule for _, rule in jobs]
    variants = len(list((workdir / "results/training").glob("*/summary.json")))
    assert variants > 0
    assert rules.count("train") == variants and rules.count("predict") == 2 * variants, rules
    assert set(rules) - set(GPU_RULES), "no data job went to SLURM"
    for job_id, rule in jobs:
        record = _job_record(job_id)
        assert record["JobState"] == "COMPLETED", (rule, job_id, record)
        if rule in GPU_RULES:
            assert "gpu:1" in record["TresPerJob"], (rule, job_id, record)  # asked for
            assert record["JOB_GRES"].startswith("gpu:1"), (rule, job_id, record)  # given
        else:
            assert "gpu" not in record["TresPerJob"], (rule, job_id, record)
            assert record["JOB_GRES"] in ("", "(null)"), (rule, job_id, record)


def test_outputs_equal_a_local_run(slurm_run: tuple[Path, str], local_run: Path) -> None:
    """CPU training is deterministic for a config, so SLURM must reproduce the local run exactly."""
    slurm = slurm_run[0] / "results"
    local = local_run / "results"
    variants = sorted(path.stem for path in (local / "scores").glob("*.json"))
    assert variants == sorted(path.stem for path in (slurm / "scores").glob("*.json"))
    for variant in variants:
        score = f"scores/{variant}.json"
        assert json.loads((slurm / score).read_text()) == json.loads((local / score).read_text())
        for split in ("validation", "test"):
            predictions = f"predictions/{variant}/{split}.csv"
            assert (slurm / predictions).read_bytes() == (local / predictions).read_bytes()
        weights = sorted((local / "adapters" / variant).glob("*.safetensors"))
        for path in weights:
            trained = slurm / path.relative_to(local)
            assert trained.read_bytes() == path.read_bytes(), f"{trained} differs from {path}"
    assert (slurm / "submission.csv").read_bytes() == (local / "submission.csv").read_bytes()


def test_failing_job_fails_the_run_with_its_log_path(slurm_cluster: None, tmp_path: Path) -> None:
    """A training file without answers passes every check before submission and fails in the job."""
    workdir = copy_repo(tmp_path)
    (workdir / "bad.csv").write_text("id,context,question\nTRAIN_0,기사,질문\n", encoding="utf-8")
    config_path = workdir / "tests/config/test.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["data"] = {"train": "bad.csv"}
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    result = run_snakemake(workdir, *SLURM_ARGS, env=_job_env(), timeout=TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    failed = re.search(r"SLURM-job '(\d+)' failed", output)
    assert failed, output[-3000:]
    log = workdir / f".snakemake/slurm_logs/rule_ingest/train/{failed[1]}.log"
    assert str(log) in output, output[-3000:]
    assert "Error in rule ingest" in log.read_text()
    rule_log = (workdir / "results/logs/ingest/train.log").read_text(encoding="utf-8")
    assert "bad.csv" in rule_log and "answer" in rule_log, rule_log
