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
        "acyclic",
        "records-at-the-bottom",
        "ledger-below-features",
    ],
)
def test_import_linter_contract_is_kept(contract: str) -> None:
    result = lint_imports(contract)
    assert "KEPT" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr


def test_gateway_modules_import_each_other_without_cycles() -> None:
    found = cycles(import_edges(GATEWAY))
    assert not found, "import cycles in gateway/:\n" + describe(found)


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
