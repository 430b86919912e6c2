"""The core is importable as retrace_fabric.core, from plugins/module_utils of this checkout."""

from __future__ import annotations

import pathlib

import pytest

import retrace_fabric
from retrace_fabric import _core

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_the_core_is_the_collections_module_utils():
    from retrace_fabric.core import client

    assert pathlib.Path(client.__file__).resolve() == REPO_ROOT / "plugins" / "module_utils" / "client.py"
    assert retrace_fabric.core is _core.ensure_core()


def test_one_copy_of_the_exception_classes_is_used_throughout():
    from retrace_fabric.core.errors import RetraceError
    from retrace_fabric.tracking import RetraceError as used_by_tracking

    assert RetraceError is used_by_tracking


def test_a_missing_core_is_explained(tmp_path):
    with pytest.raises(ImportError, match="cannot find the stackify.retrace core .* PYTHONPATH"):
        _core._register(tmp_path)  # pylint: disable=protected-access
