# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deploy with Fabric and record each deployment in Stackify Retrace (docs/fabric.md).

    fab -H web1,web2 deploy --version 1.4.2     # retrace.steps on every host, one tracked deployment
    fab retrace.start --version 1.4.2           # single calls, for any CI system
    fab -l                                      # every task;  fab --help deploy: every flag

Settings live in the ``retrace:`` section of fabric.yaml beside this file (see fabric.yaml.example);
the API key comes from RETRACE_API_KEY, never from a flag.  Exit codes: 0 done (a tracking problem is
one WARNING unless retrace.strict), 1 failed, 2 nothing to deploy (steps, hosts) or, with strict, a
tracking setting missing or invalid; 130/143/129 SIGINT/SIGTERM/SIGHUP.
"""

import retrace_fabric

ns = retrace_fabric.collection()
