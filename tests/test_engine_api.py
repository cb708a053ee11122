"""The engine as a library: no global state changed, built from memory or files, tensors in and out,
and a streaming pipeline that serves a live source."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import PurePath

import pytest
import torch
from PIL import Image

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.pipeline import process
from animeface_seg.batch.kinds import select
from animeface_seg.batch.settings import RunSettings
from animeface_seg.batch.spec import OutputSpec
from animeface_seg.engine.decode import load_rgb
from animeface_seg.engine.errors import ImageDecodeError
from animeface_seg.engine.weights import ABG, UNET, load_state_dict
from conftest import agreement, make_image


def test_import_and_construction_change_no_global_state(weights_dir):
    """In a fresh interpreter: Pillow's bomb guard and cuDNN autotuning stay as the host left them."""
    script = f"""
import warnings, PIL.Image, torch, sympy  # sympy (imported lazily by torch) adds its own filter
before = (PIL.Image.MAX_IMAGE_PIXELS, torch.backends.cudnn.benchmark, list(warnings.filters))
import animeface_seg, animeface_seg.engine.decode, animeface_seg.batch.pipeline, animeface_seg.cli
from animeface_seg import Segmentor
seg = Segmentor.from_pretrained(weights_dir={str(weights_dir)!r}, device="cpu")
seg([__import__("numpy").zeros((40, 60, 3), "uint8")])
after = (PIL.Image.MAX_IMAGE_PIXELS, torch.backends.cudnn.benchmark, list(warnings.filters))
assert before == after, (before, after)
print("unchanged", before[0])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"unchanged {Image.MAX_IMAGE_PIXELS}"


def test_importing_the_package_does_not_load_torch():
    proc = subprocess.run([sys.executable, "-c", "import sys, animeface_seg, animeface_seg.cli; "
                           "print('torch' in sys.modules)"], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr


def test_decompression_bomb_is_still_refused(tmp_path, run_process):
    """A tiny file declaring a huge canvas is refused from its header, never decoded."""
    bomb = tmp_path / "in" / "bomb.png"
    bomb.parent.mkdir()
    Image.new("1", (20_000, 20_000)).save(bomb)  # ~50 KB on disk, 400 M pixels declared
    assert bomb.stat().st_size < 200_000
    # As a library: Pillow's own global guard, which we never disable, refuses it...
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_rgb(bomb, max_pixels=None)
    # ...and our per-open limit refuses anything over the limit it is given, from the header.
    small = tmp_path / "small.png"
    Image.new("1", (2000, 1500)).save(small)
    with pytest.raises(ImageDecodeError, match="2000x1500 = 3,000,000 pixels, over the limit of 1,000") as err:
        load_rgb(small, max_pixels=1000)
    assert err.value.setting == "max_pixels"
    # The command governs with its own limit (its entry point may lift Pillow's) and names the flag.
    proc = run_process(str(bomb.parent), "-o", str(tmp_path / "out"), "--keep-background", "--device", "cpu")
    assert proc.returncode == 1, proc.stderr
    assert "400,000,000 pixels, over the limit of 268,435,456 (raise the limit with --max-pixels N)" in proc.stderr


def test_segmentor_from_modules_and_state_dicts_matches_files(weights_dir, segmentor, reference):
    from animeface_seg import Segmentor
    from animeface_seg.engine.weights import build

    unet_state = load_state_dict(UNET, weights_dir / "UNet.pth")
    isnet_state = load_state_dict(ABG, weights_dir / "isnetis.ckpt")
    from_states = Segmentor(unet_state, isnet_state, device="cpu", output_size="processed", runtime="torch")
    from_modules = Segmentor(build(UNET, unet_state), build(ABG, isnet_state), device="cpu",
                             output_size="processed", runtime="torch")
    image = reference / "golden" / "wide" / "input.png"
    expected = segmentor([image])[0]
    for built in (from_states, from_modules):
        result = built([image])[0]
        assert (result.colors == expected.colors).all()
        assert (result.mask == expected.mask).all()
    assert from_modules.remove_background and not Segmentor(unet_state, device="cpu").remove_background


def test_float_tensor_batch_matches_files(segmentor, tmp_path):
    """A ComfyUI-style (B, H, W, 3) float batch in [0, 1] gives the maps of the same images as files."""
    paths = [make_image(tmp_path / f"{i}.png", (96, 72), seed=i) for i in range(3)]
    batch = torch.stack([torch.from_numpy(load_rgb(p)).float() / 255.0 for p in paths])
    from_tensor = segmentor(batch, batch_size=3)
    from_files = segmentor(paths, batch_size=3)
    assert len(from_tensor) == 3
    for a, b in zip(from_tensor, from_files):
        assert (a.colors == b.colors).all() and (a.mask == b.mask).all()
    chw = torch.from_numpy(load_rgb(paths[0])).permute(2, 0, 1).contiguous()
    assert (segmentor(chw)[0].colors == segmentor(paths[0])[0].colors).all()  # same batch size, same bits
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        segmentor(torch.zeros(2, 3, 8, 8))


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]),
])
def test_results_can_stay_on_the_device(device, segmentor, cached_factory, weights_dir, reference):
    """On CUDA the results are CUDA uint8 tensors until ``to_host`` (on CPU the same calls are the baseline)."""
    case = reference / "golden" / "square" / "input.png"
    engine = segmentor if device == "cpu" else cached_factory(weights_dir=weights_dir, device=device,
                                                              precision="fp32", output_size="processed")
    on_device = engine.segment_on_device([case])[0]
    assert engine.device.type == device
    for name in ("classes", "colors", "mask"):
        tensor = getattr(on_device, name)
        assert isinstance(tensor, torch.Tensor) and tensor.device == engine.device and tensor.dtype == torch.uint8, name
    assert on_device.stats.device == engine.device
    host = on_device.to_host()
    assert (host.colors == on_device.colors.cpu().numpy()).all() and (host.mask == on_device.mask.cpu().numpy()).all()
    assert agreement(host.colors, segmentor([case])[0].colors) >= (1.0 if device == "cpu" else 0.99)


def test_live_source_that_blocks_still_gets_its_image_written(segmentor_keep, tmp_path):
    """One image, then a source that blocks: the partial batch runs on the idle time-out and is reported."""
    path = make_image(tmp_path / "in" / "first.png", (80, 64))
    release = threading.Event()

    def live():
        yield Job(path, PurePath("first"))
        release.wait(120)  # a watched folder with nothing new

    spec = OutputSpec(tmp_path / "out", select(remove_background=False))
    settings = RunSettings.decide(spec, "cpu", batch_size=4, workers=1, flush_after=0.2)
    outcomes = process(live(), segmentor_keep, settings)
    try:
        first = next(outcomes)  # would hang forever if the partial batch waited for company
    finally:
        release.set()
    assert first.status == "ok" and first.job.source == path
    assert (tmp_path / "out" / "first.png").is_file()
    assert list(outcomes) == []


def test_one_batcher_rule():
    from animeface_seg.engine.batcher import ShapeBatcher

    now = [0.0]
    batcher = ShapeBatcher(2, key=lambda item: item[0], timeout=1.0, clock=lambda: now[0])
    assert batcher.add(("a", 1)) == [] and batcher.add(("b", 2)) == []
    assert batcher.add(("a", 3)) == [[("a", 1), ("a", 3)]]  # full
    assert batcher.next_deadline() == 1.0 and batcher.due() == []
    now[0] = 1.5
    assert batcher.due() == [[("b", 2)]] and len(batcher) == 0  # idle time-out
    batcher.add(("c", 4))
    assert batcher.drain() == [[("c", 4)]]  # end of input
