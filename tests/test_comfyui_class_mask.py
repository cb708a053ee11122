"""The Anime Face Class Mask node inside a real ComfyUI 0.8.0 server (--cpu), driven over HTTP.

The MASK it returns is caught by a probe node from a temporary custom-nodes folder, which saves the
tensor itself (``.npy``) and its shape, dtype and range (JSON): what a downstream node receives,
with no conversion in between. The ComfyUI tree and driver are those of ``test_comfyui.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from animeface_seg.engine.palette import CLASS_COLORS, CLASS_NAMES
from animeface_seg.integrations.comfyui import paths
from conftest import read_rgb
from test_comfyui import _run, _upload, comfy_dir, driver  # noqa: F401  (fixtures: the ComfyUI tree, its driver)

NODE = "AnimeFaceClassMask"
PROBE = '''
import json, numpy as np


class ProbeMask:
    """Saves the MASK it receives as <path>.npy and its shape, dtype and range as <path>.json."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",), "path": ("STRING", {"default": ""})}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def run(self, mask, path):
        array = mask.cpu().numpy()
        np.save(path + ".npy", array)
        with open(path + ".json", "w") as f:
            json.dump({"type": type(mask).__name__, "shape": list(mask.shape), "dtype": str(mask.dtype),
                       "device": str(mask.device), "min": float(mask.min()), "max": float(mask.max()),
                       "values": sorted(set(np.unique(array).tolist()))}, f)
        return {}


NODE_CLASS_MAPPINGS = {"ProbeMask": ProbeMask}
'''


@pytest.fixture(scope="module")
def server(driver, comfy_dir, weights_dir, tmp_path_factory):  # noqa: F811
    """One running server: the pack (as in test_comfyui.py), stand-in weights, and the probe node."""
    probe_nodes = tmp_path_factory.mktemp("probe-nodes")
    (probe_nodes / "mask_probe").mkdir()
    (probe_nodes / "mask_probe" / "__init__.py").write_text(PROBE)
    models = comfy_dir / "models" / paths.MODEL_FOLDER
    models.mkdir(parents=True, exist_ok=True)
    for name in ("UNet.pth", "isnetis.ckpt"):
        shutil.copyfile(weights_dir / name, models / name)
    saved = os.environ.pop("ANIMEFACE_SEG_WEIGHTS", None)
    srv = driver.ComfyServer(comfy_dir, python=sys.executable, work_dir=tmp_path_factory.mktemp("comfy-run"),
                             extra_custom_nodes_dirs=[probe_nodes], quiet=True)
    try:
        srv.start()
    finally:
        if saved is not None:
            os.environ["ANIMEFACE_SEG_WEIGHTS"] = saved
    yield srv
    srv.stop()


def expected_mask(colour_map: np.ndarray, name: str) -> np.ndarray:
    colour = CLASS_COLORS[CLASS_NAMES.index(name)]
    return (colour_map == colour).all(axis=-1).astype(np.float32)


def _class_branch(prefix: str, colour_map: list, name: str, probe: Path) -> dict:
    return {
        f"{prefix}cm": {"class_type": NODE, "inputs": {"color_map": colour_map, "class_name": name}},
        f"{prefix}probe": {"class_type": "ProbeMask", "inputs": {"mask": [f"{prefix}cm", 0], "path": str(probe)}},
    }


def _probed(probe: Path) -> tuple[dict, np.ndarray]:
    return json.loads(probe.with_suffix(".json").read_text()), np.load(probe.with_suffix(".npy"))


def test_the_node_is_registered_with_a_class_choice(driver, server):  # noqa: F811
    assert server.import_failures() == []
    info = driver.get_json(server.base, f"/object_info/{NODE}")[NODE]
    assert info["display_name"] == "Anime Face Class Mask (animeface-seg)"
    assert info["category"] == "ControlNet Preprocessors/Semantic Segmentation"
    assert info["output"] == ["MASK"]
    required = info["input"]["required"]
    assert required["color_map"][0] == "IMAGE"
    assert required["class_name"][0] == list(CLASS_NAMES)


def test_masks_of_the_segmentors_map_for_a_batch(driver, server, reference, tmp_path):  # noqa: F811
    """LoadImage x2 -> ImageBatch -> segmentor -> class mask -> probe, for three classes; the map saved too."""
    names = [_upload(driver, server, reference / "golden" / case / "input.png", f"cm_{case}.png")
             for case in ("wide", "gray")]
    workflow = {
        "a": {"class_type": "LoadImage", "inputs": {"image": names[0]}},
        "b": {"class_type": "LoadImage", "inputs": {"image": names[1]}},
        "ab": {"class_type": "ImageBatch", "inputs": {"image1": ["a", 0], "image2": ["b", 0]}},
        "seg": {"class_type": "AnimeFaceSegPreprocessor", "inputs": {"image": ["ab", 0]}},
        "map": {"class_type": "SaveImage", "inputs": {"images": ["seg", 0], "filename_prefix": "cm_map"}},
    }
    classes = ("hair", "face", "background")
    for name in classes:
        workflow.update(_class_branch(name, ["seg", 0], name, tmp_path / name))
    maps = [read_rgb(path) for path in _run(driver, server, workflow, tmp_path / "saved")["map"]]
    assert len(maps) == 2 and maps[0].shape == (512, 683, 3)
    covered = np.zeros((2, 512, 683))
    for name in classes:
        meta, mask = _probed(tmp_path / name)
        assert (meta["type"], meta["shape"], meta["dtype"]) == ("Tensor", [2, 512, 683], "torch.float32")
        assert set(meta["values"]) <= {0.0, 1.0} and meta["min"] == 0.0
        for i in range(2):  # map values are 0 or 255, so SaveImage kept them exactly
            np.testing.assert_array_equal(mask[i], expected_mask(maps[i], name), err_msg=f"{name} image {i}")
        covered += mask
    assert covered.max() == 1.0 and (covered.sum(axis=(1, 2)) > 0).all()


def test_a_saved_map_loaded_again_gives_the_same_masks(driver, server, reference, tmp_path):  # noqa: F811
    golden = reference / "golden" / "tall" / "map.png"
    name = _upload(driver, server, golden, "cm_tall_map.png")
    workflow = {"load": {"class_type": "LoadImage", "inputs": {"image": name}}}
    for cls in CLASS_NAMES:
        workflow.update(_class_branch(cls, ["load", 0], cls, tmp_path / cls))
    _run(driver, server, workflow, tmp_path / "saved")
    colour_map = read_rgb(golden)
    total = np.zeros(colour_map.shape[:2])
    for cls in CLASS_NAMES:
        meta, mask = _probed(tmp_path / cls)
        assert meta["shape"] == [1, *colour_map.shape[:2]] and meta["dtype"] == "torch.float32"
        np.testing.assert_array_equal(mask[0], expected_mask(colour_map, cls), err_msg=cls)
        total += mask[0]
    assert (total == 1).all()


def test_an_image_that_is_no_map_is_refused_with_a_clear_error(driver, server, reference, tmp_path):  # noqa: F811
    name = _upload(driver, server, reference / "golden" / "small" / "input.png", "cm_photo.png")
    workflow = {"load": {"class_type": "LoadImage", "inputs": {"image": name}},
                **_class_branch("photo", ["load", 0], "eye", tmp_path / "photo")}
    with pytest.raises(AssertionError, match="no class colour: connect the IMAGE output of Anime Face Segmentor"):
        _run(driver, server, workflow, tmp_path / "saved")
    assert not (tmp_path / "photo.json").exists()
