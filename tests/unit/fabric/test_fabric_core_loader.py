"""retrace_fabric.core: an ordinary package whose modules are the collection's plugins/module_utils and
plugins/plugin_utils/_source.py (the wheel's copy is checked in tests/integration/fabric/test_fabric_conventions.py)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import retrace_fabric.core

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_the_core_is_the_collections_module_utils_and_plugin_utils():
    from retrace_fabric.core import _source, client

    assert pathlib.Path(client.__file__).resolve() == REPO_ROOT / "plugins" / "module_utils" / "client.py"
    assert pathlib.Path(_source.__file__).resolve() == REPO_ROOT / "plugins" / "plugin_utils" / "_source.py"


def test_it_is_an_ordinary_package_found_by_its_name():
    assert pathlib.Path(retrace_fabric.core.__file__).resolve() == REPO_ROOT / "retrace_fabric" / "core" / "__init__.py"
    assert retrace_fabric.core.__spec__.origin == retrace_fabric.core.__file__


def test_a_core_module_imports_by_its_name_in_a_fresh_interpreter():
    """Nothing to call first, nothing registered in sys.modules by hand: the import system finds it."""
    imported = subprocess.run([sys.executable, "-c", "from retrace_fabric.core import _run; print(_run.__name__, _run.__file__)"],
                              capture_output=True, text=True, cwd=REPO_ROOT, check=False,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == ["retrace_fabric.core._run", str(REPO_ROOT / "plugins" / "module_utils" / "_run.py")]


def test_one_copy_of_the_exception_classes_is_used_throughout():
    from retrace_fabric.core.errors import InvalidInput
    from retrace_fabric.deploy import InvalidInput as used_by_deploy
    from retrace_fabric.tracking import InvalidInput as used_by_tracking

    assert InvalidInput is used_by_tracking is used_by_deploy


def test_a_missing_core_is_explained(tmp_path):
    shutil.copytree(REPO_ROOT / "retrace_fabric", tmp_path / "retrace_fabric", ignore=shutil.ignore_patterns("__pycache__"))
    imported = subprocess.run([sys.executable, "-c", "import retrace_fabric"], capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(tmp_path)}, check=False)
    assert imported.returncode == 1
    assert "retrace_fabric cannot find the stackify.retrace core in" in imported.stderr and "PYTHONPATH" in imported.stderr
