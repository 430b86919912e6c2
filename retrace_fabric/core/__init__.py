# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's core, as Fabric imports it: ``from retrace_fabric.core import _run``.

Its modules are the collection's ``plugins/module_utils/*.py`` (the code Ansible's module runs too) and
``plugins/plugin_utils/_source.py`` (git and CI detection: controller-only code, since it starts ``git``).
They import one another only relatively, so they make one package under this name:

* in a checkout, or an installed collection (``.../ansible_collections/stackify/retrace``), this package sits
  beside ``plugins/``, and ``__path__`` below names those two directories;
* in the pip wheel, the build copies the modules Fabric uses into this directory (``pyproject.toml``), and
  ``__path__`` stays this directory.

One name, one copy of the core's classes in a process, whichever way it was installed.
"""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_PLUGINS = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "plugins")

if not os.path.exists(os.path.join(_HERE, "_run.py")):  # not a wheel: the modules live in the collection's plugins/
    __path__ = [os.path.join(_PLUGINS, "module_utils"), os.path.join(_PLUGINS, "plugin_utils")]
    if not os.path.exists(os.path.join(__path__[0], "_run.py")):
        raise ImportError(f"retrace_fabric cannot find the stackify.retrace core in {_PLUGINS}: install it with pip, or put "
                          "the collection's directory (.../ansible_collections/stackify/retrace) on PYTHONPATH")
