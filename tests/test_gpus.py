"""The GPU pool (koqa.gpus) on the CPU: a simulated pool of device names, real concurrent processes.

Each worker process claims its GPUs as a train or predict job does, records the devices it saw in
CUDA_VISIBLE_DEVICES and when it held them, and holds them a moment. No two workers may hold one
device at the same time, no more run at once than the pool has devices, and the ones that found
none free must have waited. Cost: about 10 s, mostly workers waiting on each other.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from koqa.gpus import claim_gpus, gpu_pool

REPO = Path(__file__).resolve().parents[1]
WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from koqa.gpus import claim_gpus
    count, hold, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    asked = time.monotonic()
    with claim_gpus(count) as devices:
        got = time.monotonic()
        time.sleep(hold)
        record = {"devices": devices, "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                  "asked": asked, "got": got, "released": time.monotonic()}
    with open(out, "w") as handle:
        json.dump(record, handle)
    """
)


def _start(tmp_path: Path, name: str, count: int, hold: float, **env: str) -> subprocess.Popen:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KOQA_GPU_LOCK_DIR": str(tmp_path / "locks"),
        **env,
    }
    environment.pop("SLURM_JOB_ID", None)
    command = [sys.executable, "-c", WORKER, str(count), str(hold), str(tmp_path / f"{name}.json")]
    return subprocess.Popen(command, env=environment)


def _records(tmp_path: Path, names: list[str]) -> list[dict]:
    return [json.loads((tmp_path / f"{name}.json").read_text()) for name in names]


def test_the_pool_comes_from_koqa_gpus_then_cuda_visible_devices_then_nvidia_smi(
    tmp_path: Path,
) -> None:
    assert gpu_pool({"KOQA_GPUS": "2, 3", "CUDA_VISIBLE_DEVICES": "0"}) == ["2", "3"]
    assert gpu_pool({"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}) == ["GPU-aa", "GPU-bb"]
    assert gpu_pool({"CUDA_VISIBLE_DEVICES": ""}) == []
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: H100 (UUID: GPU-a)'\necho 'GPU 1: H100 (UUID: GPU-b)'\n"
    )
    smi.chmod(0o755)
    assert gpu_pool({"PATH": str(tmp_path)}) == ["0", "1"]


def test_concurrent_jobs_never_share_a_device_and_wait_when_all_are_taken(tmp_path: Path) -> None:
    names = [f"job{i}" for i in range(5)]
    workers = [_start(tmp_path, name, 1, 1.0, KOQA_GPUS="0,1") for name in names]
    assert all(worker.wait(timeout=60) == 0 for worker in workers)
    records = _records(tmp_path, names)
    for record in records:
        assert record["visible"] == ",".join(record["devices"]) and len(record["devices"]) == 1
    for i, one in enumerate(records):
        for other in records[i + 1 :]:
            overlap = one["got"] < other["released"] and other["got"] < one["released"]
            assert not (overlap and one["devices"] == other["devices"]), (one, other)
    starts = sorted(record["got"] for record in records)
    assert starts[2] - starts[0] > 0.9, "a third job ran while both devices were taken"
    assert sum(record["got"] - record["asked"] > 0.5 for record in records) >= 3


def test_a_job_gets_as_many_devices_as_it_asks_for(tmp_path: Path) -> None:
    worker = _start(tmp_path, "pair", 2, 0.0, KOQA_GPUS="4,5,6")
    assert worker.wait(timeout=30) == 0
    record = _records(tmp_path, ["pair"])[0]
    assert record["devices"] == ["4", "5"] and record["visible"] == "4,5"


def test_a_killed_job_releases_its_device(tmp_path: Path) -> None:
    holder = _start(tmp_path, "holder", 1, 60.0, KOQA_GPUS="0")
    time.sleep(3)  # it holds the only device by now
    waiter = _start(tmp_path, "waiter", 1, 0.0, KOQA_GPUS="0")
    time.sleep(2)
    assert waiter.poll() is None, "the waiter ran while the device was held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert waiter.wait(timeout=30) == 0
    assert _records(tmp_path, ["waiter"])[0]["devices"] == ["0"]


def test_slurm_jobs_and_cpu_jobs_keep_their_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with claim_gpus(1, {"SLURM_JOB_ID": "12", "KOQA_GPUS": "0,1"}) as devices:
        assert devices is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    with claim_gpus(0, {"KOQA_GPUS": "0,1"}) as devices:
        assert devices is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    too_many = pytest.raises(RuntimeError, match="asks for 3 GPUs but the pool has 2")
    with too_many, claim_gpus(3, {"KOQA_GPUS": "0,1"}):
        pass
