"""The ComfyUI node pack inside a real ComfyUI 0.8.0 server (--cpu), driven over HTTP.

One server for the module: the repository linked into ``custom_nodes/`` as a user clones it, plus
the one-line loader folder pip users make. The weights are found the way ComfyUI users keep them:
``UNet.pth`` through an ``animeface_seg:`` entry of an ``extra_model_paths.yaml`` (a garbage
``UNet.pth`` in ``models/animeface_seg/`` proves that entry is looked at first), ``isnetis.ckpt`` in
``models/animeface_seg/``. ComfyUI's source and driver come from ``shared/comfyui/``.

Two kinds of workflow: LoadImage -> AnimeFaceSegPreprocessor -> SaveImage / MaskToImage, what users
save; and the node's outputs fed straight into a probe node (``TEST_NODES``, loaded from a
``custom_nodes:`` folder of the same yaml) that writes their type, shape, dtype and range as JSON
and the tensors themselves, so the MASK contract is checked on the tensor the next node receives.
ComfyUI's LoadImage always gives 3-channel IMAGEs (it drops alpha into a separate MASK), so the
probe pack also has a node that makes gray (1 channel) and RGBA IMAGEs from a loaded one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from animeface_seg.engine.palette import CLASS_COLORS
from animeface_seg.engine.weights import UNET
from animeface_seg.integrations.comfyui import paths
from conftest import REFERENCE, REPO, agreement, make_image, read_gray, read_rgb

COMFY_SHARED = Path(os.environ.get("ANIMEFACE_SEG_COMFYUI", REFERENCE.parent / "comfyui"))
TARBALL = COMFY_SHARED / "comfyui-0.8.0-src.tar.gz"
LOADER_LINE = "from animeface_seg.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS\n"
NODE = "AnimeFaceSegPreprocessor"
CASES = ("tall", "wide", "gray")
PROBE, CONVERT, HELD = "AnimeFaceSegTestProbe", "AnimeFaceSegTestConvert", "AnimeFaceSegTestHeld"

#: A test-only node pack: a probe that records what it receives, and gray/RGBA/repeat conversions.
TEST_NODES = '''
import json
import os
import warnings

import PIL.Image
import torch


def process_settings():
    """The process-wide settings the README says the node leaves alone."""
    return {"pillow_max_image_pixels": PIL.Image.MAX_IMAGE_PIXELS, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "warning_filters": [str(f) for f in warnings.filters], "threads": torch.get_num_threads(),
            "allocator": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")}


AT_START = process_settings()  # when ComfyUI imports the packs, before our node has ever run


class AnimeFaceSegTestProbe:
    """Writes the type, shape, dtype, device and range of its IMAGE and MASK (PATH.json) and the tensors (PATH.pt)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "mask": ("MASK",), "path": ("STRING", {"default": ""})}}

    RETURN_TYPES = ()
    FUNCTION = "probe"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def probe(self, image, mask, path):
        def describe(t):
            info = {"type": type(t).__name__, "shape": list(getattr(t, "shape", []))}
            if isinstance(t, torch.Tensor):
                info.update(dtype=str(t.dtype), device=str(t.device), min=float(t.min()), max=float(t.max()))
            return info

        with open(path + ".json", "w") as f:
            json.dump({"image": describe(image), "mask": describe(mask),
                       "settings": {"at_start": AT_START, "now": process_settings()}}, f)
        torch.save({"image": image.detach().cpu(), "mask": mask.detach().cpu()}, path + ".pt")
        return {}


