"""What Galaxy and Automation Hub show must agree with the code: the version, and the role's documented variables."""

import pathlib
import re

import yaml

from ansible_collections.stackify.retrace.plugins.module_utils.settings import VERSION

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "tracked_deployment"


def test_galaxy_yml_releases_the_version_the_code_reports():
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert galaxy["version"] == VERSION


def test_plugins_and_role_were_added_in_a_released_version_or_the_next_minor_one():
    plugins = ("plugins/modules/deployment.py", "plugins/modules/deployment_targets.py", "plugins/callback/deployment.py")
    added = [value for path in plugins for value in re.findall(r"^version_added: (\S+)$", (ROOT / path).read_text(), re.M)]
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    added.append(specs["argument_specs"]["main"]["version_added"])
    major, minor, _patch = (int(part) for part in VERSION.split("."))
    assert len(added) == 4
    assert all(tuple(int(part) for part in value.split(".")) <= (major, minor + 1, 0) for value in added), added


def _readme_variables() -> dict[str, tuple[str, str]]:
    """variable -> (type, required / default) from the README's table."""
    rows = {}
    for line in (ROLE / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_role_readme_documents_every_argument_spec_option_with_its_type_and_default():
    options = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    documented = _readme_variables()

    assert list(documented) == list(options)
    for name, spec in options.items():
        kind, default = documented[name]
        assert kind.split()[0] == spec["type"], name
        if spec.get("choices"):
            assert kind == f"{spec['type']} ({', '.join(f'`{choice}`' for choice in spec['choices'])})", name
        if spec.get("required"):
            assert default == "required", name
        elif "default" in spec:
            shown = str(spec["default"]).lower() if isinstance(spec["default"], bool) else str(spec["default"])
            assert f"`{shown}`" in default, name
        else:
            assert default != "required", name
