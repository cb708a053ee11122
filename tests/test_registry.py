"""The node pack is ready for the ComfyUI registry: comfy-cli's own ``comfy node validate`` and
``comfy node pack`` pass offline, and our checks of the real pyproject.toml cover what comfy-cli leaves
lenient (the name rules, an X.Y.Z version, the license form, the publisher ID and repository URL of the
registry's spec); each check is shown to catch a break of the real file.

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


def _name_problems(name: str) -> list[str]:
    """Why ``name`` breaks the registry's node-id rules (docs.comfy.org/registry/specifications)."""
    problems = []
    if len(name) >= 100:
        problems.append("name: 100 characters or more")
    if not re.fullmatch(r"[A-Za-z0-9._-]*", name):
        problems.append("name: a character other than letters, digits, '-', '_', '.'")
    if re.search(r"[._-]{2}", name):
        problems.append("name: consecutive special characters")
    if not re.match(r"[A-Za-z]", name):
        problems.append("name: does not start with a letter")
    if "comfyui" in name.lower():
        problems.append("name: contains 'ComfyUI'")
    return problems


def _license_problems(project: dict, root: Path) -> list[str]:
    """An SPDX expression with existing license-files, or one of the spec's tables ``{file}`` / ``{text}``."""
    value = project.get("license")
    if isinstance(value, str):
        try:
            canonical = canonicalize_license_expression(value)
        except InvalidLicenseExpression as exc:
            return [f"license: not an SPDX expression: {exc}"]
        files = project.get("license-files", [])
        return ([f"license: not in canonical form {canonical!r}"] if canonical != value else []) + \
            [f"license: file {name} missing" for name in files if not (root / name).is_file()] + \
            ([] if files else ["license: no license-files"])
    if isinstance(value, dict) and len(value) == 1 and "text" in value:
        return [] if value["text"].strip() else ["license: empty text"]
    if isinstance(value, dict) and len(value) == 1 and "file" in value:
        return [] if (root / value["file"]).is_file() else [f"license: file {value['file']} missing"]
    return [f"license: must be an SPDX string or {{file = ...}} / {{text = ...}}, not {value!r}"]


def metadata_problems(root: Path) -> list[str]:
    """Every way ``root``'s pyproject.toml breaks the registry's spec or disagrees with the package."""
    import animeface_seg

    data = tomlkit.parse((root / "pyproject.toml").read_text()).unwrap()
    project, comfy = data["project"], data.get("tool", {}).get("comfy", {})
    version, url = project.get("version", ""), project.get("urls", {}).get("Repository", "")
    repository = urlparse(url)
    checks = {
        "version: not X.Y.Z": re.fullmatch(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)", version),
        f"version: {version!r} is not animeface_seg.__version__": version == animeface_seg.__version__,
        "description: empty": project.get("description", "").strip(),
        "requires-python: not a lower bound": project.get("requires-python", "").startswith(">="),
        "Repository: not an https address of a repository": repository.scheme == "https" and repository.netloc
        and repository.path.strip("/"),
        "PublisherId: not lower-case words joined by single hyphens": re.fullmatch(
            r"[a-z][a-z0-9]*(-[a-z0-9]+)*", comfy.get("PublisherId", "")) and len(comfy["PublisherId"]) < 100,
        "DisplayName: empty": comfy.get("DisplayName", "").strip(),
        "README: does not show PublisherId and the Repository": "PublisherId" in (root / "README.md").read_text()
        and url in (root / "README.md").read_text(),
    }
    return _name_problems(project.get("name", "")) + _license_problems(project, root) + \
        [problem for problem, passed in checks.items() if not passed]


def test_our_metadata_meets_the_registry_spec():
    assert metadata_problems(REPO) == []


BREAKS = [  # (table, key, value) changed in the real pyproject.toml, and the problems that must be found
    ("project", "name", "ComfyUI-animeface-seg", ["name: contains 'ComfyUI'"]),
    ("project", "name", "animeface--seg", ["name: consecutive special characters"]),
    ("project", "name", "9animeface", ["name: does not start with a letter"]),
    ("project", "version", "0.3", ["version: not X.Y.Z", "version: '0.3' is not animeface_seg.__version__"]),
    ("project", "version", "9.9.9", ["version: '9.9.9' is not animeface_seg.__version__"]),
    ("project", "license", "apache-2.0", ["license: not in canonical form 'Apache-2.0'"]),
    ("project", "license-files", ["COPYING"], ["license: file COPYING missing"]),
    ("project.urls", "Repository", "http://github.com/OWNER/animeface-seg",
     ["Repository: not an https address of a repository", "README: does not show PublisherId and the Repository"]),
    ("tool.comfy", "PublisherId", "Animeface_Seg", ["PublisherId: not lower-case words joined by single hyphens"]),
    ("tool.comfy", "DisplayName", " ", ["DisplayName: empty"]),
]


@pytest.mark.parametrize("table,key,value,expected", BREAKS, ids=[f"{key}={value}" for _, key, value, _ in BREAKS])
def test_each_break_of_the_real_metadata_is_caught(table, key, value, expected, tmp_path):
    """The real pyproject.toml, README and LICENSE with one value broken: exactly its problems are found."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, tmp_path / name)
    document = tomlkit.parse((tmp_path / "pyproject.toml").read_text())
    section = document
    for part in table.split("."):
        section = section[part]
    section[key] = value
    (tmp_path / "pyproject.toml").write_text(tomlkit.dumps(document))
    assert sorted(metadata_problems(tmp_path)) == sorted(expected)


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
