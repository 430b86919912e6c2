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
``configure()`` line is needed (docs/fabric.md, "Your own fabfile").  The collection's core is
:mod:`retrace_fabric.core`.
"""

from . import debug_redaction, settings
from .deploy import deploy, deploy_to
from .settings import CONFIG_DEFAULTS
from .tasks import collection, namespace
from .tracking import Interrupted, Terminated, track, tracked

# The key's variables are read for the redaction filter before FABRIC_RETRACE_* leave the environment.
debug_redaction.install()
settings.capture_fabric_variables()

__all__ = ["CONFIG_DEFAULTS", "Interrupted", "Terminated", "collection", "deploy", "deploy_to", "namespace", "track", "tracked"]
