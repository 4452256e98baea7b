"""The layout: one sub-package per pipeline, dependencies pointing one way.

recon.cli -> recon.pipelines -> recon.models. A domain package (shapes, corset, occupancy, xray)
may import recon.pipelines.common freely, another domain only through that domain's package
(`from recon.pipelines.shapes import project_mesh`), never one of its modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import recon.models
import recon.pipelines

PIPELINES = Path(recon.pipelines.__file__).parent
MODELS = Path(recon.models.__file__).parent
SHARED = "common"


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module name the file imports, with its line. Names imported from a package
    count as that package: `from recon.pipelines.shapes import x` is `recon.pipelines.shapes`."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
    return names


def _domain_violations(path: Path, domain: str) -> list[str]:
    problems = []
    for line, name in _imported_modules(path):
        where = f"{path.parent.name}/{path.name}:{line} imports {name}"
        if name == "recon.cli" or name.startswith("recon.cli."):
            problems.append(where)
        parts = name.split(".")
        if parts[:2] != ["recon", "pipelines"] or len(parts) < 4:
            continue
        other = parts[2]
        if domain != SHARED and other not in (domain, SHARED):
            problems.append(f"{where} (a module of another domain: use recon.pipelines.{other})")
    return problems


def _domains() -> list[str]:
    return sorted(p.name for p in PIPELINES.iterdir() if (p / "__init__.py").exists())


def test_every_pipeline_folder_is_a_documented_package():
    assert {"common", "shapes", "corset", "occupancy", "xray"} <= set(_domains())
    assert {p.name for p in PIPELINES.glob("*.py")} == {"__init__.py"}, "modules outside a package"
    for domain in _domains():
        doc = ast.get_docstring(ast.parse((PIPELINES / domain / "__init__.py").read_text()))
        assert doc, f"pipelines/{domain}/__init__.py has no docstring"
        assert 3 <= len(doc.splitlines()) <= 6, f"pipelines/{domain}: docstring of 3-6 lines"


@pytest.mark.parametrize("domain", _domains())
def test_domains_reach_each_other_only_through_their_packages(domain):
    problems = []
    for path in sorted((PIPELINES / domain).rglob("*.py")):
        problems += _domain_violations(path, domain)
    assert not problems, "\n".join(problems)


def test_models_import_no_pipeline_and_no_cli():
    for path in sorted(MODELS.rglob("*.py")):
        for line, name in _imported_modules(path):
            assert not name.startswith(("recon.pipelines", "recon.cli")), f"{path}:{line} {name}"


def test_the_checker_finds_a_reach_into_another_domain(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from recon.pipelines.shapes.projection import read_views\n"
        "from recon.pipelines.shapes import project_mesh\n"
        "from recon.pipelines.common.io import save_mesh\n"
        "import recon.cli.app\n"
    )
    problems = _domain_violations(bad, "corset")
    assert len(problems) == 2
    assert "shapes.projection" in problems[0] and "recon.cli" in problems[1]
