"""Make this checkout importable and discoverable as the collection ``stackify.retrace``.

Ansible finds collections under ``<path>/ansible_collections/<namespace>/<name>``; a checkout is
not laid out that way, so scripts link it into ``build/collections`` (ignored by git and galaxy).
"""

import os
import pathlib
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
COLLECTIONS_ROOT = REPO_ROOT / "build" / "collections"


def use_checkout_as_collection() -> pathlib.Path:
    """Link the checkout, put it on sys.path and ANSIBLE_COLLECTIONS_PATH; return the collections root."""
    link = COLLECTIONS_ROOT / "ansible_collections" / "stackify" / "retrace"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(REPO_ROOT, target_is_directory=True)
    for path in (str(REPO_ROOT), str(COLLECTIONS_ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS_ROOT)
    return COLLECTIONS_ROOT
