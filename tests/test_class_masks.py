"""Per-class masks: ``--class-masks`` through the command (both sizes, both layouts, the plan, resume)
and ``class_mask`` on the library's results. Every mask must equal ``map == colour`` pixel for pixel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from animeface_seg.engine.palette import CLASS_COLORS, CLASS_NAMES
from conftest import make_image, read_rgb
from test_plan import files_under, recorded_run  # noqa: F401  (a fixture: the networks must not load)

INPUTS = {"a/b.png": (96, 64), "c.jpg": (50, 80)}


def expected_mask(colour_map: np.ndarray, name: str) -> np.ndarray:
    """255 where the colour map shows class ``name``'s colour, 0 elsewhere."""
    colour = CLASS_COLORS[CLASS_NAMES.index(name)]
    return np.where((colour_map == colour).all(axis=-1), 255, 0).astype(np.uint8)


def read_l(path: Path) -> np.ndarray:
    """A PNG that must be 8-bit gray, as an array."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.mode == "L", (path, image.mode)
        return np.array(image)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("in")
    for seed, (name, size) in enumerate(INPUTS.items()):
        make_image(src / name, size, seed=seed)
    return src


@pytest.mark.parametrize("size,layout,keep", [("original", "mirror", False), ("processed", "mirror", True),
                                              ("original", "by-kind", True), ("processed", "by-kind", False)])
def test_every_class_mask_is_the_map_equal_to_its_colour(run_cli, inputs, tmp_path, size, layout, keep):
    out = tmp_path / "out"
    proc = run_cli(str(inputs), "-o", str(out), "--class-masks", "all", "--size", size, "--layout", layout,
                   "--json", *(["--keep-background"] if keep else []))
    assert proc.returncode == 0, proc.stderr
    records = {Path(r["input"]).relative_to(inputs).as_posix(): r for r in map(json.loads, proc.stdout.splitlines())}
    assert sorted(records) == sorted(INPUTS)
    seen = set()
    for name, (width, height) in INPUTS.items():
        stem = Path(name).with_suffix("").as_posix()
        outputs = records[name]["outputs"]
        assert list(outputs) == ["map", *([] if keep else ["mask"]), *CLASS_NAMES]
        if layout == "mirror":
            wanted = {cls: out / f"{stem}_{cls}.png" for cls in CLASS_NAMES}
        else:
            wanted = {cls: out / cls / f"{stem}.png" for cls in CLASS_NAMES}
        assert {cls: Path(outputs[cls]) for cls in CLASS_NAMES} == wanted
        colour_map = read_rgb(Path(outputs["map"]))
        if size == "original":
            assert colour_map.shape[:2] == (height, width)
        total = np.zeros(colour_map.shape[:2], dtype=int)
        for cls in CLASS_NAMES:
            mask = read_l(wanted[cls])
            np.testing.assert_array_equal(mask, expected_mask(colour_map, cls), err_msg=f"{name} {cls}")
            total += mask
            if mask.any():
                seen.add(cls)
        assert (total == 255).all()  # each pixel in exactly one class mask
    assert len(seen) >= 3  # the stand-in networks draw several classes, so the masks are not trivial
    written = sorted(files_under(out))
    assert ("masks/c.png" in written or "c_mask.png" in written) is not keep
    assert len(written) == len(INPUTS) * (1 + (not keep) + len(CLASS_NAMES))


def test_chosen_classes_only_and_resume_trusts_them(run_cli, inputs, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(str(inputs), "-o", str(out), "--class-masks", " Hair,eye,hair")
    assert proc.returncode == 0, proc.stderr
    assert sorted(files_under(out)) == ["a/b.png", "a/b_eye.png", "a/b_hair.png", "a/b_mask.png",
                                        "c.png", "c_eye.png", "c_hair.png", "c_mask.png"]
    again = run_cli(str(inputs), "-o", str(out), "--class-masks", "eye,hair", "--skip-existing", "--json")
    assert again.returncode == 0, again.stderr
    assert [r["status"] for r in map(json.loads, again.stdout.splitlines())] == ["skipped", "skipped"]
    more = run_cli(str(inputs), "-o", str(out), "--class-masks", "eye,face", "--skip-existing", "--json")
    assert more.returncode == 0, more.stderr
    records = [json.loads(line) for line in more.stdout.splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert [r["reason"] for r in records] == ["b_face.png is missing", "c_face.png is missing"]
    assert expected_mask(read_rgb(out / "c.png"), "face").tolist() == read_l(out / "c_face.png").tolist()


def test_a_class_mask_name_meeting_an_input_map_is_a_plan_conflict(recorded_run, run_cli, tmp_path):  # noqa: F811
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "x.png", (40, 30))
    make_image(src / "x_hair.png", (30, 40), seed=1)
    result, calls = recorded_run(str(src), "-o", str(out), "--class-masks", "hair", "--keep-background")
    assert result.exit_code == 2, result.output
    assert f"{out / 'x_hair.png'}: the hair of {src / 'x.png'} and the map of {src / 'x_hair.png'}" in result.stderr
    assert "--layout by-kind" in result.stderr
    assert calls == [] and not out.exists()

    proc = run_cli(str(src), "-o", str(out), "--class-masks", "hair", "--keep-background", "--layout", "by-kind")
    assert proc.returncode == 0, proc.stderr
    assert sorted(files_under(out)) == ["hair/x.png", "hair/x_hair.png", "maps/x.png", "maps/x_hair.png"]


def test_unknown_class_is_refused_before_anything_loads(recorded_run, tmp_path):  # noqa: F811
    make_image(tmp_path / "in" / "x.png", (40, 30))
    result, calls = recorded_run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--class-masks", "hair,ears")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("animeface-seg: error: --class-masks: unknown class 'ears'; choose from "
                                     "background, hair, eye, mouth, face, skin, clothes, or all")
    assert calls == [] and not (tmp_path / "out").exists()


def test_library_class_masks_on_host_and_device(segmentor, inputs):
    result = segmentor([inputs / "c.jpg"])[0]
    on_device = segmentor.segment_on_device([inputs / "c.jpg"])[0]
    for name in CLASS_NAMES:
        mask = result.class_mask(name)
        assert mask.dtype == np.uint8 and mask.shape == result.classes.shape
        np.testing.assert_array_equal(mask, expected_mask(result.colors, name))
        device_mask = on_device.class_mask(name)
        assert device_mask.dtype == torch.uint8 and device_mask.device == on_device.classes.device
        np.testing.assert_array_equal(device_mask.cpu().numpy(), mask)
    with pytest.raises(ValueError, match="unknown class 'ears'; the classes are background, hair, eye"):
        result.class_mask("ears")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_class_masks_stay_on_the_gpu(weights_dir, inputs):
    """On CUDA the device result's masks and the ComfyUI node's masks stay on the GPU and match the host's."""
    from animeface_seg import Segmentor
    from animeface_seg.integrations.comfyui.tensors import class_mask

    seg = Segmentor.from_pretrained(weights_dir=weights_dir, device="cuda", output_size="processed")
    result = seg.segment_on_device([inputs / "c.jpg"])[0]
    host = result.to_host()
    image = result.colors[None].float() / 255.0  # the map as a ComfyUI IMAGE, on the GPU
    for name in CLASS_NAMES:
        mask, from_map = result.class_mask(name), class_mask(image, name)
        assert mask.device.type == from_map.device.type == "cuda"
        np.testing.assert_array_equal(mask.cpu().numpy(), host.class_mask(name))
        np.testing.assert_array_equal(from_map[0].cpu().numpy() * 255, host.class_mask(name))
