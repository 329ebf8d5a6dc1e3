"""The conda environments in envs/ cannot be built here (no conda), so check what can be checked
without building them: every pin matches requirements.txt; every third-party module a rule's script
imports (directly or through koqa, at any depth) comes from a package its environment installs,
itself or as a dependency of one; the pip section installs from where Snakemake puts the file; and
a job finds koqa through PYTHONPATH alone, as it must in an environment that does not install it.

Not tested: conda itself solving and building the environments, and pip picking the CUDA build of
torch on a GPU host."""

import ast
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from workflow_util import copy_repo, run_snakemake

REPO = Path(__file__).resolve().parents[1]
RULE = re.compile(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", re.MULTILINE)
CONDA = re.compile(r'conda:\s*"\.\./(envs/[\w.]+)"')
SCRIPT = re.compile(r'script:\s*"\.\./(scripts/[\w.]+)"')


ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for line in requirements:
        requirement = Requirement(line)
        pins[canonicalize_name(requirement.name)] = str(requirement.specifier)
    return pins


def _pip_section(env_file: Path) -> list[str]:
    spec = yaml.safe_load(env_file.read_text(encoding="utf-8"))
    return next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)


def _env_pins(env_file: Path) -> dict[str, str]:
    return _pins(_pip_section(env_file))


def _rules() -> list:
    """(rule, environment file, script) of every rule that has both, as test parameters."""
    found = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for name, body in RULE.findall(smk.read_text(encoding="utf-8")):
            conda, script = CONDA.search(body), SCRIPT.search(body)
            if conda and script:
                found.append(pytest.param(name, REPO / conda[1], REPO / script[1], id=name))
    return found


def _imported_modules(path: Path) -> set[str]:
    """Absolute imports of a file, function-level ones included (they run too)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party modules the script needs, following koqa's modules."""
    needed, seen, todo = set(), set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top == "koqa":
                stem = REPO / module.replace(".", "/")
                todo += [p for p in (stem.with_suffix(".py"), stem / "__init__.py") if p.is_file()]
            elif top not in sys.stdlib_module_names and top != "__future__":
                needed.add(top)
    return needed


@cache
def _dependencies(name: str) -> frozenset[str]:
    """The installed distribution ``name`` and everything it requires (extras left out)."""
    found = {name}
    try:
        requires = distribution(name).requires or []
    except PackageNotFoundError:
        return frozenset(found)
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found |= _dependencies(canonicalize_name(requirement.name))
    return frozenset(found)


def test_every_env_pin_matches_requirements_txt() -> None:
    lines = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    required = _pins([line for line in lines if line.strip() and not line.startswith("#")])
    for env_file in ENV_FILES:
        for name, pin in _env_pins(env_file).items():
            assert required.get(name) == pin, f"{env_file.name}: {name}{pin} vs requirements.txt"


@pytest.mark.parametrize(("rule", "env_file", "script"), _rules())
def test_each_rule_env_installs_what_its_script_imports(
    rule: str, env_file: Path, script: Path
) -> None:
    provided = set().union(*(_dependencies(name) for name in _env_pins(env_file)))
    module_owners = packages_distributions()
    missing = {
        module
        for module in third_party_imports(script)
        if not {canonicalize_name(d) for d in module_owners.get(module, [module])} & provided
    }
    assert not missing, f"rule {rule}: {env_file.name} lacks what provides {sorted(missing)}"


def test_rules_are_found() -> None:
    """The parametrized test above must not pass by finding no rules."""
    names = {param.values[0] for param in _rules()}
    assert {"ingest", "tokenize", "train", "predict", "score", "submission"} <= names


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_pip_section_installs_where_snakemake_puts_the_file(env_file: Path, tmp_path: Path) -> None:
    """``snakemake --sdm conda`` copies the file to .snakemake/conda/<hash>.yaml; conda writes its
    pip section to a requirements file beside the copy and runs pip in that folder, where a path
    such as ``--editable ..`` means .snakemake/. The same pip, in the same folder, on the pins this
    interpreter has installed (``--dry-run --no-index``: nothing is downloaded), must succeed."""
    folder = tmp_path / ".snakemake" / "conda"
    folder.mkdir(parents=True)
    copy = folder / "0123456789abcdef.yaml"
    shutil.copyfile(env_file, copy)
    requirements = folder / "condaenv.koqa.requirements.txt"
    requirements.write_text("\n".join(_pip_section(copy)) + "\n", encoding="utf-8")
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps"]
    result = subprocess.run(
        [*pip, "-r", requirements.name], cwd=folder, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_job_and_its_children_import_koqa_from_the_checkout(tmp_path: Path) -> None:
    """With nothing putting koqa on the path (as in a conda environment that does not install it),
    the ingest job of a scratch copy imports the copy's koqa, and so does a Python process the job
    would start (a torchrun worker, say): the Snakefile sets PYTHONPATH for every job."""
    workdir = copy_repo(tmp_path / "checkout")
    imports = tmp_path / "imports.tsv"
    init = workdir / "koqa" / "__init__.py"
    record = (
        "\nimport os as _os\n"
        f"with open({str(imports)!r}, 'a') as _log:\n"
        "    _log.write(f\"{_os.getpid()}\\t{__file__}\\t{_os.environ.get('PYTHONPATH', '')}\\n\")\n"
    )
    init.write_text(init.read_text(encoding="utf-8") + record, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = run_snakemake(workdir, "--cores", "1", "results/data/raw/train.parquet", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("\t") for line in imports.read_text().splitlines()]
    assert {file for _, file, _ in rows} == {str(init)}
    assert len({pid for pid, _, _ in rows}) >= 2, "the job did not import koqa (only Snakemake did)"
    job_path = rows[-1][2]
    child = subprocess.run(
        [sys.executable, "-c", "import koqa; print(koqa.__file__)"],
        env={**env, "PYTHONPATH": job_path},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert child.stdout.strip() == str(init), (job_path, child.stderr)