class AnimeFaceSegTestConvert:
    """IMAGE -> (converted IMAGE, the 3-channel IMAGE the README says it is equivalent to)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "mode": (["gray", "rgba", "repeat"],),
                             "amount": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("IMAGE", "IMAGE")
    FUNCTION = "convert"
    CATEGORY = "testing"

    def convert(self, image, mode, amount):
        if mode == "gray":
            gray = image.mean(dim=-1, keepdim=True)
            return gray, gray.expand(-1, -1, -1, 3).contiguous()
        if mode == "rgba":
            b, h, w, _ = image.shape
            alpha = torch.linspace(0.0, 1.0, w).view(1, 1, w, 1).expand(b, h, w, 1)
            rgba = torch.cat([image, alpha], dim=-1)
            # README: 8 bits as the original node makes them (uint8(255 * x), truncated), then alpha over
            # white in float32 as the reference's composite, truncated; (c + 0.5) / 255 gives c back exactly.
            pixels = (rgba * 255).floor().clamp(0, 255)
            a = pixels[..., 3:] / 255.0
            rgb = (pixels[..., :3] * a + 255.0 * (1.0 - a)).clamp(0, 255).floor()
            return rgba, (rgb + 0.5) / 255.0
        return image.repeat(amount, 1, 1, 1), image


class AnimeFaceSegTestHeld:
    """Writes the class names of the models ComfyUI's model management holds loaded now (PATH, JSON)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": ("STRING", {"default": ""})}, "optional": {"after": ("IMAGE",)}}

    RETURN_TYPES = ()
    FUNCTION = "record"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def record(self, path, after=None):
        import comfy.model_management as mm

        held = [type(loaded.model.model).__name__ for loaded in mm.current_loaded_models if loaded.model is not None]
        with open(path, "w") as f:
            json.dump(held, f)
        return {}


NODE_CLASS_MAPPINGS = {"AnimeFaceSegTestProbe": AnimeFaceSegTestProbe,
                       "AnimeFaceSegTestConvert": AnimeFaceSegTestConvert,
                       "AnimeFaceSegTestHeld": AnimeFaceSegTestHeld}
