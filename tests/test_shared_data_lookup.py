"""The test suite finds the shared data from a temp-folder clone (how `.ci/run` is checked)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import find_shared_data


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """work/main (a git repo) beside work/shared/data, and a clone of it in another folder."""
    main, data = tmp_path / "work" / "main", tmp_path / "work" / "shared" / "data"
    data.mkdir(parents=True)
    main.mkdir()
    _git("-C", str(main), "init", "-q")
    _git("-C", str(main), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
         "--allow-empty", "-m", "init")
    clone = tmp_path / "elsewhere" / "p"
    _git("clone", "-q", str(main), str(clone))
    return main, clone


def test_beside_the_repo_and_beside_the_origin(layout, monkeypatch):
    main, clone = layout
    monkeypatch.delenv("LITESEARCH_SHARED_DATA", raising=False)
    data = main.parent / "shared" / "data"
    assert find_shared_data(main) == data
    assert find_shared_data(clone) == data


def test_environment_wins_and_missing_names_the_first_candidate(layout, tmp_path, monkeypatch):
    main, clone = layout
    monkeypatch.setenv("LITESEARCH_SHARED_DATA", str(tmp_path / "mine"))
    assert find_shared_data(clone) == tmp_path / "mine"
    monkeypatch.delenv("LITESEARCH_SHARED_DATA")
    (main.parent / "shared" / "data").rmdir()
    assert find_shared_data(clone) == clone.parent / "shared" / "data"
