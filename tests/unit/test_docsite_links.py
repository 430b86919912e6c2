"""The docs site (antsibull-docs: docs/docsite/links.yml) and the README link every guide and community file."""

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASE = "https://github.com/stackify/ansible-collection-retrace/blob/main/"
#: linked wherever they exist; written by other changes, so only the existing ones are required here
COMMUNITY_FILES = ("CHANGELOG.rst", "CONTRIBUTING.md", "SECURITY.md", "CODE_OF_CONDUCT.md")


def site_links() -> list:
    links = yaml.safe_load((ROOT / "docs" / "docsite" / "links.yml").read_text(encoding="utf-8"))["extra_links"]
    return [link["url"] for link in links]


def documents() -> set:
    guides = {f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")}
    return guides | {name for name in COMMUNITY_FILES if (ROOT / name).exists()}


def test_docs_site_links_every_guide_and_community_file():
    linked = {url.removeprefix(BASE) for url in site_links()}
    assert documents() <= linked, f"not linked from docs/docsite/links.yml: {sorted(documents() - linked)}"


def test_docs_site_links_lead_to_files_of_the_repository():
    for url in site_links():
        assert url.startswith(BASE), url
        assert (ROOT / url.removeprefix(BASE)).is_file(), f"docs/docsite/links.yml links a missing file: {url}"


def test_readme_links_every_guide_and_community_file():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme))
    assert documents() <= linked, f"not linked from README.md: {sorted(documents() - linked)}"


def test_docs_site_quick_start_shows_the_readme_quick_start():
    """docs/docsite/rst/quick_start.rst (the site's page) holds every code block of the README's quick start, as the
    README has it: the README's blocks are the ones tests/integration/test_readme_quickstart.py runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme[readme.index("## Install"):readme.index("## Try it without a Retrace account")]
    page = (ROOT / "docs" / "docsite" / "rst" / "quick_start.rst").read_text(encoding="utf-8")
    blocks = re.findall(r"```\w+\n(.*?)```", quick_start, re.S)
    assert len(blocks) >= 10
    for block in blocks:
        indented = "".join(f"    {line}\n" if line.strip() else "\n" for line in block.rstrip("\n").split("\n"))
        assert indented in page, f"docs/docsite/rst/quick_start.rst lacks the README's block:\n{block}"
    extra_docs = yaml.safe_load((ROOT / "docs" / "docsite" / "extra-docs.yml").read_text(encoding="utf-8"))
    assert "quick_start" in [entry for section in extra_docs["sections"] for entry in section["toctree"]]
