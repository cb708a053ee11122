"""Where weights come from, and the one clear message for each way that can fail."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from animeface_seg.engine import weights
from animeface_seg.engine.weights import ABG, UNET, WeightsError, load_isnet, load_unet, resolve
from conftest import REPO


def test_explicit_path_wins_over_directories(weights_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path))
    assert resolve(UNET, weights_dir / "UNet.pth", tmp_path) == weights_dir / "UNet.pth"


def test_weights_dir_and_environment_variable(weights_dir, monkeypatch):
    assert resolve(ABG, None, weights_dir) == weights_dir / "isnetis.ckpt"
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(weights_dir))
    assert resolve(UNET) == weights_dir / "UNet.pth"


def test_missing_file_names_file_and_fix(tmp_path):
    with pytest.raises(WeightsError) as err:
        load_unet(tmp_path / "nope" / "UNet.pth")
    assert "nope/UNet.pth" in str(err.value) and "does not exist" in str(err.value)
    with pytest.raises(WeightsError) as err:
        resolve(ABG, None, tmp_path)
    message = str(err.value)
    assert "isnetis.ckpt not found in" in message and "skytnt/anime-seg" in message
    assert "--" not in message and err.value.setting == "abg"  # the library names no CLI flag...
    from animeface_seg.cli.hints import with_hint

    assert "--abg PATH" in with_hint(message, err.value.setting)  # ...the command adds its own


def test_truncated_checkpoint(weights_dir, tmp_path):
    bad = tmp_path / "UNet.pth"
    bad.write_bytes((weights_dir / "UNet.pth").read_bytes()[:100_000])
    with pytest.raises(WeightsError) as err:
        load_unet(bad)
    assert str(bad) in str(err.value) and "not a readable PyTorch checkpoint" in str(err.value)


def test_not_a_checkpoint_at_all(tmp_path):
    bad = tmp_path / "isnetis.ckpt"
    bad.write_text("<html>404 not found</html>")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_isnet(bad)


def test_wrong_network_names_keys(weights_dir):
    with pytest.raises(WeightsError) as err:
        load_isnet(weights_dir / "UNet.pth")
    message = str(err.value)
    assert "does not fit the isnetis.ckpt network" in message
    assert "keys missing (conv_in.weight" in message and "unexpected keys (en_block0" in message
    with pytest.raises(WeightsError, match="keys missing"):
        load_unet(weights_dir / "isnetis.ckpt")


class FakeHub:
    """Stands in for the hub boundary only, to see which repository and file are asked for."""

    def __init__(self, weights_dir: Path) -> None:
        self.weights_dir = weights_dir
        self.downloads: list[tuple[str, str, str | None]] = []

    def hf_hub_download(self, repo_id, filename, subfolder=None, **kwargs):
        self.downloads.append((repo_id, filename, subfolder))
        return str(self.weights_dir / filename)


def test_default_downloads_exactly_the_real_files(weights_dir, monkeypatch):
    hub = FakeHub(weights_dir)
    monkeypatch.setattr(weights, "try_to_load_from_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(weights, "hf_hub_download", hub.hf_hub_download)
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(weights.hf_constants, "HF_HUB_OFFLINE", False)
    load_unet()
    load_isnet()
    assert hub.downloads == [
        ("bdsqlsz/qinglong_controlnet-lllite", "UNet.pth", "Annotators"),
        ("skytnt/anime-seg", "isnetis.ckpt", None),
    ]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _resolve_in(env: dict[str, str], *specs: str) -> list[dict]:
    """``resolve`` each spec in a fresh interpreter whose environment is exactly ``env`` (the hub reads its
    settings at import): the path found, or the error's message and setting."""
    code = ("import json, sys\nfrom animeface_seg.engine.weights import SPECS, WeightsError, resolve\n"
            "for key in sys.argv[1:]:\n"
            "    try:\n        print(json.dumps({'path': str(resolve(SPECS[key]))}))\n"
            "    except WeightsError as error:\n"
            "        print(json.dumps({'error': str(error), 'setting': error.setting}))\n")
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), **env}
    proc = subprocess.run([sys.executable, "-c", code, *specs], capture_output=True, text=True, env=full,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _hub_cache(home: Path, weights_dir: Path) -> dict[str, Path]:
    """A real Hugging Face cache under ``home`` holding both files (snapshot links, as the hub makes them)."""
    found = {}
    for spec in (UNET, ABG):
        repo = home / "hub" / f"models--{spec.repo_id.replace('/', '--')}"
        commit = "0" * 40
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        target = repo / "snapshots" / commit / spec.hub_path
        target.parent.mkdir(parents=True)
        target.symlink_to(weights_dir / spec.filename)
        found[spec.key] = target
    return found


def test_cached_files_make_no_network_request(weights_dir, tmp_path):
    """Both files in a real hub cache, the hub's endpoint a closed port, not offline: found, nothing fetched."""
    home = tmp_path / "hf-home"
    cached = _hub_cache(home, weights_dir)
    env = {"HF_HOME": str(home), "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    assert _resolve_in(env, "unet", "abg") == [{"path": str(cached["unet"])}, {"path": str(cached["abg"])}]
    # ...and $ANIMEFACE_SEG_WEIGHTS comes before the cache.
    assert _resolve_in({**env, weights.WEIGHTS_ENV: str(weights_dir)}, "unet") == [
        {"path": str(weights_dir / "UNet.pth")}]


def test_offline_and_not_cached_says_so(tmp_path, run_process):
    """An empty hub cache with HF_HUB_OFFLINE=1: the library says so without naming a flag; the command adds it."""
    env = {"HF_HOME": str(tmp_path / "empty-hf-home"), "HF_HUB_OFFLINE": "1"}
    [found] = _resolve_in(env, "unet")
    assert found["setting"] == "unet" and "--" not in found["error"], found
    assert "HF_HUB_OFFLINE is set" in found["error"] and str(tmp_path / "empty-hf-home" / "hub") in found["error"]
    proc = run_process("--fetch-weights", weights=False, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "HF_HUB_OFFLINE is set" in proc.stderr and "--unet PATH" in proc.stderr and "Traceback" not in proc.stderr


def test_download_failure_is_one_clear_message(tmp_path):
    """An empty hub cache and a hub that cannot be reached (a closed port): one line naming file and repository."""
    env = {"HF_HOME": str(tmp_path / "empty-hf-home"), "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    [found] = _resolve_in(env, "abg")
    message = found["error"]
    assert "isnetis.ckpt was not found" in message and "could not be downloaded" in message, message
    assert "skytnt/anime-seg" in message and "\n" not in message
    assert not list((tmp_path / "empty-hf-home").rglob("isnetis.ckpt"))


def test_command_reports_bad_weights_without_traceback(run_cli, weights_dir, tmp_path):
    from conftest import make_image

    make_image(tmp_path / "in" / "a.png", (64, 64))
    bad = tmp_path / "UNet.pth"
    bad.write_bytes(b"\0" * 10)
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--unet", str(bad), "--abg",
                   str(weights_dir / "isnetis.ckpt"), weights=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and str(bad) in proc.stderr and "--unet PATH" in proc.stderr
    assert "weights_only" not in proc.stderr
    assert not (tmp_path / "out").exists()  # a run that fails to start removes the folders it made
