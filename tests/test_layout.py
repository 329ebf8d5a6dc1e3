"""The package's shape: koqa never imports snakemake, and its data and scoring stages never import
torch (they run in the light `envs/data.yaml` environment and must start fast), nor does what the
Snakefile imports."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

KOQA = Path(__file__).resolve().parents[1] / "koqa"
LIGHT_PACKAGES = ["data", "score"]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(KOQA.rglob("*.py")), ids=lambda p: str(p.relative_to(KOQA)))
def test_koqa_never_imports_snakemake(path):
    assert "snakemake" not in _imported_modules(path)


def _heavy_imports(modules: list[str]) -> str:
    """Which of torch, peft and snakemake importing ``modules`` pulls in, in a fresh process."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'peft', 'snakemake') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.mark.parametrize("package", LIGHT_PACKAGES)
def test_light_stages_do_not_import_torch(package):
    modules = sorted(
        f"koqa.{package}.{path.stem}"
        for path in (KOQA / package).glob("*.py")
        if path.stem != "__init__"
    )
    assert _heavy_imports(modules) == "[]", f"koqa.{package} imported torch, peft or snakemake"


def test_what_the_snakefile_imports_needs_no_torch():
    """rules/common.smk checks the variants (and the model family) before any job starts."""
    assert _heavy_imports(["koqa.train.variants", "koqa.model.families"]) == "[]"
