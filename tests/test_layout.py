"""The package's shape: koqa never imports snakemake, and its data and scoring stages never import
torch (they run in the light `envs/data.yaml` environment and must start fast)."""

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


@pytest.mark.parametrize("package", LIGHT_PACKAGES)
def test_light_stages_do_not_import_torch(package):
    modules = sorted(
        f"koqa.{package}.{path.stem}"
        for path in (KOQA / package).glob("*.py")
        if path.stem != "__init__"
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'peft', 'snakemake') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", f"koqa.{package} imported {result.stdout.strip()}"
