"""Runtimes: how ``auto`` chooses, the ONNX export cache, and the reference path's exactness."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import onnxruntime

from animeface_seg.engine.runtimes import export
from animeface_seg.engine.runtimes.cached_export import CachedExport, cpu_only
from animeface_seg.engine.runtimes.onnxruntime_session import _cpu_key
from animeface_seg.engine.runtimes.select import RuntimeChoiceError, choose, installed
from conftest import agreement, read_rgb


def test_auto_takes_the_fastest_installed_runtime_on_cpu_and_torch_elsewhere():
    assert choose("auto", "cpu", "fp32") == "onnxruntime"  # onnxruntime is part of the default install
    assert choose("AUTO", "cuda", "fp16") == "torch"
    assert choose("auto", "cpu", "fp32", place=False) == "torch"  # a host's own modules
    assert choose("auto", "cpu", "bf16", native_bf16=False) == "torch"
    assert choose("auto", "cpu", "bf16", native_bf16=True) == ("openvino" if installed("openvino") else "torch")
    assert choose("reference", "cuda", "fp32") == "reference"


@pytest.mark.parametrize("runtime, device, precision, native, words", [
    ("onnx", "cpu", "fp32", False, "unknown runtime 'onnx'"),
    ("reference", "cpu", "bf16", True, "fp32 only"),
    ("onnxruntime", "cuda", "fp16", False, "CPU only"),
    ("onnxruntime", "cpu", "bf16", True, "fp32 only; for bf16 use openvino or torch"),
    ("openvino", "cpu", "bf16", False, "native bf16"),
])
def test_impossible_runtime_choices_are_refused_with_the_reason(runtime, device, precision, native, words):
    with pytest.raises(RuntimeChoiceError, match=words) as info:
        choose(runtime, device, precision, native_bf16=native)
    assert info.value.setting == "runtime"


def test_a_missing_runtime_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an environment without it imports
    with pytest.raises(RuntimeChoiceError, match=r"pip install 'animeface-seg\[openvino\]'"):
        choose("openvino", "cpu", "fp32")


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ANIMEFACE_SEG_CACHE", str(tmp_path / "mine"))
    assert export.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("ANIMEFACE_SEG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert export.cache_dir() == tmp_path / "xdg" / "animeface-seg"


def test_export_key_depends_on_every_weight_and_the_kind():
    paths = {export.ExportKey("a", "b").path, export.ExportKey("a", "c").path, export.ExportKey("d", "b").path,
             export.ExportKey("a", None).path}
    assert len(paths) == 4
    assert export.ExportKey("a", None).path.name.startswith("keep-background-")
    assert export.ExportKey("a", "b").path == export.ExportKey("a", "b").path


def test_a_cached_export_is_used_as_it_is(weights_dir, tmp_path, reference, monkeypatch):
    """Once exported, the same checkpoint file finds its export by its memoised digest: nothing is
    exported or optimised again (the files are the same inodes), and the results are the same. That
    the checkpoints are then not even loaded: ``test_a_cpu_run_over_a_cached_export_never_imports_torch``."""
    from animeface_seg import Segmentor

    monkeypatch.setenv("ANIMEFACE_SEG_CACHE", str(tmp_path / "cache"))  # a cache of its own: counts its files
    folder = tmp_path / "weights"
    folder.mkdir()
    unet = folder / "UNet.pth"
    unet.write_bytes((weights_dir / "UNet.pth").read_bytes())
    first = Segmentor.from_pretrained(unet=unet, device="cpu", runtime="onnxruntime", remove_background=False,
                                      output_size="processed")
    onnx_files = sorted(p for p in export.cache_dir().glob("onnx/keep-background-*.onnx") if ".ort-" not in p.name)
    assert onnx_files and not list(export.cache_dir().glob("onnx/.*.tmp"))
    # The export, and beside it the graph ONNX Runtime optimised for this CPU, each sealed by its record.
    files = onnx_files + [onnx_files[0].with_name(f"{onnx_files[0].stem}.ort-{onnxruntime.__version__}-{_cpu_key()}.onnx")]
    assert len(onnx_files) == 1 and sorted(export.cache_dir().glob("onnx/keep-background-*.onnx")) == files
    assert all(path.with_suffix(".json").is_file() for path in files)
    written = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files]
    again = Segmentor.from_pretrained(unet=unet, device="cpu", runtime="onnxruntime", remove_background=False,
                                      output_size="processed")
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files] == written
    case = reference / "golden" / "square" / "input.png"
    assert np.array_equal(first([case])[0].classes, again([case])[0].classes)
    assert again.fingerprints == first.fingerprints and again.fingerprints["abg"] is None


def test_other_weights_get_their_own_export(weights_dir, reference, tmp_path, monkeypatch):
    """Modules passed in are exported under a digest of their tensors: changed weights, another file."""
    from animeface_seg import Segmentor
    from animeface_seg.engine.weights import UNET, load_state_dict

    monkeypatch.setenv("ANIMEFACE_SEG_CACHE", str(tmp_path / "cache"))  # a cache of its own: counts its files
    state = load_state_dict(UNET, weights_dir / "UNet.pth")
    same = Segmentor(state, device="cpu", runtime="onnxruntime", output_size="processed")
    changed_state = {k: (-v if k == "de_block0.1.weight" else v) for k, v in state.items()}
    changed = Segmentor(changed_state, device="cpu", runtime="onnxruntime", output_size="processed")
    assert len([p for p in export.cache_dir().glob("onnx/*.json") if ".ort-" not in p.name]) == 2
    assert same.fingerprints["unet"] != changed.fingerprints["unet"]
    case = reference / "golden" / "square" / "input.png"
    assert agreement(same([case])[0].colors, changed([case])[0].colors) < 0.5


def test_reference_runtime_runs_the_original_arithmetic_bit_for_bit(weights_dir, runtime_segmentor, reference):
    """``reference``: unfolded modules, default memory format, fp32, the composite truncated as the
    original does; its outputs equal those of the networks run by hand that way."""
    from animeface_seg.engine.optimize import count_batchnorms
    from animeface_seg.engine.weights import load_isnet, load_unet

    seg = runtime_segmentor("reference")
    assert count_batchnorms(seg.isnet) == 112 and count_batchnorms(seg.unet) == 48
    assert seg.networks.memory_format == torch.contiguous_format and seg.dtype == torch.float32
    unet, isnet = load_unet(weights_dir / "UNet.pth"), load_isnet(weights_dir / "isnetis.ckpt")
    case = reference / "golden" / "wide" / "input.png"
    prepared = seg.prepare(read_rgb(case))
    with torch.inference_mode():
        rgb = prepared.pixels[None].float()
        mask = isnet(rgb / 255.0)
        composite = (mask * rgb + 255.0 * (1.0 - mask)).to(torch.uint8).float()
        classes = torch.softmax(unet(composite / 255.0), 1).argmax(1).to(torch.uint8)
        ours_classes, ours_mask = seg.forward(prepared.pixels[None])
    assert torch.equal(ours_classes, classes) and torch.equal(ours_mask, mask[:, 0])


def test_thread_count_follows_the_affinity_mask_and_omp_num_threads(monkeypatch):
    from animeface_seg.engine.runtimes.onnxruntime_session import available_cpus

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert available_cpus() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cpus() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "999")
    assert available_cpus() == len(os.sched_getaffinity(0))


def test_a_cpu_run_over_a_cached_export_never_imports_torch(weights_dir, runtime_segmentor, tmp_path):
    """The start-up promise of issue 15: with the export cached, the command decodes, resizes, runs ONNX
    Runtime and writes its PNGs without importing torch (about 1.8 s of every run), and its map equals
    the library's on the same runtime."""
    from PIL import Image

    from conftest import make_image

    seg = runtime_segmentor("onnxruntime")  # makes the export in the session's cache if no test did yet
    inputs = tmp_path / "in"
    make_image(inputs / "a.png", (300, 200), mode="RGBA", seed=3)
    make_image(inputs / "b.jpg", (640, 480), seed=4)
    script = ("import atexit, sys\n"
              "atexit.register(lambda: sys.stderr.write(f\"torch imported: {'torch' in sys.modules}\\n\"))\n"
              "from animeface_seg.cli import main\n"
              "main()\n")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ANIMEFACE_SEG_WEIGHTS", None)
    proc = subprocess.run([sys.executable, "-c", script, str(inputs), "-o", str(out), "--device", "cpu",
                           "--weights-dir", str(weights_dir), "--size", "processed"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "torch imported: False" in proc.stderr and "onnxruntime" in proc.stderr
    for name in ("a", "b"):
        ours = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))
        expected = seg([inputs / f"{name}.{'png' if name == 'a' else 'jpg'}"])[0].colors
        assert np.array_equal(ours, expected)


