"""The node pack is ready for the ComfyUI registry: comfy-cli's own ``comfy node validate`` and
``comfy node pack`` pass offline, and our checks cover what comfy-cli leaves lenient (the name rules,
an X.Y.Z version, the license form, the publisher ID and repository URL of the registry's spec).

comfy-cli runs on a copy of the repository's git-tracked files (in their working-tree state) in a
fresh git repository, with its own home folder, telemetry and update checks off, standard input
closed (so any prompt would fail) and every network connection refused by an audit hook.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
import tomlkit
from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

from conftest import REPO

#: What the archive must leave out (README "Publishing the node pack"; .comfyignore).
DEVELOPMENT_ONLY = ("tests/", "benchmarks/", ".ci/")
NO_NETWORK = '''
import os, sys

def _refuse(event, args):
    if event in ("socket.connect", "socket.getaddrinfo"):
        with open(os.environ["NETWORK_LOG"], "a") as log:
            log.write(f"{event} {args!r}\\n")
        raise OSError("network use refused by the test")

sys.addaudithook(_refuse)
'''


def name_problems(name: str) -> list[str]:
    """Why ``name`` breaks the registry's node-id rules (docs.comfy.org/registry/specifications)."""
    problems = []
    if len(name) >= 100:
        problems.append("100 characters or more")
    if not re.fullmatch(r"[A-Za-z0-9._-]*", name):
        problems.append("a character other than letters, digits, '-', '_', '.'")
    if re.search(r"[._-]{2}", name):
        problems.append("consecutive special characters")
    if not re.match(r"[A-Za-z]", name):
        problems.append("does not start with a letter")
    if "comfyui" in name.lower():
        problems.append("contains 'ComfyUI'")
    return problems


def is_semver(version: str) -> bool:
    """The registry's three-number X.Y.Z (no leading zeros)."""
    return re.fullmatch(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)", version) is not None


def license_problems(project: dict, root: Path) -> list[str]:
    """An SPDX expression with existing license-files, or one of the spec's tables ``{file}`` / ``{text}``."""
    value = project.get("license")
    if isinstance(value, str):
        try:
            canonical = canonicalize_license_expression(value)
        except InvalidLicenseExpression as exc:
            return [f"not an SPDX expression: {exc}"]
        missing = [name for name in project.get("license-files", []) if not (root / name).is_file()]
        return ([f"not in canonical form {canonical!r}"] if canonical != value else []) + \
            [f"license file {name} missing" for name in missing] + \
            ([] if project.get("license-files") else ["no license-files"])
    if isinstance(value, dict) and len(value) == 1 and "text" in value:
        return [] if value["text"].strip() else ["empty license text"]
    if isinstance(value, dict) and len(value) == 1 and "file" in value:
        return [] if (root / value["file"]).is_file() else [f"license file {value['file']} missing"]
    return [f"license must be an SPDX string or {{file = ...}} / {{text = ...}}, not {value!r}"]


def is_publisher_id(publisher: str) -> bool:
    """Conservatively what a registry publisher ID looks like: lower-case words joined by single hyphens."""
    return re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", publisher) is not None and len(publisher) < 100


@pytest.mark.parametrize("name,ok", [("image-processor", True), ("super-resolution", True), ("animeface-seg", True),
                                     ("ComfyUI-enhancer", False), ("123-tool", False), ("a--b", False),
                                     ("-a", False), ("a b", False), ("a" * 100, False)])
def test_name_rules_follow_the_spec_examples(name, ok):
    assert (name_problems(name) == []) is ok


@pytest.mark.parametrize("version,ok", [("1.0.0", True), ("0.2.0", True), ("10.20.30", True), ("1.0", False),
                                        ("01.0.0", False), ("1.0.0rc1", False), ("v1.0.0", False)])
def test_semver_check(version, ok):
    assert is_semver(version) is ok


