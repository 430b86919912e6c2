# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep the API key out of ``fab -d`` output.

Invoke's debug log prints whole config layers (``{'retrace': {'api_key': '...'}}``) as it
loads fabric.yaml and ``FABRIC_*`` variables.  A filter on its loggers redacts ``api_key``
values and any key found in the environment.  It is installed when this package is imported,
i.e. when the fabfile loads: ``~/.fabric.yaml`` and ``/etc/fabric.yaml`` are read (and logged)
before that, which is one more reason to keep the key in ``RETRACE_API_KEY``.
"""

from __future__ import annotations

import logging
import os
import re

from .core._redaction import REDACTED, redact
from .settings import KEY_VARIABLES

LOGGERS = ("invoke", "fabric", "paramiko")
_API_KEY_ITEM = re.compile(r"""(['"]?api_key['"]?\s*[:=]\s*)(['"])(?:(?!\2).)*\2""")


class ApiKeyFilter(logging.Filter):
    def __init__(self, secrets):
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(_API_KEY_ITEM.sub(rf"\1'{REDACTED}'", message), *self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install(environ=None) -> None:
    environ = os.environ if environ is None else environ
    key_filter = ApiKeyFilter(environ.get(name) for name in KEY_VARIABLES)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [existing for existing in logger.filters if isinstance(existing, ApiKeyFilter)]:
            logger.removeFilter(old)
        logger.addFilter(key_filter)
