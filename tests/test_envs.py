"""The conda environments in envs/ cannot be built here (no conda), so check what can be checked
without building them: every pin matches requirements.txt, and every third-party module a rule's
script imports (directly or through koqa, at any depth) comes from a package its environment
installs, itself or as a dependency of one."""

import ast
import re
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
RULE = re.compile(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", re.MULTILINE)
CONDA = re.compile(r'conda:\s*"\.\./(envs/[\w.]+)"')
SCRIPT = re.compile(r'script:\s*"\.\./(scripts/[\w.]+)"')


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for line in requirements:
        if line.startswith("-"):  # --editable .. installs koqa itself
            continue
        requirement = Requirement(line)
        pins[canonicalize_name(requirement.name)] = str(requirement.specifier)
    return pins


def _env_pins(env_file: Path) -> dict[str, str]:
    spec = yaml.safe_load(env_file.read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
    return _pins(pip)


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
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
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
