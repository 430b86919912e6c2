# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core's :class:`~.transport.Transport` over ``ansible.module_utils.urls``.

Status codes, retries and errors stay in the core client; this class only moves bytes.  Which CA
certificates are trusted and whether the proxy is bypassed are decided by the core
(:func:`~.transport.tls_context`, :func:`~.transport.proxy_for`), exactly as for the callback and
Fabric: one environment, one outcome on every entry point.
"""

from __future__ import annotations

import ssl

from ansible.module_utils.urls import Request

from .transport import exchange, proxy_for, tls_context


class AnsibleUrlsTransport:
    """POST through ``ansible.module_utils.urls.Request``; never follows redirects, never reads ~/.netrc."""

    def __init__(self, validate_certs=True, ca_path=None, use_proxy=True, environ=None):
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.use_proxy = use_proxy
        self.environ = environ
        self._tls_context = None
        # Redirects could carry the Authorization header elsewhere, and a ~/.netrc entry for the
        # host would replace it: both are refused.
        self._request = Request(use_proxy=use_proxy, follow_redirects="none", use_netrc=False)

    def post(self, url, body, headers, timeout):
        # urls.Request can only switch urllib's environment proxies on or off.  The core's bypass
        # rules include urllib's, so "on" reaches the same proxy; "off" covers what urllib misses
        # (CIDR entries in no_proxy).
        use_proxy = self.use_proxy and proxy_for(url, self.environ) is not None
        return exchange(lambda: self._request.open("POST", url, data=body, headers=dict(headers), timeout=timeout,
                                                   use_proxy=use_proxy, context=self._context_for(url)))

    def _context_for(self, url):
        # Request.open builds a TLS context (and scans the system CA directories) on every call
        # unless given one: ~30 ms per task.  Plain http (loopback only) needs no real context.
        if not url.lower().startswith("https:"):
            return _PLAIN_HTTP_CONTEXT
        if self._tls_context is None:
            self._tls_context = tls_context(self.validate_certs, self.ca_path, self.environ)
        return self._tls_context


# Never used for a handshake: only https URLs get a real context.
_PLAIN_HTTP_CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