def test_license_form_check(tmp_path):
    (tmp_path / "LICENSE").write_text("text")
    assert license_problems({"license": "Apache-2.0", "license-files": ["LICENSE"]}, tmp_path) == []
    assert license_problems({"license": {"file": "LICENSE"}}, tmp_path) == []
    assert license_problems({"license": {"text": "MIT"}}, tmp_path) == []
    assert license_problems({"license": "MIT LICENSE", "license-files": ["LICENSE"]}, tmp_path)
    assert license_problems({"license": "apache-2.0", "license-files": ["LICENSE"]}, tmp_path)
    assert license_problems({"license": "MIT", "license-files": ["COPYING"]}, tmp_path)
    assert license_problems({"license": "LICENSE"}, tmp_path)


def test_our_metadata_meets_the_registry_spec():
    data = tomlkit.parse((REPO / "pyproject.toml").read_text()).unwrap()
    project, comfy = data["project"], data["tool"]["comfy"]
    assert name_problems(project["name"]) == []
    assert is_semver(project["version"]), project["version"]
    import animeface_seg

    assert project["version"] == animeface_seg.__version__
    assert license_problems(project, REPO) == []
    assert project["description"].strip() and project["requires-python"].startswith(">=")
    repository = urlparse(project["urls"]["Repository"])
    assert repository.scheme == "https" and repository.netloc and repository.path.strip("/")
    assert is_publisher_id(comfy["PublisherId"]), comfy["PublisherId"]
    assert comfy["DisplayName"].strip()
    readme = (REPO / "README.md").read_text()
    assert "PublisherId" in readme and project["urls"]["Repository"] in readme


@pytest.fixture
def tracked_copy(tmp_path) -> Path:
    """The repository's tracked files as they are in the working tree, in a fresh git repository."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip(f"{REPO} is not a git checkout, so there are no tracked files to pack")
    copy = tmp_path / "pack"
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True, timeout=60)
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True, timeout=60)
    return copy


def comfy(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run comfy-cli offline and without prompts; fails the test on any attempted network use."""
    script = Path(sys.executable).with_name("comfy")
    if not script.is_file():
        pytest.fail("comfy-cli is not installed (it is in the test extra): pip install -e '.[test]'")
    hooks = tmp_path / "no-network"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(NO_NETWORK)
    log = tmp_path / "network.log"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "DO_NOT_TRACK": "1", "COMFY_NO_TELEMETRY": "1",
           "COMFY_NO_UPDATE_CHECK": "1", "NETWORK_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([str(script), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300)
    assert not log.exists(), f"comfy {' '.join(args)} tried the network:\n{log.read_text()}"
    return proc


def test_comfy_node_validate_passes_offline(tracked_copy, tmp_path):
    proc = comfy(["node", "validate"], tracked_copy, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "All validation checks passed successfully" in output
    assert "Warning" not in output and "Security warnings" not in output


def test_comfy_node_pack_archives_tracked_files_without_development_ones(tracked_copy, tmp_path):
    (tracked_copy / "notes-untracked.txt").write_text("not tracked, so not packed")
    proc = comfy(["node", "pack"], tracked_copy, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with zipfile.ZipFile(tracked_copy / "node.zip") as archive:
        packed = sorted(archive.namelist())
        archive.extractall(tmp_path / "custom_nodes" / "animeface-seg")
    tracked = subprocess.run(["git", "ls-files"], cwd=tracked_copy, capture_output=True, text=True,
                             check=True).stdout.split()
    assert packed == sorted(name for name in tracked if not name.startswith(DEVELOPMENT_ONLY))
    for needed in ("__init__.py", "pyproject.toml", "requirements.txt", "LICENSE", "README.md",
                   "animeface_seg/integrations/comfyui/nodes.py"):
        assert needed in packed

    # The unpacked archive is a node pack ComfyUI can load: both nodes register, nothing heavy imported.
    pack = tmp_path / "custom_nodes" / "animeface-seg"
    script = ("import importlib.util, sys\n"
              f"spec = importlib.util.spec_from_file_location('pack', {str(pack / '__init__.py')!r})\n"
              "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
              "print(sorted(module.NODE_CLASS_MAPPINGS), 'torch' in sys.modules)\n")
    loaded = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={"PATH": os.environ.get("PATH", "")}, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "['AnimeFaceClassMask', 'AnimeFaceSegPreprocessor'] False"
