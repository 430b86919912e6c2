# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared option documentation of stackify.retrace: one text for every plugin that takes these options.

- ``stackify.retrace.api``: where and how to reach Retrace (key, URL, TLS, proxy, time limits).
- ``stackify.retrace.api.deployment``: which deployment a call is about.
- ``stackify.retrace.api.lifecycle``: strict, stale_start and orphan_guard, how a tracked run treats Retrace.
- ``stackify.retrace.api.plugin_environment``: the environment variables of each option, for
  plugins whose options Ansible's configuration system reads (callbacks, lookups).  Modules
  describe their environment fallbacks in prose instead (modules have no ``env:``).
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  api_key:
    description:
      - Your Stackify license key (the Retrace API key), sent in the C(Authorization) header.
      - When not set, the E(RETRACE_API_KEY) environment variable is used, then E(STACKIFY_API_KEY).
      - Keep it in Ansible Vault or the environment; it is never printed, logged or returned.
      - Set this or O(api_key_file), not both (counting the environment variables of each).
    type: str
  api_key_file:
    description:
      - Path of a file on the controller that holds the API key (UTF-8; surrounding whitespace and newlines are
        stripped). Use it instead of O(api_key) to keep the key out of the environment, for example with the AWX
        credential type (C(extensions/awx/credential_type.yml)), whose file injector writes such a file for each job.
      - When not set, the E(RETRACE_API_KEY_FILE) environment variable is used.
      - A missing, unreadable or empty file, or one that is not a regular file, is an error naming the path,
        before anything is sent.
      - Setting both O(api_key) and O(api_key_file) is an error, whether each comes from an option or from its
        environment variables (E(RETRACE_API_KEY) or E(STACKIFY_API_KEY), E(RETRACE_API_KEY_FILE)).
    type: path
  api_url:
    description:
      - Base URL of the Retrace API. A trailing V(/) is ignored.
      - When not set, the E(RETRACE_API_URL) environment variable is used.
      - Plain V(http://) is refused except for loopback hosts (a local emulator), so the key never
        travels unencrypted.
      - The scheme and host are lower-cased and a default port (V(:443), V(:80)) dropped, so that one API has
        one spelling (in requests, messages and the orphan guard's identity).
      - The key (from the environment, as an AWX credential injects it, from a key file, or kept in Vault) is sent to
        the URL from the environment (E(RETRACE_API_URL), else the default), or to one the project's files write
        literally - a task's literal O(api_url) argument or C(module_defaults) entry, the callback's C(ansible.cfg).
        An O(api_url) that Ansible variables give (extra vars, a survey, C(group_vars), play vars, facts, a templated
        argument or C(module_defaults) entry) and that names another API never gets the key - whoever launches the
        run can reach every variable; nothing is recorded and one warning says to set the URL beside the key. Only a
        key given as text by extra vars goes with their URL.
    type: str
    default: https://api.stackify.net
  validate_certs:
    description:
      - Verify the TLS certificate of O(api_url). Set to V(false) only for testing.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file (or hashed directory) of CA certificates to verify O(api_url) with, instead of the system store.
      - When not set, the first of E(REQUESTS_CA_BUNDLE), E(CURL_CA_BUNDLE), E(SSL_CERT_FILE) and E(SSL_CERT_DIR)
        that is set is used, on every entry point alike (the callback, the module, the role and Fabric), so a
        corporate CA reaches all of them the same way; else the system store.
    type: path
  use_proxy:
    description:
      - Reach an C(https://) O(api_url) through the proxy E(https_proxy) names (E(HTTPS_PROXY) when the lower-case
        variable is not set at all; set but empty means no proxy), except for hosts listed in E(no_proxy) (the same
        rule), which may name hosts, domain suffixes, IP addresses and CIDR networks (V(127.0.0.0/8)), each optionally
        with a port. E(ALL_PROXY) is not honoured; only C(http://) proxies are supported.
      - A plain C(http://) O(api_url) (loopback hosts only) is never reached through a proxy, which would read the key.
      - The same rule applies on every entry point (the callback, the module, the role and Fabric).
    type: bool
    default: true
  timeout:
    description:
      - Seconds one attempt may take in all, from connecting (through the proxy) and the TLS handshake to the last
        byte of the answer, name resolution included. No whole status line by then counts as no answer; headers or a
        body still arriving are cut there, the status being the answer.
    type: float
    default: 10
  deadline:
    description:
      - Seconds all attempts of one call may take together. Overloaded or unreachable servers
        (HTTP 429, 5xx, timeouts, refused connections) are retried with backoff, honouring
        C(Retry-After), until this deadline.
    type: float
    default: 30
"""

    DEPLOYMENT = r"""
options:
  app_name:
    description:
      - Name of the application, exactly as it exists in Retrace (Retrace only accepts known apps).
      - Required. When not set, the E(RETRACE_APP_NAME) environment variable is used.
    type: str
  environment_name:
    description:
      - Name of the Retrace environment, for example V(Production); it must exist in Retrace.
      - Required. When not set, the E(RETRACE_ENVIRONMENT_NAME) environment variable is used.
    type: str
  version:
    description:
      - Version being deployed. With O(app_name) and O(environment_name) it identifies the
        deployment, so start and complete/cancel must use the same three values.
      - When not set, the E(RETRACE_VERSION) environment variable is used, else it is detected - an AWX job's
        project revision, a tag the CI system built, C(git describe --tags --always --dirty) of the playbook's
        directory, an AWX job's id. When none gives one, nothing is recorded and one warning says how to set it;
        when git refuses the checkout ("dubious ownership"), the warning gives the C(safe.directory) command.
      - Quote numeric versions in YAML (V("1.10"), not V(1.10), which YAML reads as 1.1).
    type: str
  name:
    description:
      - Display name of the deployment in Retrace; defaults to O(version) on Retrace's side.
      - This and O(app_name), O(environment_name), O(version), O(branch), O(commit), O(uri) may not hold C({{) or
        C({%), an unrendered Jinja expression (the callback does not template its settings); such a value is
        refused before anything is sent.
      - When not set, the E(RETRACE_DEPLOYMENT_NAME) environment variable is used.
      - Not sent on cancel.
    type: str
  name_format:
    description:
      - Builds O(name) when O(name) is not set, for example V({version} by {user} ({job_template})). Off by default,
        so the name Retrace shows stays the version.
      - "Placeholders: C({version}), C({app_name}), C({environment_name}), C({branch}), C({commit}), and in an AWX /
        Automation Platform job C({user}) (the launching user, or C(schedule <name>)), C({job_template}), C({job_id})
        and C({workflow}); a value that is not known renders as nothing. Python format specs apply
        (C({commit:.7}) is the first 7 characters); write literal braces as C({{) and C(}})."
      - Any other placeholder is refused before anything is sent.
      - A rendered name longer than 255 characters (a long job template name) is cut to 255, ending with an
        ellipsis; an explicit O(name) that long is refused.
      - When not set, the E(RETRACE_NAME_FORMAT) environment variable is used.
      - Not sent on cancel.
    type: str
  branch:
    description:
      - Source branch deployed. When not set, the E(RETRACE_BRANCH) environment variable is used.
      - Not sent on cancel.
    type: str
  commit:
    description:
      - Commit deployed. When not set, the E(RETRACE_COMMIT) environment variable is used.
      - Not sent on cancel.
    type: str
  uri:
    description:
      - Absolute V(http://) or V(https://) link shown with the deployment (a build, a release page).
      - When not set, the E(RETRACE_URI) environment variable is used.
      - Not sent on cancel.
    type: str
"""

    LIFECYCLE = r"""
options:
  strict:
    description:
      - What a tracking problem does to the run. A setting that is missing or invalid (no API key, no version), or
        a start or end that Retrace refuses or cannot receive (unreachable, deadline passed, HTTP 401/400/409),
        is, with V(false), one warning line saying what was NOT recorded and how to fix it, and the deployment goes
        on; with V(true) it fails the run, before any deployment step when it is the start.
      - A value that is not a boolean (V(ture)) counts as V(true), and is named. A misspelt setting (C(stirct)) is
        never a failure; one warning names it, with the setting it is close to.
      - When not set, the E(RETRACE_STRICT) environment variable is used.
      - The same setting is C(retrace_strict) for the callback and the role and C(retrace.strict) for Fabric.
    type: bool
    default: false
  stale_start:
    description:
      - What to do when Retrace answers a start with HTTP 409 because the same deployment (app, environment,
        version) is already in progress.
      - V(recover) (default) - if no live run on this machine holds that deployment, the run that started it
        died beyond any orphan guard (its container or machine was lost), so cancel it and start again, once,
        with one warning line. A live run on this machine is never cancelled. Runs on other machines cannot
        be seen, so give parallel parts of one release (job slices, a CI matrix) their own version or
        environment, or use V(fail).
      - V(fail) - the 409 is a tracking failure like any other (see O(strict)).
      - When not set, the E(RETRACE_STALE_START) environment variable is used.
    type: str
    choices: [recover, fail]
    default: recover
  orphan_guard:
    description:
      - Start a small watcher process that sends cancel if the process that started the deployment dies without
        ending it (SIGKILL of the job by AWX or ansible-runner, the OOM killer, a crash, SIGHUP). It runs in its
        own session, holds no terminal, keeps the key in memory only, and sends nothing when the run ends the
        deployment itself. One watcher covers every deployment a run starts with the same API key and URL.
      - When not set, the E(RETRACE_ORPHAN_GUARD) environment variable is used.
    type: bool
    default: true
"""

    PLUGIN_ENVIRONMENT = r"""
options:
  api_key:
    env:
      - name: RETRACE_API_KEY
      - name: STACKIFY_API_KEY
  api_key_file:
    env:
      - name: RETRACE_API_KEY_FILE
  api_url:
    env:
      - name: RETRACE_API_URL
  app_name:
    env:
      - name: RETRACE_APP_NAME
  environment_name:
    env:
      - name: RETRACE_ENVIRONMENT_NAME
  version:
    env:
      - name: RETRACE_VERSION
  name:
    env:
      - name: RETRACE_DEPLOYMENT_NAME
  name_format:
    env:
      - name: RETRACE_NAME_FORMAT
  branch:
    env:
      - name: RETRACE_BRANCH
  commit:
    env:
      - name: RETRACE_COMMIT
  uri:
    env:
      - name: RETRACE_URI
  strict:
    env:
      - name: RETRACE_STRICT
  stale_start:
    env:
      - name: RETRACE_STALE_START
  orphan_guard:
    env:
      - name: RETRACE_ORPHAN_GUARD
"""
