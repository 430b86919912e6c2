"""Accounts of the emulated Retrace: which API keys exist and which apps and environments each one holds.

Since April 2023 Retrace only accepts deployments for an App and Environment that already exist in the
account, so the emulator needs to know them. API keys are never stored in anything the emulator shows:
the journal, the deployment list and the logs identify a key by `key_fingerprint` only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEMO_API_KEY = "emulator-demo-key"
DEMO_APP = "DemoApp"
DEMO_ENVIRONMENTS = ("Production", "Staging")

# In an account spec, "*" in place of the app or environment list accepts any name.
ANY_NAME = "*"
ACCOUNT_SPEC_HELP = "KEY=App1,App2:Env1,Env2 (use * for any app or environment)"


@dataclass(frozen=True)
class Account:
    """The apps and environments that exist in one Retrace account."""

    apps: frozenset[str] = frozenset()
    environments: frozenset[str] = frozenset()
    allow_any_app: bool = False

    @classmethod
    def of(cls, apps: Iterable[str] = (), environments: Iterable[str] = (), allow_any_app: bool = False) -> Account:
        return cls(frozenset(apps), frozenset(environments), allow_any_app)

    def knows(self, app: str, environment: str) -> bool:
        """True when the app and the environment both exist in this account."""
        if self.allow_any_app:
            return True
        app_known = ANY_NAME in self.apps or app in self.apps
        environment_known = ANY_NAME in self.environments or environment in self.environments
        return app_known and environment_known

    def describe(self) -> dict:
        """A JSON-ready description, for the control endpoints."""
        return {
            "apps": sorted(self.apps),
            "environments": sorted(self.environments),
            "allow_any_app": self.allow_any_app,
        }


def key_fingerprint(api_key: str) -> str:
    """Identify a key in journals and logs without revealing it: first 8 hex digits of its SHA-256."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:8]


def demo_accounts() -> dict[str, Account]:
    """The account used when none is configured, so the emulator works out of the box."""
    return {DEMO_API_KEY: Account.of([DEMO_APP], DEMO_ENVIRONMENTS)}


def parse_account_spec(spec: str) -> tuple[str, Account]:
    """Parse ``KEY=App1,App2:Env1,Env2``; a bare ``KEY`` accepts any app and environment.

    Error messages never repeat the spec: it contains the key.
    """
    key, separator, names = spec.partition("=")
    key = key.strip()
    if not key:
        raise ValueError(f"account spec has no API key; expected {ACCOUNT_SPEC_HELP}")
    if not separator:
        return key, Account.of(allow_any_app=True)
    apps, colon, environments = names.partition(":")
    if not colon:
        raise ValueError(f"account spec has no ':' between apps and environments; expected {ACCOUNT_SPEC_HELP}")
    account = Account.of(_split_names(apps), _split_names(environments))
    if not account.apps or not account.environments:
        raise ValueError(f"account spec lists no app or no environment; expected {ACCOUNT_SPEC_HELP}")
    return key, account


def parse_account_specs(specs: Iterable[str]) -> dict[str, Account]:
    """Parse several account specs; the last one wins for a repeated key."""
    return dict(parse_account_spec(spec) for spec in specs if spec.strip())


def split_env_specs(value: str) -> list[str]:
    """Split the RETRACE_EMULATOR_ACCOUNTS variable: specs separated by ';' or new lines.

    Not by spaces: app and environment names may contain them.
    """
    return [spec.strip() for line in value.splitlines() for spec in line.split(";") if spec.strip()]


def normalize_accounts(accounts: Mapping[str, Account | Mapping] | None) -> dict[str, Account]:
    """Accept Account objects or plain mappings ``{"apps": [...], "environments": [...]}`` per key."""
    if accounts is None:
        return demo_accounts()
    return {key: _to_account(value) for key, value in accounts.items()}


def _to_account(value: Account | Mapping) -> Account:
    if isinstance(value, Account):
        return value
    if isinstance(value, Mapping):
        return Account.of(value.get("apps", ()), value.get("environments", ()), bool(value.get("allow_any_app", False)))
    raise TypeError(f"an account must be an Account or a mapping with 'apps' and 'environments', not {type(value).__name__}")


def _split_names(names: str) -> list[str]:
    return [name.strip() for name in names.split(",") if name.strip()]
