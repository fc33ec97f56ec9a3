"""pyproject.toml names only what exists: every package-data pattern matches files, the readme
is there and the console script's target imports (a wheel built from it is whole)."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DATA = [
    (package, pattern)
    for package, patterns in PROJECT["tool"]["setuptools"]["package-data"].items()
    for pattern in patterns
]


@pytest.mark.parametrize(("package", "pattern"), PACKAGE_DATA)
def test_every_package_data_pattern_names_existing_files(package: str, pattern: str) -> None:
    assert sorted((ROOT / package.replace(".", "/")).glob(pattern)), f"{package}: {pattern}"


def test_the_readme_and_the_console_script_exist() -> None:
    assert (ROOT / PROJECT["project"]["readme"]).is_file()
    for name, target in PROJECT["project"]["scripts"].items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name
