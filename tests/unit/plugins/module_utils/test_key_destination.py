"""Where the key may go (_resolve.key_destination_problem), the API URL in one spelling (settings.normalise_api_url),
and a 401 naming the setting the key came from."""

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import settings
from ansible_collections.stackify.retrace.plugins.module_utils._resolve import ENVIRONMENT, LAUNCH, PROJECT, VARIABLES, Source, resolve
from ansible_collections.stackify.retrace.plugins.module_utils.client import DeploymentClient
from ansible_collections.stackify.retrace.plugins.module_utils.deployment import Deployment
from ansible_collections.stackify.retrace.plugins.module_utils.errors import AuthenticationRejected, InvalidInput
from ansible_collections.stackify.retrace.plugins.module_utils.transport import Response

KEY = "unit-test-key-destination"


class Recorder:
    def __init__(self, status=202):
        self.status = status
        self.posts = []

    def post(self, url, body, headers, timeout):
        self.posts.append(url)
        return Response(self.status, {}, b'{"Message": "no"}')


# --- the rule (_resolve.key_destination_problem, from the sources' trust) ------------------------------------

def problem(url, url_trust, environ, key=None, key_file=None, key_trust=ENVIRONMENT):
    key_values = {name: value for name, value in (("api_key", key), ("api_key_file", key_file)) if value is not None}
    url_source = {LAUNCH: "extra vars", VARIABLES: "the play's variables", PROJECT: "ansible.cfg", ENVIRONMENT: "the environment"}
    sources = [Source(url_source[url_trust], {"api_url": url} if url else {}, url_trust),
               Source("the key's source", key_values, key_trust)]
    problems = [found for found in resolve(sources, environ=environ).problems if found.option == "api_url"]
    return problems[0] if problems else None


@pytest.mark.parametrize("key_trust", [ENVIRONMENT, VARIABLES, PROJECT], ids=["environment", "vault in group_vars", "ansible.cfg"])
@pytest.mark.parametrize("url_trust", [LAUNCH, VARIABLES], ids=["extra vars", "group_vars or a fact"])
def test_a_key_is_never_sent_to_a_url_variables_give(key_trust, url_trust):
    """Whoever launches the run reaches every variable (extra vars outrank them; vars, hostvars, set_fact read them)."""
    message = str(problem("https://evil.example", url_trust, {}, key=KEY, key_trust=key_trust))
    assert message.startswith("api_url: https://evil.example (from ") and "is refused: Ansible variables can be set by" in message
    assert "only sent to the URL from the environment (https://api.stackify.net)" in message
    assert "Set the URL beside the key: RETRACE_API_URL" in message


@pytest.mark.parametrize("given, url_trust, key_trust, environ", [
    ("https://evil.example", LAUNCH, LAUNCH, {}),  # the launcher's own key, as text, goes with the launcher's URL
    ("https://retrace.test", ENVIRONMENT, ENVIRONMENT, {"RETRACE_API_URL": "https://retrace.test"}),  # both from the environment
    ("https://other.example", PROJECT, ENVIRONMENT, {}),  # written in the project's own files (ansible.cfg, a literal argument)
    ("https://RETRACE.test:443/", LAUNCH, ENVIRONMENT, {"RETRACE_API_URL": "https://retrace.test"}),  # the same URL, spelled otherwise
    ("https://api.stackify.net/", VARIABLES, PROJECT, {}),  # the default, given again
    (None, LAUNCH, ENVIRONMENT, {}),
])
def test_what_the_rule_allows(given, url_trust, key_trust, environ):
    assert problem(given, url_trust, environ, key=KEY, key_trust=key_trust) is None


@pytest.mark.parametrize("key_file_trust", [LAUNCH, ENVIRONMENT, VARIABLES])
def test_a_key_file_is_the_controller_s_secret_whoever_names_it(tmp_path, key_file_trust):
    """-e retrace_api_key_file=<any file on the controller> with a URL of the launcher's would send that file away."""
    secret = tmp_path / "service-account-token"
    secret.write_text("not-a-retrace-key-but-a-secret")
    found = problem("https://evil.example", LAUNCH, {}, key_file=str(secret), key_trust=key_file_trust)
    assert str(found).startswith("api_url: https://evil.example (from extra vars) is refused")


# --- one spelling of the URL ----------------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    ("https://api.stackify.net", "https://api.stackify.net"),
    ("https://API.Stackify.NET/", "https://api.stackify.net"),
    ("HTTPS://api.stackify.net:443", "https://api.stackify.net"),
    ("https://api.stackify.net:8443/", "https://api.stackify.net:8443"),
    ("http://LOCALHOST:8080", "http://localhost:8080"),
    ("http://localhost:80/", "http://localhost"),
    ("http://[::1]:9000", "http://[::1]:9000"),
    ("https://host.example/Retrace/Path/", "https://host.example/Retrace/Path"),
])
def test_the_api_url_is_normalised(given, expected):
    assert settings.normalise_api_url(given) == expected
    assert settings.ApiSettings.create(api_key=KEY, api_url=given).api_url == expected


def test_an_invalid_port_is_refused():
    with pytest.raises(InvalidInput, match="^api_url: has an invalid port"):
        settings.normalise_api_url("https://host:99999")


# --- a 401 names the setting the key came from ------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("api_key", "check api_key / RETRACE_API_KEY holds your Stackify license key."),
    ("api_key_file", "check the file named by api_key_file / RETRACE_API_KEY_FILE holds your Stackify license key."),
])
def test_a_401_names_where_the_key_came_from(tmp_path, source, expected):
    path = tmp_path / "key"
    path.write_text(KEY)
    api = settings.ApiSettings.create(**({"api_key": KEY} if source == "api_key" else {"api_key_file": str(path)}))
    client = DeploymentClient(api, Recorder(401), entry_point="unit")
    with pytest.raises(AuthenticationRejected) as caught:
        client.start(Deployment.create(app_name="Shop", environment_name="Production", version="1"))
    assert str(caught.value).endswith(expected)
