"""Make the collection importable as ``ansible_collections.stackify.retrace`` for every test.

ansible-test needs a real ``ansible_collections/stackify/retrace`` path; plain pytest is happy
with a symlink to the checkout, made once under ``build/`` (ignored by git and galaxy).
"""

import os
import pathlib
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
COLLECTIONS_ROOT = REPO_ROOT / "build" / "pytest-collections"


def _link_collection() -> None:
    namespace = COLLECTIONS_ROOT / "ansible_collections" / "stackify"
    namespace.mkdir(parents=True, exist_ok=True)
    link = namespace / "retrace"
    if not link.exists():
        try:
            link.symlink_to(REPO_ROOT, target_is_directory=True)
        except FileExistsError:  # another pytest worker made it first
            pass


_link_collection()
# The checkout itself may live under an ansible_collections tree (ansible-test's copy): then use that.
if REPO_ROOT.parent.parent.name != "ansible_collections":
    sys.path.insert(0, str(COLLECTIONS_ROOT))
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(COLLECTIONS_ROOT))
else:
    sys.path.insert(0, str(REPO_ROOT.parent.parent.parent))
sys.path.insert(0, str(REPO_ROOT))

pytest_plugins = ["retrace_emulator.pytest_plugin"]
