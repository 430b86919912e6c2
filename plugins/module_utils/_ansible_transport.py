# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action plugin's :class:`~.transport.Transport`: the core's own, under the name the plugin imports.

Not ``ansible.module_utils.urls.Request``: it can only switch urllib's proxy variables on or off, and it
builds its connections itself, so neither the core's proxy decision (:func:`~.transport.proxy_for`) nor an
attempt's total time (against a server sending one byte every half second) can be applied through it.  One
transport for every entry point is what makes one environment give one outcome.
"""

from __future__ import annotations

from .transport import UrllibTransport


class AnsibleUrlsTransport(UrllibTransport):
    """:class:`~.transport.UrllibTransport`: never follows redirects, never reads ``~/.netrc``."""
