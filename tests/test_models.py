"""The networks load every key of the real checkpoint layouts strictly, and run only what is needed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from animeface_seg.engine.models import ISNet, UNet
from animeface_seg.engine.weights import ABG, UNET, load_isnet, load_unet, load_state_dict


def test_unet_matches_manifest_exactly(reference):
    manifest = json.loads((reference / "UNet.pth.keys.json").read_text())
    ours = {k: list(v.shape) for k, v in UNet().state_dict().items()}
    assert ours == {k: shape for k, (shape, _) in manifest.items()}


def test_isnet_matches_net_keys_of_manifest(reference):
    manifest = json.loads((reference / "isnetis.ckpt.keys.json").read_text())
    wanted = {k[len("net."):]: shape for k, (shape, _) in manifest.items() if k.startswith("net.")}
    assert {k: list(v.shape) for k, v in ISNet().state_dict().items()} == wanted


def test_stand_in_checkpoints_load_strictly_with_values(weights_dir):
    unet = load_unet(weights_dir / "UNet.pth")
    raw = torch.load(weights_dir / "UNet.pth", weights_only=True)
    for key, value in unet.state_dict().items():
        assert torch.equal(value, raw[key]), key
    isnet = load_isnet(weights_dir / "isnetis.ckpt")
    raw = torch.load(weights_dir / "isnetis.ckpt", weights_only=True)
    for key, value in isnet.state_dict().items():
        assert torch.equal(value, raw["net." + key]), key
    mapped = load_state_dict(ABG, weights_dir / "isnetis.ckpt")
    assert not any(k.startswith(("gt_encoder.", "net.")) for k in mapped)
    assert len(load_state_dict(UNET, weights_dir / "UNet.pth")) == 298


def test_isnet_inference_runs_only_side1(weights_dir):
    isnet = load_isnet(weights_dir / "isnetis.ckpt")
    called = []
    for name in ("side1", "side2", "side3", "side4", "side5", "side6"):
        getattr(isnet, name).register_forward_hook(lambda m, i, o, name=name: called.append(name))
    with torch.inference_mode():
        out = isnet(torch.rand(1, 3, 64, 96))
    assert called == ["side1"]
    assert out.shape == (1, 1, 64, 96) and 0 <= out.min() and out.max() <= 1


def test_mobilenet_features_match_torchvisions(weights_dir):
    """Our MobileNetV2 layers (built without importing torchvision) have torchvision's keys, shapes and
    outputs: the UNet's encoder weights load into both and give identical features."""
    torchvision = pytest.importorskip("torchvision")
    from torch import nn

    from animeface_seg.engine.models.mobilenet import mobilenet_v2_features

    theirs = torchvision.models.mobilenet_v2(weights=None).features.eval()
    ours = nn.Sequential(*mobilenet_v2_features()).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert [type(m).__name__ for m in ours.modules()][1:] == [
        {"Conv2dNormActivation": "Sequential"}.get(type(m).__name__, type(m).__name__) for m in theirs.modules()][1:]
    unet = load_unet(weights_dir / "UNet.pth")
    encoder = {f"{i}.{k}": v for i, block in enumerate(
        [*unet.en_block0, *unet.en_block1, *unet.en_block2, *unet.en_block3, *unet.en_block4])
        for k, v in block.state_dict().items()}
    state = {**theirs.state_dict(), **encoder}  # the stand-in's encoder; torchvision's init for the unused head
    ours.load_state_dict(state, strict=True)
    theirs.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(ours(x), theirs(x))


def test_loading_the_networks_does_not_import_torchvision(weights_dir):
    code = ("import sys; from animeface_seg.engine.weights import load_unet; "
            f"load_unet({str(weights_dir / 'UNet.pth')!r}); print('torchvision' in sys.modules, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
