"""bench/gpu.py, the GPU acceptance check, in its --smoke mode: the same code on the CPU with tiny
dimensions, so that a change to koqa's training, prediction or memory-planning code that breaks the
check shows here, without a GPU. Cost: about 30 s on two cores."""

import json
import subprocess
import sys
from pathlib import Path

from koqa.train.variants import METHODS

REPO = Path(__file__).resolve().parents[1]


def test_smoke_run_passes_every_check(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench/gpu.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["passed"] and report["smoke"], report["checks"]
    assert set(report["methods_1b"]) == set(METHODS) - {"zeroshot"}
    for method, run in report["methods_1b"].items():
        assert run["steps"] == 2 and run["finite"] and run["estimate_gib"] > 0, (method, run)
    for variant, counts in report["generation_1b"].items():
        assert counts["identical"] == counts["prompts"] == 7, (variant, counts)  # fp32: exact
    for method, run in report["throughput_8b"].items():
        assert run["tokens_per_s"] > 0 and run["mfu"] is None, (method, run)
