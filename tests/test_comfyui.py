"""The ComfyUI node pack inside a real ComfyUI 0.8.0 server (--cpu), driven over HTTP.

One server for the module: the repository linked into ``custom_nodes/`` as a user clones it, plus
the one-line loader folder pip users make; stand-in weights in ``models/animeface_seg/``. The
workflows are API-format LoadImage -> AnimeFaceSegPreprocessor -> SaveImage (map) and
MaskToImage -> SaveImage (mask). ComfyUI's source and driver come from ``shared/comfyui/``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animeface_seg.engine import weights
from animeface_seg.engine.weights import ABG, UNET, WeightsError
from animeface_seg.integrations.comfyui import paths
from conftest import REFERENCE, REPO, agreement, read_gray, read_rgb

COMFY_SHARED = Path(os.environ.get("ANIMEFACE_SEG_COMFYUI", REFERENCE.parent / "comfyui"))
TARBALL = COMFY_SHARED / "comfyui-0.8.0-src.tar.gz"
LOADER_LINE = "from animeface_seg.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS\n"
NODE = "AnimeFaceSegPreprocessor"
CASES = ("tall", "wide", "gray")


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
def server(driver, comfy_dir, weights_dir, tmp_path_factory):
    """One running server with stand-in weights in models/animeface_seg/."""
    models = comfy_dir / "models" / paths.MODEL_FOLDER
    models.mkdir(parents=True, exist_ok=True)
    for name in ("UNet.pth", "isnetis.ckpt"):
        shutil.copyfile(weights_dir / name, models / name)
    saved = os.environ.pop("ANIMEFACE_SEG_WEIGHTS", None)
    srv = driver.ComfyServer(comfy_dir, python=sys.executable, work_dir=tmp_path_factory.mktemp("comfy-run"),
                             quiet=True)
    try:
        srv.start()
    finally:
        if saved is not None:
            os.environ["ANIMEFACE_SEG_WEIGHTS"] = saved
    yield srv
    srv.stop()


def _run(driver, srv, workflow: dict, out_dir: Path) -> dict[str, list[Path]]:
    """Submit a workflow, wait, download; saved files by SaveImage node id, in batch order."""
    prompt_id = driver.submit_prompt(srv.base, workflow)
    try:
        entry = driver.wait_history(srv.base, prompt_id, timeout=300, proc=srv.proc)
    except driver.ExecutionFailed as exc:
        raise AssertionError(f"{exc}\n--- server log ---\n{srv.log_tail(40)}") from None
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


def test_a_batch_gives_one_result_per_image_in_order_without_loading_again(driver, server, reference, tmp_path):
    source = reference / "golden" / "wide" / "input.png"
    flipped = tmp_path / "flipped.png"
    with Image.open(source) as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    wide, new = _upload(driver, server, source, "batch_wide.png"), _upload(driver, server, flipped, "flipped.png")
    loads = _log_count(server, "animeface-seg: loaded")

    files = _run(driver, server, {
        "a": {"class_type": "LoadImage", "inputs": {"image": new}},
        "b": {"class_type": "LoadImage", "inputs": {"image": wide}},
        "ab": {"class_type": "ImageBatch", "inputs": {"image1": ["a", 0], "image2": ["b", 0]}},
        **_segment_branch("batch", ["ab", 0], True),
    }, tmp_path)

    assert _log_count(server, "animeface-seg: loaded") == loads  # a new execution reads no checkpoint again
    maps, masks = files["batchmap"], files["batchmask"]
    assert len(maps) == len(masks) == 2
    golden = reference / "golden" / "wide"
    assert agreement(read_rgb(maps[1]), read_rgb(golden / "map.png")) >= 0.80
    assert np.abs(read_gray(masks[1]).astype(int) - read_gray(golden / "abg_mask.png")).mean() <= 5
    assert agreement(read_rgb(maps[0]), read_rgb(golden / "map.png")) < 0.80  # the flipped picture's own map


def test_missing_weights_name_every_place_looked_at(tmp_path, monkeypatch):
    models = [tmp_path / "ComfyUI" / "models" / "animeface_seg", tmp_path / "extra" / "animeface_seg"]
    custom_nodes = tmp_path / "ComfyUI" / "custom_nodes"
    aux = custom_nodes / "comfyui_controlnet_aux"
    (aux / "ckpts").mkdir(parents=True)
    (custom_nodes / "unrelated-pack").mkdir()
    env_dir = tmp_path / "env-weights"
    env_dir.mkdir()
    monkeypatch.setenv("ANIMEFACE_SEG_WEIGHTS", str(env_dir))
    with pytest.raises(WeightsError) as error:
        paths.find(UNET, models, [custom_nodes], aux_env=None)
    message = str(error.value)
    for place in [*(m / "UNet.pth" for m in models), aux / "ckpts" / paths.AUX_FILES["unet"], env_dir]:
        assert str(place) in message
    assert "unrelated-pack" not in message

    monkeypatch.delenv("ANIMEFACE_SEG_WEIGHTS")
    monkeypatch.setattr(weights, "try_to_load_from_cache", lambda *args, **kwargs: None)  # an empty hub cache
    monkeypatch.setattr(weights.hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError) as error:
        paths.find(ABG, models, [custom_nodes], aux_env=str(tmp_path / "announced"))
    message = str(error.value)
    assert str(tmp_path / "announced" / paths.AUX_FILES["abg"]) in message
    assert str(aux / "ckpts" / paths.AUX_FILES["abg"]) in message and "Hugging Face cache" in message


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
