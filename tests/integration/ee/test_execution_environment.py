"""An execution environment that installs stackify.retrace gets what the collection declares.

ansible-builder reads a collection's ``meta/execution-environment.yml`` (here: ``bindep.txt``, which names
``git``) from the collection as the image's galaxy stage installed it, and its final stage installs those
system packages. No container engine runs here: ``ansible-builder create`` writes the build context, and each
step of the generated Containerfile that decides what the image gets is replayed on this machine — the galaxy
stage's ``ansible-galaxy collection install`` and the builder stage's introspection — against the collection
tarball ``ansible-galaxy collection build`` makes from this checkout.
"""

import pathlib
import shlex
import subprocess
import sys

import pytest
import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent
# bindep.txt's line, as ansible-builder's introspection annotates it with the collection it came from.
GIT_REQUIREMENT = "git [platform:rpm platform:dpkg]  # from collection stackify.retrace"


def _run(command, cwd, **env):
    environ = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd), "ANSIBLE_NOCOLOR": "1", **env}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{shlex.join(map(str, command))} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("ee")


@pytest.fixture(scope="module")
def tarball(workdir):
    dist = workdir / "dist"
    _run([BIN / "ansible-galaxy", "collection", "build", "--output-path", dist, REPO_ROOT], workdir)
    (built,) = dist.glob("stackify-retrace-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def context(workdir, tarball):
    """The build context of an EE whose galaxy requirements install the collection tarball."""
    definition = {
        "version": 3,
        # Never pulled: nothing is built here.
        "images": {"base_image": {"name": "registry.example.com/ee-minimal:latest"}},
        "dependencies": {"galaxy": {"collections": [{"name": f"collections/{tarball.name}", "type": "file"}]}},
        # Copied to _build/collections/, which the galaxy stage's WORKDIR (/build) holds.
        "additional_build_files": [{"src": str(tarball), "dest": "collections"}],
    }
    ee_file = workdir / "execution-environment.yml"
    ee_file.write_text(yaml.safe_dump(definition, sort_keys=False))
    # --output-filename: the same file name whether or not podman is on this machine's PATH.
    _run([BIN / "ansible-builder", "create", "--file", ee_file, "--context", workdir / "context",
          "--output-filename", "Containerfile"], workdir)
    return workdir / "context"


@pytest.fixture(scope="module")
def containerfile(context):
    return (context / "Containerfile").read_text()


@pytest.fixture(scope="module")
def installed(workdir, context, containerfile):
    """The collections path the galaxy stage fills, made by running that stage's install command here."""
    (install,) = [line for line in containerfile.splitlines()
                  if line.startswith("RUN ") and "ansible-galaxy collection install" in line]
    words = shlex.split(install[len("RUN "):])
    environ = {}
    while "=" in words[0]:  # leading VAR=value assignments
        name, value = words.pop(0).split("=", 1)
        environ[name] = value
    words = [word for word in words if not word.startswith("$")]  # empty build args
    assert words[words.index("--collections-path") + 1] == "/usr/share/ansible/collections"
    collections = workdir / "usr-share-ansible-collections"
    words[words.index("--collections-path") + 1] = str(collections)
    assert words[0] == "ansible-galaxy"
    # The stage runs in WORKDIR /build, which holds the context's _build/.
    _run([BIN / "ansible-galaxy", *words[1:]], context / "_build", ANSIBLE_COLLECTIONS_PATH=str(collections),
         **environ)
    return collections


def test_the_tarball_carries_the_ee_metadata(tarball):
    listing = subprocess.run(["tar", "-tzf", str(tarball)], capture_output=True, text=True, check=True).stdout.split()
    assert "meta/execution-environment.yml" in listing
    assert "bindep.txt" in listing


def test_create_writes_a_context_that_installs_the_collection_and_its_system_packages(context, containerfile, tarball):
    assert (context / "_build" / "collections" / tarball.name).read_bytes() == tarball.read_bytes()
    assert yaml.safe_load((context / "_build" / "requirements.yml").read_text()) == {
        "collections": [{"name": f"collections/{tarball.name}", "type": "file"}]}
    for script in ("introspect.py", "assemble", "install-from-bindep"):
        assert (context / "_build" / "scripts" / script).is_file(), script
    # The collection declares no Python requirements and the definition none of its own.
    assert not (context / "_build" / "requirements.txt").exists()
    assert not (context / "_build" / "bindep.txt").exists()
    steps = containerfile.splitlines()
    assert "COPY _build /build" in steps
    assert "RUN /output/scripts/install-from-bindep && rm -rf /output/wheels" in steps
    assert any(step.startswith("RUN $PYCMD /output/scripts/introspect.py introspect") for step in steps)


def test_the_galaxy_stage_installs_the_collection_with_its_ee_metadata(installed):
    root = installed / "ansible_collections" / "stackify" / "retrace"
    assert (root / "MANIFEST.json").is_file()
    metadata = yaml.safe_load((root / "meta" / "execution-environment.yml").read_text())
    assert metadata == {"version": 1, "dependencies": {"system": "bindep.txt"}}
    assert "git" in [line.split()[0] for line in (root / "bindep.txt").read_text().splitlines()
                     if line.strip() and not line.startswith("#")]


def test_introspection_attributes_git_to_the_collection(workdir, installed):
    output = _run([BIN / "ansible-builder", "introspect", "--sanitize", installed], workdir)
    assert yaml.safe_load(output) == {"python": [], "system": [GIT_REQUIREMENT]}


def test_the_builder_stage_hands_git_to_the_final_stage(workdir, context, installed):
    """The builder stage's introspect.py writes the bindep file install-from-bindep reads in the final stage."""
    out = workdir / "builder-output"
    _run([sys.executable, context / "_build" / "scripts" / "introspect.py", "introspect", installed,
          f"--write-bindep={out / 'bindep.txt'}", f"--write-pip={out / 'requirements.txt'}"], workdir)
    assert (out / "bindep.txt").read_text().splitlines() == [GIT_REQUIREMENT]
    assert not (out / "requirements.txt").exists()  # no Python requirements: nothing for pip