class _TensorOutputs:
    """ONNX Runtime's networks handing back CPU tensors: what a runtime of the export on the device side (a GPU
    ONNX runtime, say) gives the ``Segmentor``; everything else is the wrapped networks'."""

    def __init__(self, networks) -> None:
        self._networks = networks

    def __getattr__(self, name: str):
        return getattr(self._networks, name)

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        classes, mask = self._networks(pixels.cpu().numpy())
        return torch.from_numpy(classes), None if mask is None else torch.from_numpy(mask)


def _open_tensor_outputs(found, target, cache):
    from animeface_seg.engine.runtimes.onnxruntime_session import OnnxRuntimeNetworks

    return _TensorOutputs(OnnxRuntimeNetworks(found, cache))


@pytest.fixture
def toy_runtime():
    """A toy runtime registered for one test: the cached export run by ONNX Runtime, on the device side."""
    from animeface_seg.engine.runtimes import registry

    toy = registry.register(registry.Runtime(
        name="onnxruntime-tensors", builder=CachedExport(_open_tensor_outputs), side="device", fold=True,
        refuse=lambda device_type, precision, place, native: cpu_only("onnxruntime-tensors", device_type, place),
        package="onnxruntime"))
    yield toy
    registry.unregister(toy.name)


def test_a_new_runtime_is_one_record_in_the_registry(toy_runtime, weights_dir, runtime_segmentor, reference):
    """Issue 24: a runtime is a module with one ``Runtime`` record plus one registry line. A toy one, registered
    at run time, is chosen by name (its refusals its own), builds through its record's builder, works on the
    side its record names (tensors, not the ONNX runtimes' host arrays) and segments as ``onnxruntime`` does
    on the same network input."""
    from animeface_seg.engine.results import Prepared
    from animeface_seg.engine.runtimes import registry
    from animeface_seg.engine.segmentor import Segmentor

    assert "onnxruntime-tensors" in registry.names()
    with pytest.raises(RuntimeChoiceError, match="runtime onnxruntime-tensors runs on the CPU only"):
        choose("onnxruntime-tensors", "cuda", "fp16")
    seg = Segmentor.from_pretrained(weights_dir=weights_dir, device="cpu", runtime="onnxruntime-tensors",
                                    output_size="processed")
    assert seg.runtime == "onnxruntime-tensors" and seg.description == "cpu, fp32, onnxruntime-tensors"
    assert seg.unet is None and seg.fingerprints == runtime_segmentor("onnxruntime").fingerprints
    prepared = seg.prepare(read_rgb(reference / "golden" / "wide" / "input.png"))
    assert isinstance(prepared.pixels, torch.Tensor)
    ours = seg.run_on_device([prepared])[0]
    assert isinstance(ours.classes, torch.Tensor)
    host = Prepared(prepared.pixels.numpy(), prepared.original_size, prepared.processed_size)
    expected = runtime_segmentor("onnxruntime").run([host])[0]
    assert np.array_equal(ours.classes.numpy(), expected.classes) and len(np.unique(expected.classes)) > 2
    assert np.abs(ours.mask.numpy().astype(int) - expected.mask).max() <= 1
