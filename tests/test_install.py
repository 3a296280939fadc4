"""A user who installs the package instead of working in the checkout: a non-editable
install into a fresh virtual environment, run from a folder that is not the repo, must find
its configs, model presets, class mapping and demo data, and its console scripts must run."""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding a wheel of this checkout. The dependencies (gigabytes of torch
    and Ray) are borrowed from the test's own environment through a .pth line, not
    downloaded again; litesearch itself comes only from the wheel: the borrowed folder's
    editable-install hook is a .pth file there, which Python does not process."""
    tmp = tmp_path_factory.mktemp("install")
    # from a copy: setuptools builds in the source's build/, which must not be the checkout's
    source = tmp / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "runs", ".gpu-data", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp / "wheels"), str(source)],
                   check=True, cwd=tmp)
    wheel = next((tmp / "wheels").glob("litesearch-*.whl"))
    env = tmp / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    Path(site.stdout.strip(), "borrowed-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, cwd=tmp)
    return env


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    return env | {"LITESEARCH_STORAGE": ""}


def test_presets_configs_and_demo_data_load_from_the_installed_package(installed,
                                                                       tmp_path) -> None:
    code = """
import configs, data_utils, models, tune_jobs
from data_utils.demo import demo_root
from data_utils.folder import scan_folder
from data_utils.mapping import load_mapping
from tune_jobs.config import load_config
for module in (configs, data_utils, models, tune_jobs):
    assert "site-packages" in module.__file__, module.__file__
models.build("baseline", num_classes=6)
assert len(models.list_presets()) >= 4, models.list_presets()
assert load_config(None).search.num_samples > 0
assert load_config("taco").resources.gpus_per_trial > 0
assert load_config("configs/ci.yaml").search.num_samples > 0
assert len(load_mapping().classes) == 6
assert len(scan_folder(demo_root() / "train")) > 1000
print("ok")
"""
    out = subprocess.run([installed / "bin" / "python", "-c", code], capture_output=True,
                         text=True, cwd=tmp_path, env=_clean_env(), timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_the_litesearch_command_runs_from_another_folder(installed, tmp_path) -> None:
    from tune_jobs.cli import COMMANDS

    litesearch = installed / "bin" / "litesearch"
    out = subprocess.run([litesearch], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and all(name in out.stdout for name in COMMANDS), out.stdout
    for name in COMMANDS:
        out = subprocess.run([litesearch, name, "--help"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=120)
        assert out.returncode == 0 and f"usage: litesearch {name}" in out.stdout, (
            name, out.stderr[-2000:])
    out = subprocess.run([litesearch, "serach"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=60)
    assert out.returncode == 2 and "no command 'serach'" in out.stderr
    run = tmp_path / "run"
    out = subprocess.run([litesearch, "search", "--config", "ci",
                          "--output", str(run)], capture_output=True, text=True,
                         cwd=tmp_path, env=_clean_env(), timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "best COMPLETE trial" in out.stdout
    assert (run / "best" / "spec.yaml").is_file() and (run / "study.db").is_file()
