"""docs/awx.md's awx.awx.credential_type task has exactly the shipped type's inputs and injectors: AWX refuses changed
inputs on a credential type in use (CredentialTypeSerializer.validate), so a copy that differs breaks upgrades."""

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def test_the_guides_credential_type_task_is_the_shipped_file():
    shipped = yaml.safe_load((ROOT / "extensions" / "awx" / "credential_type.yml").read_text())
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "awx.md").read_text(), re.S)
    task = next(item for block in blocks for item in (yaml.load(block, Loader=_Loader) or [])
                if isinstance(item, dict) and "awx.awx.credential_type" in item)["awx.awx.credential_type"]
    assert task["inputs"] == shipped["inputs"]
    assert task["injectors"] == shipped["injectors"]
    assert (task["name"], task["kind"], task["description"]) == (shipped["name"], shipped["kind"], shipped["description"])
