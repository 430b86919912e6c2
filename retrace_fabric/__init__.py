# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fabric tasks that record deployments in Stackify Retrace.  See docs/fabric.md.

Reuse in your own fabfile::

    import retrace_fabric
    ns.add_collection(retrace_fabric.namespace)        # fab retrace.start / complete / cancel

    @task
    @retrace_fabric.track                              # or: with retrace_fabric.tracked(c): ...
    def deploy(c): ...

Every ``retrace.*`` setting and ``FABRIC_RETRACE_*`` variable works in your own fabfile as it is: no
``configure()`` line is needed (docs/fabric.md, "Your own fabfile").
"""

from ._core import ensure_core

ensure_core()

# pylint: disable=wrong-import-position
from . import debug_redaction  # noqa: E402
from .deploy import deploy, deploy_to  # noqa: E402
from . import settings  # noqa: E402
from .settings import CONFIG_DEFAULTS  # noqa: E402
from .tasks import collection, namespace  # noqa: E402
from .tracking import Interrupted, Terminated, track, tracked  # noqa: E402

debug_redaction.install()
settings.capture_fabric_variables()

__all__ = ["CONFIG_DEFAULTS", "Interrupted", "Terminated", "collection", "deploy", "deploy_to", "namespace", "track", "tracked"]
