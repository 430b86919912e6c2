"""The repository and the collection built from it stand on their own: no file points at a path outside the
checkout (the API contract lives in docs/retrace-api.md), and every relative link of a shipped page reaches a
file that ships too."""

import pathlib
import posixpath
import re
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: released history: what it says of earlier layouts stays as it was released
HISTORY = ("CHANGELOG.rst", "changelogs/changelog.yaml")
#: a path of the form ``../<dir>/<file>``: where it is written, it must resolve inside the checkout
UPWARD_PATH = re.compile(r"(?<![\w./])((?:\.\./)+[\w-]+(?:/[\w.-]+)+)")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
#: the name the contract had outside the repository (spelt in two parts, so that this file does not name it)
OLD_CONTRACT = "RETRACE_API" + ".md"


def _tracked_text_files():
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True)
    names = listed.stdout.decode().split("\0")
    for name in filter(None, names):
        path = ROOT / name
        if name in HISTORY or not path.is_file():
            continue
        try:
            yield name, path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images and other binary files


def test_no_file_refers_to_the_api_contract_outside_the_repository():
    offenders = [name for name, text in _tracked_text_files() if OLD_CONTRACT in text]
    assert not offenders, f"the API contract is docs/retrace-api.md: {offenders}"
    assert (ROOT / "docs" / "retrace-api.md").is_file()


def test_every_upward_relative_path_stays_inside_the_repository():
    outside = []
    for name, text in _tracked_text_files():
        for found in UPWARD_PATH.findall(text):
            target = (ROOT / name).parent / found
            if not target.resolve().is_relative_to(ROOT) or not target.exists():
                outside.append(f"{name}: {found}")
    assert not outside


@pytest.fixture(scope="module", name="built")
def fixture_built(tmp_path_factory):
    """The names in the tarball ``ansible-galaxy collection build`` makes of this checkout (galaxy.yml's build_ignore)."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "ansible.cli.galaxy", "collection", "build", "--output-path", str(dist), str(ROOT)],
                   capture_output=True, check=True, timeout=120)
    [tarball] = dist.glob("stackify-retrace-*.tar.gz")
    with tarfile.open(tarball) as archive:
        return {member.name.rstrip("/") for member in archive.getmembers()}


def test_the_api_contract_ships_in_the_collection(built):
    assert {"docs/retrace-api.md", "SECURITY.md", "CODE_OF_CONDUCT.md"} <= built


def test_every_relative_link_of_a_shipped_page_reaches_a_shipped_file(built):
    broken = []
    for name in sorted(member for member in built if member.endswith(".md")):
        for link in MARKDOWN_LINK.findall((ROOT / name).read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", link) or link.startswith("#"):
                continue  # a URL, or a place on the same page
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), link.split("#")[0]))
            if target not in built:
                broken.append(f"{name}: {link}")
    assert not broken
