"""Where weights come from, and the one clear message for each way that can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from animeface_seg.engine import weights
from animeface_seg.engine.weights import ABG, UNET, WeightsError, load_isnet, load_unet, resolve


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
    """Stands in for the hub boundary only: records what is asked for, serves local files."""

    def __init__(self, weights_dir: Path, cached: bool) -> None:
        self.weights_dir, self.cached = weights_dir, cached
        self.lookups: list[tuple[str, str]] = []
        self.downloads: list[tuple[str, str, str | None]] = []

    def try_to_load_from_cache(self, repo_id, filename, **kwargs):
        self.lookups.append((repo_id, filename))
        return str(self.weights_dir / Path(filename).name) if self.cached else None

    def hf_hub_download(self, repo_id, filename, subfolder=None, **kwargs):
        self.downloads.append((repo_id, filename, subfolder))
        return str(self.weights_dir / filename)


@pytest.fixture
def fake_hub(weights_dir, monkeypatch):
    def install(cached: bool) -> FakeHub:
        hub = FakeHub(weights_dir, cached)
        monkeypatch.setattr(weights, "try_to_load_from_cache", hub.try_to_load_from_cache)
        monkeypatch.setattr(weights, "hf_hub_download", hub.hf_hub_download)
        monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
        monkeypatch.setattr(weights.hf_constants, "HF_HUB_OFFLINE", False)
        return hub

    return install


def test_default_downloads_exactly_the_real_files(fake_hub):
    hub = fake_hub(cached=False)
    load_unet()
    load_isnet()
    assert hub.downloads == [
        ("bdsqlsz/qinglong_controlnet-lllite", "UNet.pth", "Annotators"),
        ("skytnt/anime-seg", "isnetis.ckpt", None),
    ]


def test_cached_files_make_no_network_request(fake_hub):
    hub = fake_hub(cached=True)
    load_unet()
    load_isnet()
    assert hub.lookups == [
        ("bdsqlsz/qinglong_controlnet-lllite", "Annotators/UNet.pth"),
        ("skytnt/anime-seg", "isnetis.ckpt"),
    ]
    assert hub.downloads == []


def test_offline_and_not_cached_says_so(fake_hub, monkeypatch):
    hub = fake_hub(cached=False)
    monkeypatch.setattr(weights.hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError) as err:
        resolve(UNET)
    assert "HF_HUB_OFFLINE" in str(err.value) and err.value.setting == "unet" and "--" not in str(err.value)
    assert hub.downloads == []


def test_download_failure_is_one_clear_message(monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionError("Network is unreachable")

    monkeypatch.setattr(weights, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(weights, "hf_hub_download", refuse)
    monkeypatch.setattr(weights.hf_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(WeightsError) as err:
        resolve(ABG)
    message = str(err.value)
    assert "could not be downloaded" in message and "isnetis.ckpt" in message and "Network is unreachable" in message


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
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
