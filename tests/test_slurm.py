"""End to end on a real SLURM cluster: the workflow through `snakemake --profile profiles/slurm` on
the single-node test cluster of tools/slurm/start.sh (one fake GPU), in a scratch copy of the
repository.

Checks that only train and predict jobs went to SLURM (every other rule, zeroshot's empty training
included, is a localrule and ran on the submitting machine), each with the GPU it asked for, that the
outputs equal those of a local run of the same config, and that a failing job fails the run with the
job's SLURM log path in the message.

The SLURM executor plugin is installed apart from the venv's site-packages (`make slurm-plugins`,
into .venv/slurm-plugins); the runs here put that folder on PYTHONPATH, as `make slurm` does.
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

# predict_both: validation generated free and constrained in one job (predict.constrain: auto);
# likelihood: the likelihood ensemble's scoring of candidate answers
GPU_RULES = ("train", "predict", "predict_both", "likelihood")
# The test cluster answers at once: check job states every 2 s rather than the profile's 10 s.
SLURM_ARGS = ("--profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "2")
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S+/slurm_logs/rule_(\w+)/")
TIMEOUT_S = 1200  # a status command that never sees jobs finish would otherwise hang the suite
SLURM_PLUGINS = Path(sys.prefix) / "slurm-plugins"  # where `make slurm-plugins` installs them


def _controller_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
    return " is UP" in ping.stdout


def _plugin_found() -> bool:
    """Whether Snakemake will find the SLURM executor plugin with SLURM_PLUGINS on its path."""
    find = (
        "import importlib.util as u; exit(u.find_spec('snakemake_executor_plugin_slurm') is None)"
    )
    env = {**os.environ, "PYTHONPATH": str(SLURM_PLUGINS)}
    return subprocess.run([sys.executable, "-c", find], env=env).returncode == 0


def _why_no_cluster() -> str | None:
    """Why tools/slurm/start.sh cannot run here, or None if it can."""
    if not _plugin_found():
        return f"no SLURM executor plugin (make slurm-plugins installs it into {SLURM_PLUGINS})"
    if os.geteuid() != 0:
        return "starting the test cluster needs root (it installs packages and starts daemons)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """The running test cluster (.ci/run starts one), else one started here until the session ends.
    Outside CI, a machine that cannot install SLURM skips; under CI the start must succeed."""
    if _controller_up() and _plugin_found():
        yield
        return
    reason = _why_no_cluster()
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    subprocess.run(["bash", str(REPO / "tools/slurm/start.sh")], check=True)
    yield
    subprocess.run(["bash", str(REPO / "tools/slurm/stop.sh")], check=True)


def _job_env() -> dict[str, str]:
    """The SLURM plugins on PYTHONPATH, and, since each SLURM job runs `snakemake` again inside its
    allocation (sbatch --export=ALL), the interpreter's bin directory on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    python_path = os.pathsep.join(filter(None, [str(SLURM_PLUGINS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PATH": path, "PYTHONPATH": python_path}


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


def test_only_gpu_jobs_went_to_slurm_each_with_a_gpu(slurm_run: tuple[Path, str]) -> None:
    workdir, output = slurm_run
    jobs = SUBMITTED.findall(output)
    rules = [rule for _, rule in jobs]
    summaries = (workdir / "results/training").glob("*/summary.json")
    methods = [json.loads(path.read_text())["method"] for path in summaries]
    trained = len(methods) - methods.count("zeroshot")
    assert 0 < trained < len(methods), methods  # zeroshot's training ran locally
    predicted = rules.count("predict") + rules.count("predict_both")  # test and validation
    assert rules.count("train") == trained and predicted == 2 * len(methods), rules
    assert {"train", "predict"} <= set(rules) <= set(GPU_RULES), (
        "a job of another rule went to SLURM"
    )
    for job_id, rule in jobs:
        record = _job_record(job_id)
        assert record["JobState"] == "COMPLETED", (rule, job_id, record)
        assert "gpu:1" in record["TresPerJob"], (rule, job_id, record)  # asked for
        assert record["JOB_GRES"].startswith("gpu:1"), (rule, job_id, record)  # given


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


def test_failing_job_is_retried_then_fails_the_run_with_its_log_path(
    slurm_run: tuple[Path, str], tmp_path: Path
) -> None:
    """A variant whose target modules the model lacks passes every check before submission and
    fails in its train job on the cluster, twice (train jobs are retried once). Run in a copy of the
    finished SLURM run, so that its training is the only job."""
    workdir = tmp_path / "koqa"
    shutil.copytree(slurm_run[0], workdir, symlinks=True)
    config_path = workdir / "tests/config/test.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["variants"]["bad"] = {"method": "lora", "target_modules": ["c_attn"]}
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    target = "results/adapters/bad"
    result = run_snakemake(workdir, *SLURM_ARGS, target, env=_job_env(), timeout=TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    failed = re.findall(r"SLURM-job '(\d+)' failed", output)
    assert len(failed) == 2, output[-3000:]
    log = workdir / f".snakemake/slurm_logs/rule_train/bad/{failed[-1]}.log"
    assert str(log) in output, output[-3000:]
    assert "Error in rule train" in log.read_text()
    rule_log = (workdir / "results/logs/train/bad.log").read_text(encoding="utf-8")
    assert "['c_attn'] are not linear layers of the model" in rule_log, rule_log
