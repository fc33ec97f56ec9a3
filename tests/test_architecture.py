"""The package's import structure: import-linter's contracts (pyproject.toml) and an ``ast`` walk
of gateway/ of our own, both counting ``TYPE_CHECKING`` and function-level imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.import_graph import FUNCTION, TOP, TYPE_CHECKING, cycles, describe, import_edges

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "gateway"

# The import statements that close today's cycles; another branch is removing them. When one
# goes, its test below turns red (strict xfail): drop the mark, and the name here.
SERVICES_BILLING = (
    "gateway.services <-> gateway.billing through TYPE_CHECKING imports: "
    "gateway/services.py:23 `from gateway.billing import Billing` and "
    "gateway/billing/__init__.py:35 `from gateway.services import Services`"
)
PACKAGE_CYCLES = (
    "cycles between sibling packages of gateway, broken by removing "
    "gateway.services -> gateway.billing (services.py:23, TYPE_CHECKING), "
    "gateway.proxy.pipeline -> gateway.billing.autotopup (pipeline.py:21) and "
    "gateway.services -> gateway.proxy.upstream (services.py:19)"
)
KNOWN_MODULE_CYCLES = [{"gateway.billing", "gateway.services"}]


def lint_imports(contract: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--no-cache",
            "--no-logo",
            "--contract",
            contract,
            "pyproject.toml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "contract",
    [
        pytest.param("acyclic", marks=pytest.mark.xfail(strict=True, reason=PACKAGE_CYCLES)),
        "records-at-the-bottom",
        "ledger-below-features",
    ],
)
def test_import_linter_contract_is_kept(contract: str) -> None:
    result = lint_imports(contract)
    assert "KEPT" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.xfail(strict=True, reason=SERVICES_BILLING)
def test_gateway_modules_import_each_other_without_cycles() -> None:
    found = cycles(import_edges(GATEWAY))
    assert not found, "import cycles in gateway/:\n" + describe(found)


def test_no_module_cycle_appears_beyond_the_known_one() -> None:
    # While the strict xfail above stands, this is what fails on a new cycle.
    found = cycles(import_edges(GATEWAY))
    new = [c for c in found if {e.importer for e in c} not in KNOWN_MODULE_CYCLES]
    assert not new, "new import cycles in gateway/:\n" + describe(new)


# -- the walker itself, on a package written for the purpose --------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root / "pkg"


def test_walker_finds_cycles_hidden_behind_type_checking_and_lazy_imports(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from pkg.b import B
                """,
            "pkg/b.py": """\
                def later():
                    from . import c
                """,
            "pkg/c.py": "import pkg.a\nimport os\n",
            "pkg/sub/__init__.py": "from ..c import x\n",
        },
    )
    edges = import_edges(package)
    assert [(e.importer, e.imported, e.guard) for e in edges] == [
        ("pkg.a", "pkg.b", TYPE_CHECKING),
        ("pkg.b", "pkg.c", FUNCTION),
        ("pkg.c", "pkg.a", TOP),
        ("pkg.sub", "pkg.c", TOP),
    ]
    [cycle] = cycles(edges)
    assert [e.importer for e in cycle] == ["pkg.a", "pkg.b", "pkg.c"]
    assert "cycle pkg.a -> pkg.b -> pkg.c -> pkg.a:" in describe([cycle])


def test_walker_passes_an_acyclic_package(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import a\n",
            "pkg/a.py": "from pkg.b import thing\n",
            "pkg/b.py": "from pkg import records\n",
            "pkg/records.py": "import json\n",
        },
    )
    edges = import_edges(package)
    assert len(edges) == 3
    assert cycles(edges) == []
