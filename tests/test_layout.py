"""The house's map stays true: every package's `__init__` names each of its modules, so a
newcomer reads one docstring per room to know what it holds."""

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGES = ["data_utils", "models", "tune_jobs", "tune_jobs/trial", "tune_jobs/study",
            "tune_jobs/finaljob"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_is_named_in_its_package_docstring(package: str) -> None:
    folder = REPO / package
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    words = set(doc.replace(",", " ").replace("(", " ").replace(")", " ").split())
    modules = [p.stem for p in folder.glob("*.py") if p.stem != "__init__"]
    assert modules
    missing = [m for m in modules if m not in words]
    assert not missing, f"{package}/__init__.py does not name {missing}"


def test_the_map_lists_only_real_packages() -> None:
    assert all((REPO / p / "__init__.py").is_file() for p in PACKAGES)
    found = {str(p.parent.relative_to(REPO)) for p in Path(REPO).glob("*/**/__init__.py")
             if not any(part.startswith(".") for part in p.parts)
             and p.parent.relative_to(REPO).parts[0] in {"data_utils", "models", "tune_jobs"}}
    assert found <= set(PACKAGES), found - set(PACKAGES)
