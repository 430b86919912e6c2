"""The PyPI distribution: what the wheel and the sdist hold, their metadata and README, ``twine check --strict``, and
fresh venvs installing each of them."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import tarfile
import zipfile

import pytest

from fabric_distribution import REPO_ROOT, environment, fresh_venv

URL = "https://github.com/stackify/ansible-collection-retrace"
#: the core modules the wheel ships: what ``import retrace_fabric`` imports, and the public tracking wrapper
CORE = ["__init__", "_guard", "_ledger", "_redaction", "_resolve", "_run", "_source", "client", "deployment", "errors",
        "settings", "tracking", "transport"]


def _metadata(wheel) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_the_wheel_ships_the_fabric_package_its_core_and_the_command_only(distribution):
    with zipfile.ZipFile(distribution.wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(name for name in names if name.endswith("entry_points.txt"))).decode()

    assert sorted(name[len("retrace_fabric/core/"):-3] for name in names if name.startswith("retrace_fabric/core/")) == CORE
    assert "retrace_fabric/py.typed" in names and "retrace_fabric/command.py" in names
    assert all(name.startswith(("retrace_fabric/", "stackify_retrace_fabric-")) for name in names), names
    assert not [name for name in names if "ansible" in name.rsplit("/", 1)[-1] or name.endswith(".pyc")]
    assert "retrace-deploy = retrace_fabric.command:main" in entry_points


def test_the_sdist_holds_what_the_wheel_is_built_from_and_no_ansible_glue(distribution):
    with tarfile.open(distribution.sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]

    assert not [name for name in names if "_ansible_" in name or "__pycache__" in name]
    assert sorted(name.rsplit("/", 1)[1][:-3] for name in names if name.startswith("plugins/")) == sorted(set(CORE) - {"__init__"})
    assert {"pyproject.toml", "LICENSE", "docs/fabric.md", "retrace_fabric/py.typed"} <= set(names)


def test_the_metadata_is_what_a_pypi_user_expects(distribution):
    metadata = _metadata(distribution.wheel)
    readme = metadata.get_payload()

    assert metadata["Name"] == "stackify-retrace-fabric" and metadata["Requires-Python"] == ">=3.11"
    classifiers = metadata.get_all("Classifier")
    for classifier in ("Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.12",
                       "Programming Language :: Python :: 3.13", "Operating System :: POSIX", "Environment :: Console",
                       "Typing :: Typed"):
        assert classifier in classifiers
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert urls["Source"] == URL and urls["Issues"] == f"{URL}/issues" and urls["Changelog"] == f"{URL}/blob/main/CHANGELOG.rst"
    assert any(requirement.startswith("paramiko") for requirement in metadata.get_all("Requires-Dist"))
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "pip install stackify-retrace-fabric" in readme and "pip install /path" not in readme
    links = re.findall(r"\]\(([^)]*)\)", readme)
    assert links and [link for link in links if not link.startswith("https://")] == []
    assert [link for link in links if link.startswith("https://github.com/") and not link.startswith(f"{URL}/blob/main/")] == []


def test_twine_check_strict_passes(distribution):
    twine = shutil.which("twine", path=str(REPO_ROOT / ".venv" / "bin")) or shutil.which("twine")
    if twine is None:
        pytest.fail("twine is not installed: run scripts/bootstrap (requirements-dev.txt)")
    checked = subprocess.run([twine, "check", "--strict", str(distribution.wheel), str(distribution.sdist)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2


INSTALLED = "import retrace_fabric, retrace_fabric.command, sys; print(retrace_fabric.__file__); print(retrace_fabric.core.__path__[0])"


@pytest.mark.parametrize("which", ["wheel", "sdist"])
def test_a_fresh_venv_installs_it_and_imports_the_installed_copy(distribution, tmp_path, which):
    if which == "wheel":
        venv = distribution.venv
    else:  # built by pip from the sdist, with this environment's hatchling
        venv = fresh_venv(tmp_path / "sdist-venv", "--no-build-isolation", str(distribution.sdist))

    imported = subprocess.run([str(venv / "bin" / "python"), "-c", INSTALLED], capture_output=True, text=True, cwd=tmp_path,
                              env=environment(), timeout=60, check=False)
    version = subprocess.run([str(venv / "bin" / "retrace-deploy"), "--version"], capture_output=True, text=True, cwd=tmp_path,
                             env=environment(), timeout=60, check=False)

    assert imported.returncode == 0, imported.stderr
    site = next(venv.glob("lib/python*/site-packages"))
    assert imported.stdout.split() == [str(site / "retrace_fabric" / "__init__.py"), str(site / "retrace_fabric" / "core")]
    assert version.returncode == 0 and version.stdout.startswith("retrace-deploy "), version.stderr
