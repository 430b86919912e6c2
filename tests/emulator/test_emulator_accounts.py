"""Account specs as given on the command line or in RETRACE_EMULATOR_ACCOUNTS."""

import pytest

from retrace_emulator import Account, key_fingerprint, parse_account_spec
from retrace_emulator.accounts import normalize_accounts, split_env_specs


def test_spec_with_apps_and_environments():
    key, account = parse_account_spec(" k1 = Shop, My App : Prod,Staging ")
    assert key == "k1"
    assert account == Account.of(["Shop", "My App"], ["Prod", "Staging"])
    assert account.knows("My App", "Staging") and not account.knows("Shop", "QA")


def test_bare_key_and_wildcards_accept_any_name():
    assert parse_account_spec("k2")[1].knows("A", "B")
    assert parse_account_spec("k3=*:Prod")[1].knows("Anything", "Prod")
    assert not parse_account_spec("k3=*:Prod")[1].knows("Anything", "QA")


@pytest.mark.parametrize("spec", ["=App:Env", "secret-k=AppsOnly", "secret-k=:Env", "secret-k=App:"])
def test_bad_specs_are_refused_without_repeating_them(spec):
    with pytest.raises(ValueError) as error:
        parse_account_spec(spec)
    assert "secret-k" not in str(error.value)


def test_env_specs_split_on_semicolons_and_lines_not_spaces():
    assert split_env_specs("a=My App:Prod; b=X:Y\nc") == ["a=My App:Prod", "b=X:Y", "c"]


def test_accounts_from_mappings_and_default_demo():
    assert normalize_accounts({"k": {"apps": ["A"], "environments": ["E"]}})["k"].knows("A", "E")
    assert list(normalize_accounts(None)) == ["emulator-demo-key"]
    with pytest.raises(TypeError):
        normalize_accounts({"k": ["A"]})


def test_fingerprint_is_short_and_stable():
    assert key_fingerprint("abc") == "ba7816bf"
