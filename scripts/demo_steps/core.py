"""Demo step: the shared core used directly from Python, as any script could."""

import pathlib

from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
from ansible_collections.stackify.retrace.plugins.module_utils.errors import RetraceError
from ansible_collections.stackify.retrace.plugins.module_utils.tracking import tracked_deployment
from ansible_collections.stackify.retrace.plugins.module_utils.transport import UrllibTransport


class DeployFailed(Exception):
    """The pretend deployment step failing, to show the cancel path."""


def run(emulator_url: str, api_key: str, workdir: pathlib.Path) -> list[str]:
    lines = []
    for version, fails in (("1.0.0", False), ("1.0.1", True)):
        client, deployment = create_client({"api_key": api_key, "api_url": emulator_url, "app_name": "DemoApp",
                                            "environment_name": "Staging", "version": version, "branch": "main",
                                            "uri": "https://ci.example.com/builds/42"}, UrllibTransport(), entry_point="demo")
        try:
            with tracked_deployment(client, deployment):
                if fails:
                    raise DeployFailed("migrations failed")
            lines.append(f"core: version {version} deployed -> start + complete")
        except DeployFailed as error:
            lines.append(f"core: version {version} failed ({error}) -> start + cancel")
    try:
        create_client({"api_key": api_key, "app_name": "DemoApp", "environment_name": "Staging", "version": "1.0.2",
                       "uri": "not a url"}, UrllibTransport(), entry_point="demo")
    except RetraceError as error:
        lines.append(f"core: bad input refused before sending: {error}")
    return lines