'''


@pytest.fixture(scope="module")
def driver():
    """shared/comfyui/run_workflow.py, imported from its file."""
    path = COMFY_SHARED / "run_workflow.py"
    if not TARBALL.is_file() or not path.is_file():
        pytest.fail(f"ComfyUI source or driver not found in {COMFY_SHARED} (comfyui-0.8.0-src.tar.gz, "
                    "run_workflow.py); set ANIMEFACE_SEG_COMFYUI to the folder holding them")
    spec = importlib.util.spec_from_file_location("run_workflow", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def comfy_dir(driver, tmp_path_factory) -> Path:
    """A fresh ComfyUI tree with the pack installed both ways users do it."""
    root = tmp_path_factory.mktemp("comfy")
    with tarfile.open(TARBALL) as tar:
        tar.extractall(root, filter="data")
    comfy = root / "comfy-src"
    nodes = comfy / "custom_nodes"
    (nodes / "animeface-seg").symlink_to(REPO, target_is_directory=True)  # a clone, under any folder name
    (nodes / "animeface_seg_loader").mkdir()
    (nodes / "animeface_seg_loader" / "__init__.py").write_text(LOADER_LINE)  # pip install + loader folder
    return comfy


@pytest.fixture(scope="module")
def extra_paths(comfy_dir, weights_dir, tmp_path_factory) -> dict[str, Path]:
    """An extra_model_paths.yaml with an ``animeface_seg:`` folder (UNet.pth) and a ``custom_nodes:``
    folder (the test nodes); isnetis.ckpt in models/animeface_seg/ beside a garbage UNet.pth."""
    root = tmp_path_factory.mktemp("comfy-extra")
    elsewhere = root / "elsewhere" / "segmentation-weights"
    elsewhere.mkdir(parents=True)
    shutil.copyfile(weights_dir / "UNet.pth", elsewhere / "UNet.pth")
    nodes = root / "test-nodes"
    (nodes / "animeface_seg_test_nodes").mkdir(parents=True)
    (nodes / "animeface_seg_test_nodes" / "__init__.py").write_text(TEST_NODES)
    models = comfy_dir / "models" / paths.MODEL_FOLDER
    models.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights_dir / "isnetis.ckpt", models / "isnetis.ckpt")
    (models / "UNet.pth").write_bytes(b"not a checkpoint: the yaml entry comes first")
    config = root / "extra_model_paths.yaml"
    config.write_text(f"tests:\n    base_path: {root / 'elsewhere'}\n    animeface_seg: segmentation-weights/\n"
                      f"    custom_nodes: {nodes}\n")
    return {"config": config, "unet": elsewhere / "UNet.pth", "abg": models / "isnetis.ckpt"}


@pytest.fixture(scope="module")
def server(driver, comfy_dir, extra_paths, tmp_path_factory):
    """One running server, its weights found through folder_paths and extra_model_paths.yaml only."""
    saved = {name: os.environ.pop(name, None) for name in ("ANIMEFACE_SEG_WEIGHTS", paths.AUX_CKPTS_ENV)}
    srv = driver.ComfyServer(comfy_dir, python=sys.executable, work_dir=tmp_path_factory.mktemp("comfy-run"),
                             extra_args=["--extra-model-paths-config", str(extra_paths["config"])], quiet=True)
    try:
        srv.start()
    finally:
        os.environ.update({name: value for name, value in saved.items() if value is not None})
    yield srv
    srv.stop()


def _execute(driver, srv, workflow: dict) -> dict:
    """Submit a workflow and wait for it; its history entry (a failure shows the server's log)."""
    prompt_id = driver.submit_prompt(srv.base, workflow)
    try:
        return driver.wait_history(srv.base, prompt_id, timeout=600, proc=srv.proc)
    except driver.ExecutionFailed as exc:
        raise AssertionError(f"{exc}\n--- server log ---\n{srv.log_tail(40)}") from None


def _run(driver, srv, workflow: dict, out_dir: Path) -> dict[str, list[Path]]:
    """Submit a workflow, wait, download; saved files by SaveImage node id, in batch order."""
    entry = _execute(driver, srv, workflow)
    files: dict[str, list[Path]] = {}
    for item in driver.download_outputs(srv.base, entry, str(out_dir)):
        files.setdefault(item["node_id"], []).append(Path(item["path"]))
    return {k: sorted(v) for k, v in files.items()}


def _upload(driver, srv, path: Path, name: str) -> str:
    return driver.upload_image(srv.base, str(path), name=name)["name"]


def _segment_branch(prefix: str, image: list, remove_background: bool) -> dict:
    """Preprocessor + SaveImage (map) + MaskToImage -> SaveImage (mask) on ``image``."""
    return {
        f"{prefix}seg": {"class_type": NODE, "inputs": {
            "image": image, "remove_background_using_abg": remove_background, "resolution": 512}},
        f"{prefix}map": {"class_type": "SaveImage", "inputs": {"images": [f"{prefix}seg", 0],
                                                              "filename_prefix": f"{prefix}map"}},
        f"{prefix}m2i": {"class_type": "MaskToImage", "inputs": {"mask": [f"{prefix}seg", 1]}},
        f"{prefix}mask": {"class_type": "SaveImage", "inputs": {"images": [f"{prefix}m2i", 0],
                                                               "filename_prefix": f"{prefix}mask"}},
    }


def _golden_workflow(names: dict[str, str], remove_background: bool) -> dict:
    workflow = {}
    for case, name in names.items():
        workflow[f"{case}load"] = {"class_type": "LoadImage", "inputs": {"image": name}}
        workflow.update(_segment_branch(case, [f"{case}load", 0], remove_background))
    return workflow


def _log_count(srv, text: str) -> int:
    return Path(srv.log_path).read_text(errors="replace").count(text)


@pytest.fixture(scope="module")
def golden_names(driver, server, reference) -> dict[str, str]:
    return {case: _upload(driver, server, reference / "golden" / case / "input.png", f"{case}.png") for case in CASES}


def test_both_installations_load_and_register_the_node(driver, server):
    assert server.import_failures() == []
    log = Path(server.log_path).read_text(errors="replace")
    for folder in ("animeface-seg", "animeface_seg_loader"):
        assert f"custom_nodes/{folder}" in log and f"{folder} (IMPORT FAILED)" not in log
    info = driver.get_json(server.base, f"/object_info/{NODE}")[NODE]
    assert info["display_name"] == "Anime Face Segmentor (animeface-seg)"
    assert info["category"] == "ControlNet Preprocessors/Semantic Segmentation"
    assert info["output"] == ["IMAGE", "MASK"]
    optional = info["input"]["optional"]
    assert optional["remove_background_using_abg"][1]["default"] is True
    assert optional["resolution"][1]["default"] == 512


def test_maps_and_masks_match_the_reference(driver, server, golden_names, reference, tmp_path):
    files = _run(driver, server, _golden_workflow(golden_names, True), tmp_path)
    for case in CASES:
        golden = reference / "golden" / case
        saved_map = read_rgb(files[f"{case}map"][0])
        assert agreement(saved_map, read_rgb(golden / "map.png")) >= 0.80, case
        mask = read_gray(files[f"{case}mask"][0]).astype(int)
        expected = read_gray(golden / "abg_mask.png").astype(int)
        assert mask.shape == expected.shape, case
        # SaveImage truncates, so a mask level k may come back as k - 1: within the tolerance.
        assert np.abs(mask - expected).mean() <= 5, case
    assert _log_count(server, "animeface-seg: loaded UNet.pth") == 1
    assert _log_count(server, "animeface-seg: loaded isnetis.ckpt") == 1


def test_keeping_the_background(driver, server, golden_names, reference, tmp_path):
    names = {case: golden_names[case] for case in ("tall", "gray")}
    files = _run(driver, server, _golden_workflow(names, False), tmp_path)
    for case in names:
        golden = reference / "golden" / case
        assert agreement(read_rgb(files[f"{case}map"][0]), read_rgb(golden / "map_keep.png")) >= 0.80, case
        mask = read_gray(files[f"{case}mask"][0])
        assert mask.shape == read_gray(golden / "abg_mask.png").shape and (mask == 255).all(), case


def _probe(node: str, image: list, mask: list, path: Path) -> dict:
    return {node: {"class_type": PROBE, "inputs": {"image": image, "mask": mask, "path": str(path)}}}


def _seg(node: str, image: list, **inputs) -> dict:
    return {node: {"class_type": NODE, "inputs": {"image": image, **inputs}}}


def _probed(driver, srv, nodes: dict, out: Path) -> dict[str, dict]:
    """Run a workflow whose probes write to ``out/<name>``; by name, what each probe received (``received``: the
    JSON description) and the ``image`` and ``mask`` tensors themselves."""
    _execute(driver, srv, nodes)
    found = {}
    for described in sorted(out.glob("*.json")):
        tensors = torch.load(described.with_suffix(".pt"), weights_only=True)
        found[described.stem] = {"received": json.loads(described.read_text()), **tensors}
    return found


def _assert_contract(probe: dict, batch: int, height: int, width: int) -> None:
    """IMAGE (B, H, W, 3) and MASK exactly (B, H, W), float32 on the CPU, in [0, 1]."""
    image, mask = probe["received"]["image"], probe["received"]["mask"]
    assert (image["type"], image["shape"], image["dtype"], image["device"]) == \
        ("Tensor", [batch, height, width, 3], "torch.float32", "cpu"), image
    assert (mask["type"], mask["shape"], mask["dtype"], mask["device"]) == \
        ("Tensor", [batch, height, width], "torch.float32", "cpu"), mask
    assert 0.0 <= image["min"] <= image["max"] <= 1.0 and 0.0 <= mask["min"] <= mask["max"] <= 1.0


def _palette_only(image: torch.Tensor) -> bool:
    colours = {tuple(c) for c in (image * 255).round().to(torch.uint8).reshape(-1, 3).unique(dim=0).tolist()}
    return colours <= {tuple(c) for c in CLASS_COLORS}


@pytest.fixture(scope="module")
def tall(driver, server, reference) -> dict:
    """The golden 'tall' picture uploaded, with its original and processed sizes (height, width)."""
    golden = reference / "golden" / "tall"
    with Image.open(golden / "input.png") as image, Image.open(golden / "map.png") as processed:
        original, at_512 = image.size[::-1], processed.size[::-1]
    return {"name": _upload(driver, server, golden / "input.png", "probe_tall.png"), "original": original,
            "processed": at_512, "golden": golden}


def test_every_input_gives_the_mask_and_image_contract(driver, server, tall, cached_factory, weights_dir,
                                                       tmp_path):
    """remove_background_using_abg and output_size, each both ways: shapes, dtypes, ranges and values."""
    load = {"load": {"class_type": "LoadImage", "inputs": {"image": tall["name"]}}}
    nodes = dict(load)
    for size in ("processed", "original"):
        for remove in (True, False):
            name = f"{size}_{'abg' if remove else 'keep'}"
            nodes.update(_seg(name, ["load", 0], remove_background_using_abg=remove, resolution=512,
                              output_size=size))
            nodes.update(_probe(f"probe_{name}", [name, 0], [name, 1], tmp_path / name))
    nodes.update(_seg("defaults", ["load", 0]))  # every optional input left out
    nodes.update(_probe("probe_defaults", ["defaults", 0], ["defaults", 1], tmp_path / "defaults"))
    got = _probed(driver, server, nodes, tmp_path)
    assert set(got) == {"processed_abg", "processed_keep", "original_abg", "original_keep", "defaults"}
    for name, probe in got.items():
        _assert_contract(probe, 1, *tall[name.split("_")[0] if name != "defaults" else "processed"])
        assert _palette_only(probe["image"]), name
    for name in ("processed_keep", "original_keep"):  # the background kept: a mask of ones
        assert torch.equal(got[name]["mask"], torch.ones(1, *tall[name.split("_")[0]])), name
    settings = got["processed_abg"]["received"]["settings"]
    assert settings["now"] == settings["at_start"]  # the node changed no process-wide setting of ComfyUI's
    abg = got["processed_abg"]
    assert torch.equal(got["defaults"]["image"], abg["image"]) and torch.equal(got["defaults"]["mask"], abg["mask"])
    assert len(abg["mask"].unique()) > 2  # a soft mask, not a thresholded or constant one
    expected_mask = torch.from_numpy(read_gray(tall["golden"] / "abg_mask.png")).float() / 255
    assert (abg["mask"][0] - expected_mask).abs().mean() <= 5 / 255
    assert agreement((abg["image"][0] * 255).round().byte().numpy(), read_rgb(tall["golden"] / "map.png")) >= 0.80
    # At the original size: the engine's own result at that size (same networks and weights).
    engine = cached_factory(weights_dir=weights_dir, device="cpu", output_size="original")
    result = engine([tall["golden"] / "input.png"])[0]
    original = got["original_abg"]
    assert agreement((original["image"][0] * 255).round().byte().numpy(), result.colors) >= 0.99
    assert ((original["mask"][0] * 255).round() - torch.from_numpy(result.mask).float()).abs().mean() <= 1.0


def test_a_resolution_other_than_512_is_refused(driver, server, tall):
    nodes = {"load": {"class_type": "LoadImage", "inputs": {"image": tall["name"]}},
             **_seg("seg", ["load", 0], resolution=576),
             "save": {"class_type": "SaveImage", "inputs": {"images": ["seg", 0], "filename_prefix": "r"}}}
    with pytest.raises(driver.PromptRejected, match="resolution"):
        driver.submit_prompt(server.base, nodes)


def test_gray_and_rgba_images_are_made_rgb_as_the_readme_says(driver, server, tall, tmp_path):
    """A 1-channel IMAGE is its gray repeated; an RGBA IMAGE is alpha over white (as the original)."""
    nodes = {"load": {"class_type": "LoadImage", "inputs": {"image": tall["name"]}}}
    for mode in ("gray", "rgba"):
        nodes[mode] = {"class_type": CONVERT, "inputs": {"image": ["load", 0], "mode": mode, "amount": 1}}
        for variant, output in (("as_given", 0), ("equivalent", 1)):
            name = f"{mode}_{variant}"
            nodes.update(_seg(name, [mode, output]))
            nodes.update(_probe(f"probe_{name}", [name, 0], [name, 1], tmp_path / name))
    nodes.update(_seg("rgb", ["load", 0]))
    nodes.update(_probe("probe_rgb", ["rgb", 0], ["rgb", 1], tmp_path / "rgb"))
    got = _probed(driver, server, nodes, tmp_path)
    for mode in ("gray", "rgba"):
        given, equivalent = got[f"{mode}_as_given"], got[f"{mode}_equivalent"]
        _assert_contract(given, 1, *tall["processed"])
        assert torch.equal(given["image"], equivalent["image"]), mode
        assert torch.equal(given["mask"], equivalent["mask"]), mode
    # The alpha ramp changed the picture: the RGBA result is not the plain RGB one (alpha was not dropped).
    assert not torch.equal(got["rgba_as_given"]["mask"], got["rgb"]["mask"])


def test_a_batch_gives_each_image_its_own_result_in_order_without_loading_again(driver, server, reference,
                                                                                tmp_path):
    source = reference / "golden" / "wide" / "input.png"
    flipped = tmp_path / "flipped.png"
    with Image.open(source) as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    wide, new = _upload(driver, server, source, "batch_wide.png"), _upload(driver, server, flipped, "flipped.png")
    loads = _log_count(server, "animeface-seg: loaded")
    out = tmp_path / "probes"
    out.mkdir()
    got = _probed(driver, server, {
        "a": {"class_type": "LoadImage", "inputs": {"image": new}},
        "b": {"class_type": "LoadImage", "inputs": {"image": wide}},
        "ab": {"class_type": "ImageBatch", "inputs": {"image1": ["a", 0], "image2": ["b", 0]}},
        **_seg("batch", ["ab", 0]), **_probe("p_batch", ["batch", 0], ["batch", 1], out / "batch"),
        **_seg("only_a", ["a", 0]), **_probe("p_a", ["only_a", 0], ["only_a", 1], out / "only_a"),
        **_seg("only_b", ["b", 0]), **_probe("p_b", ["only_b", 0], ["only_b", 1], out / "only_b"),
    }, out)

    assert _log_count(server, "animeface-seg: loaded") == loads  # a new execution reads no checkpoint again
    batch = got["batch"]
    with Image.open(reference / "golden" / "wide" / "map.png") as processed:
        _assert_contract(batch, 2, processed.height, processed.width)
    for index, single in enumerate((got["only_a"], got["only_b"])):
        assert torch.equal(batch["image"][index], single["image"][0]), index
        assert torch.equal(batch["mask"][index], single["mask"][0]), index
    assert not torch.equal(got["only_a"]["mask"], got["only_b"]["mask"])  # two different pictures


def test_weights_come_from_comfyuis_model_paths_in_order(driver, server, extra_paths, tmp_path):
    """UNet.pth from the yaml's animeface_seg: folder (the garbage one in models/ is never read), isnetis.ckpt
    from models/animeface_seg/; each read once."""
    _run(driver, server, _golden_workflow({"square": _upload(driver, server, REFERENCE / "golden" / "square" /
                                                             "input.png", "weights_square.png")}, True), tmp_path)
    log = Path(server.log_path).read_text(errors="replace")
    assert f"animeface-seg: loaded UNet.pth from {extra_paths['unet']}" in log
    assert f"animeface-seg: loaded isnetis.ckpt from {extra_paths['abg']}" in log
    assert log.count("animeface-seg: loaded UNet.pth") == 1 and log.count("animeface-seg: loaded isnetis.ckpt") == 1


def test_cancel_stops_the_node_between_device_batches(driver, server, tmp_path):
    """POST /interrupt during a long batch: the prompt ends interrupted inside our node, which never returns."""
    small = make_image(tmp_path / "small.png", (64, 64), seed=7)
    name = _upload(driver, server, small, "cancel_small.png")
    nodes = {"load": {"class_type": "LoadImage", "inputs": {"image": name}},
             "many": {"class_type": CONVERT, "inputs": {"image": ["load", 0], "mode": "repeat", "amount": 512}},
             **_seg("seg", ["many", 0], remove_background_using_abg=False),
             **_probe("probe", ["seg", 0], ["seg", 1], tmp_path / "never")}
    prompt_id = driver.submit_prompt(server.base, nodes)
    deadline = time.monotonic() + 120
    while not any(item[1] == prompt_id for item in driver.get_json(server.base, "/queue")["queue_running"]):
        assert time.monotonic() < deadline, "the prompt never started"
        time.sleep(0.1)
    time.sleep(3)  # inside the node: 512 images at 512 take far longer than this on any CPU (about 0.1 s each)
    driver.post_json(server.base, "/interrupt", {"prompt_id": prompt_id})
    with pytest.raises(driver.ExecutionFailed, match="interrupted at node seg"):
        driver.wait_history(server.base, prompt_id, timeout=300, proc=server.proc)
    status = driver.get_json(server.base, f"/history/{prompt_id}")[prompt_id]["status"]
    interrupted = [data for kind, data in status["messages"] if kind == "execution_interrupted"]
    assert interrupted and interrupted[0]["node_type"] == NODE and "seg" not in interrupted[0]["executed"]
    assert not (tmp_path / "never.json").exists()


def test_comfyui_model_management_holds_the_networks_and_can_unload_them(driver, server, tmp_path):
    """README: the networks are placed through ComfyUI's model management, which offloads them when other models
    need the memory. After a run both are among the models it holds; POST /free {"unload_models": true} has it
    unload them as it unloads its own; the next run has them loaded again, without reading a checkpoint."""
    ours = {"UNet", "ISNet"}

    def held(n: int, after: list | None = None) -> set[str]:
        path = tmp_path / f"held{n}.json"
        nodes = {"held": {"class_type": HELD, "inputs": {"path": str(path), **({"after": after} if after else {})}}}
        return nodes, path

    def run(seed: int, n: int) -> set[str]:
        name = _upload(driver, server, make_image(tmp_path / f"h{seed}.png", (96, 64), seed=seed), f"held_{seed}.png")
        nodes, path = held(n, ["seg", 0])
        nodes.update({"load": {"class_type": "LoadImage", "inputs": {"image": name}},
                      **_seg("seg", ["load", 0], remove_background_using_abg=True)})
        _execute(driver, server, nodes)
        return set(json.loads(path.read_text()))

    assert ours <= run(21, 1)
    loads = _log_count(server, "animeface-seg: loaded")
    driver.post_json(server.base, "/free", {"unload_models": True})
    deadline = time.monotonic() + 60
    for n in range(2, 1000):  # the flag is handled by ComfyUI's worker between prompts: ask until it was
        nodes, path = held(n)
        _execute(driver, server, nodes)
        if not ours & set(json.loads(path.read_text())):
            break
        assert time.monotonic() < deadline, "ComfyUI still holds the networks after /free"
        time.sleep(0.5)
    assert ours <= run(22, 1000)
    assert _log_count(server, "animeface-seg: loaded") == loads  # loaded again from memory, no checkpoint read


def _find_in_subprocess(code: str, env: dict[str, str]) -> str:
    """Run ``paths.find`` code in a fresh interpreter with exactly ``env`` set (the hub reads it at import)."""
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), **env}
    proc = subprocess.run([sys.executable, "-c", "from animeface_seg.integrations.comfyui import paths\n"
                           "from animeface_seg.engine.weights import ABG, UNET, WeightsError\n"
                           "try:\n" + "".join(f"    {line}\n" for line in code.splitlines())
                           + "except WeightsError as error:\n    print(error)\n"],
                          capture_output=True, text=True, env=full, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_missing_weights_name_every_place_looked_at(tmp_path):
    """A real empty hub cache and no network: the message names every folder, the cache and the offline flag."""
    models = [tmp_path / "ComfyUI" / "models" / "animeface_seg", tmp_path / "extra" / "animeface_seg"]
    custom_nodes = tmp_path / "ComfyUI" / "custom_nodes"
    aux = custom_nodes / "comfyui_controlnet_aux"
    (aux / "ckpts").mkdir(parents=True)
    (custom_nodes / "unrelated-pack").mkdir()
    env_dir = tmp_path / "env-weights"
    env_dir.mkdir()
    hub = {"HF_HOME": str(tmp_path / "empty-hf-home"), "HF_HUB_OFFLINE": "1"}
    message = _find_in_subprocess(f"paths.find(UNET, {[str(m) for m in models]!r}, [{str(custom_nodes)!r}])",
                                  {**hub, "ANIMEFACE_SEG_WEIGHTS": str(env_dir)})
    for place in [*(m / "UNet.pth" for m in models), aux / "ckpts" / paths.AUX_FILES["unet"], env_dir]:
        assert str(place) in message, message
    assert "unrelated-pack" not in message

    message = _find_in_subprocess(f"paths.find(ABG, {[str(m) for m in models]!r}, [{str(custom_nodes)!r}], "
                                  f"aux_env={str(tmp_path / 'announced')!r})", hub)
    assert str(tmp_path / "announced" / paths.AUX_FILES["abg"]) in message
    assert str(aux / "ckpts" / paths.AUX_FILES["abg"]) in message
    assert f"Hugging Face cache ({tmp_path / 'empty-hf-home' / 'hub'})" in message and "HF_HUB_OFFLINE" in message


def test_the_first_place_holding_the_file_wins(tmp_path, weights_dir):
    models = tmp_path / "models" / "animeface_seg"
    aux_file = tmp_path / "custom_nodes" / "ComfyUI-ControlNet_Aux-main" / "ckpts" / paths.AUX_FILES["unet"]
    aux_file.parent.mkdir(parents=True)
    shutil.copyfile(weights_dir / "UNet.pth", aux_file)
    assert paths.find(UNET, [models], [tmp_path / "custom_nodes"]) == aux_file
    models.mkdir(parents=True)
    shutil.copyfile(weights_dir / "UNet.pth", models / "UNet.pth")
    assert paths.find(UNET, [models], [tmp_path / "custom_nodes"]) == models / "UNet.pth"


def test_the_pack_folder_works_without_the_package_installed(tmp_path):
    """A copied repository loads with nothing installed: its own folder is put on sys.path."""
    pack = tmp_path / "custom_nodes" / "my-copy"
    shutil.copytree(REPO / "animeface_seg", pack / "animeface_seg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO / "__init__.py", pack / "__init__.py")
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location({str(pack)!r}, {str(pack / '__init__.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "import animeface_seg\n"
        "print(animeface_seg.__file__); print(list(module.NODE_CLASS_MAPPINGS)); print('torch' in sys.modules)\n"
    )
    # -S: no site-packages, so no installed animeface_seg (and no torch).
    proc = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": os.environ.get("PATH", "")}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    module_file, classes, torch_loaded = proc.stdout.splitlines()
    assert Path(module_file).resolve() == (pack / "animeface_seg" / "__init__.py").resolve()
    assert classes == f"['{NODE}', 'AnimeFaceClassMask']"
    assert torch_loaded == "False"  # registering the node loads nothing heavy


def test_importing_the_package_does_not_import_the_node_pack(comfy_dir):
    """Even with ComfyUI importable, the package and its engine leave the node pack and comfy alone."""
    code = ("import sys, animeface_seg, animeface_seg.integrations\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('comfy', 'folder_paths')\n"
            "             or m.startswith('animeface_seg.integrations.')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(comfy_dir)])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_registry_metadata_reads_with_comfyuis_own_parser(comfy_dir):
    code = ("import sys; from comfy_config import config_parser\n"
            "c = config_parser.extract_node_configuration(sys.argv[1])\n"
            "print(c.project.name, c.project.version, c.tool_comfy.publisher_id, c.tool_comfy.display_name, sep='|')\n"
            "print(sorted(m.location for m in c.tool_comfy.models))")
    env = {**os.environ, "PYTHONPATH": str(comfy_dir)}
    proc = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import animeface_seg

    identity, models = proc.stdout.splitlines()
    assert identity == f"animeface-seg|{animeface_seg.__version__}|animeface-seg|Anime Face Segmentor (animeface-seg)"
    assert models == "['/models/animeface_seg/UNet.pth', '/models/animeface_seg/isnetis.ckpt']"
