"""Packaging: one top-level import name, and every source package listed in pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_installed_under_recon():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    listed = set(config["packages"])
    assert all(name == "recon" or name.startswith("recon.") for name in listed)
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            name = ".".join((package, *relative))
            assert name in listed, f"{init.parent} is not listed in pyproject packages"


def _third_party_imports() -> set[str]:
    """Top-level names the installed code (cli, pipelines, models) imports, stdlib excluded."""
    import ast
    import sys

    names = set()
    for folder in ("recon_cli", "pipelines", "models", "recon"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "recon"}


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_declared_dependencies_match_the_imports():
    """Every library the code imports is declared, and every declared one is imported, except
    those used through another library (named here with the reason)."""
    import importlib.metadata
    import re

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        _canonical(re.split(r"[<>=!~; \[]", r, maxsplit=1)[0]) for r in project["dependencies"]
    }
    used_indirectly = {"tensorboard"}  # Lightning's TensorBoardLogger writes with it
    distributions = importlib.metadata.packages_distributions()
    imported = set()
    for name in _third_party_imports():
        owners = {_canonical(d) for d in distributions.get(name, [])}
        assert owners & declared, f"{name} is imported but its package {owners} is not declared"
        imported |= owners & declared
    unused = declared - imported - used_indirectly
    assert not unused, f"declared but never imported: {sorted(unused)}"
