"""Helpers of the end-to-end tests: a scratch copy of the repository and Snakemake runs inside it."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPIED = [
    "Snakefile",
    "config.yaml",
    "rules",
    "scripts",
    "schemas",
    "envs",
    "report",
    "resources",
    "koqa",
    "profiles",
    "tests/config",
    "presets",
]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--configfile", "tests/config/test.yaml"]


def copy_repo(root: Path) -> Path:
    """Copy what the workflow needs into `root` (an empty directory) and return `root`."""
    for name in COPIED:
        source, target = REPO / name, root / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return root


def run_snakemake(
    workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Snakemake on the test config in `workdir`, with its output captured."""
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, env=env, timeout=timeout
    )


def snakemake_ok(
    workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float | None = None
) -> str:
    """Like run_snakemake, but the run must succeed; returns its output."""
    result = run_snakemake(workdir, *args, env=env, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr
