"""Per-job runtime set-up: every thread pool a job may start is sized to the job's threads."""

import os
import sys
from types import SimpleNamespace

import pytest

from koqa.runtime import configure_job

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")
SET_VARS = (*THREAD_VARS, "TOKENIZERS_PARALLELISM", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.mark.parametrize(("threads", "parallel_tokenizers"), [(1, "false"), (3, "true")])
def test_configure_job_sizes_every_thread_pool(
    monkeypatch: pytest.MonkeyPatch, threads: int, parallel_tokenizers: str
) -> None:
    for name in (*SET_VARS, "HF_HUB_DISABLE_TELEMETRY", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, "unset")  # restored after the test
    torch_threads = []
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(set_num_threads=torch_threads.append))
    configure_job(threads)
    assert {name: os.environ[name] for name in THREAD_VARS} == dict.fromkeys(
        THREAD_VARS, str(threads)
    )
    assert os.environ["TOKENIZERS_PARALLELISM"] == parallel_tokenizers
    assert (os.environ["HF_HUB_OFFLINE"], os.environ["TRANSFORMERS_OFFLINE"]) == ("1", "1")
    assert torch_threads == [threads]
