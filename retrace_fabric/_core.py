# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the shared core importable as ``retrace_fabric.core``, however this package was installed.

The core lives in ``plugins/module_utils/`` (code the module also runs) and ``plugins/plugin_utils/``
(controller-only code: git detection, which needs ``subprocess``, banned in module_utils by
ansible-test 2.21's pylint sanity check ``ansible-bad-function``).  Both use only relative imports,
so they can be loaded as one package under any name.  The Fabric adapter always calls it
``retrace_fabric.core``:

* pip install (``pyproject.toml``): the wheel maps ``plugins/module_utils`` and
  ``plugins/plugin_utils/_source.py`` to ``retrace_fabric/core``, so the ordinary import finds it;
* a checkout or an installed collection (``.../ansible_collections/stackify/retrace``): this
  package sits beside ``plugins/``, and both directories are registered as that one package.

One name means one copy of the core's classes in a process, whichever route was taken.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import pathlib
import sys
import types

CORE_PACKAGE = "retrace_fabric.core"
# module file name -> the plugins/ directory that holds it
CORE_MODULES = {
    **{name: "module_utils" for name in
       ("client", "deployment", "errors", "_guard", "_ledger", "_redaction", "settings", "tracking", "transport")},
    "_source": "plugin_utils",
}


def checkout_core_directory() -> pathlib.Path:
    """``plugins/`` beside this package (a checkout or an installed collection)."""
    return pathlib.Path(__file__).resolve().parent.parent / "plugins"


def ensure_core() -> types.ModuleType:
    """Return the core package, registering it from the checkout when pip did not install it."""
    if CORE_PACKAGE in sys.modules:
        return sys.modules[CORE_PACKAGE]
    try:
        return importlib.import_module(CORE_PACKAGE)
    except ModuleNotFoundError as error:
        if error.name != CORE_PACKAGE:
            raise
    return _register(checkout_core_directory())


def _register(directory: pathlib.Path) -> types.ModuleType:
    missing = [f"{subdirectory}/{name}.py" for name, subdirectory in CORE_MODULES.items()
               if not (directory / subdirectory / f"{name}.py").is_file()]
    if missing:
        raise ImportError(
            f"retrace_fabric cannot find the stackify.retrace core in {directory} (missing {', '.join(missing)}): "
            "install it with pip, or put the collection's directory (…/ansible_collections/stackify/retrace) on PYTHONPATH")
    spec = importlib.machinery.ModuleSpec(CORE_PACKAGE, None, is_package=True)
    spec.submodule_search_locations = sorted({str(directory / subdirectory) for subdirectory in CORE_MODULES.values()})
    package = importlib.util.module_from_spec(spec)
    sys.modules[CORE_PACKAGE] = package
    setattr(sys.modules[__package__], "core", package)
    return package
