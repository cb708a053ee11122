"""The export cache heals: every cached file is checked before use, a damaged one is rebuilt with one
warning naming it, and a cache that cannot be written (read-only, full disk) is run without, after one
warning; exit 0 and the same results on both ONNX runtimes, nothing else on stderr.

Through the real command in a process (ONNX Runtime writes its own log lines to the process's stderr,
which only a process shows), over the keep-background export (the UNet alone: small, quick to rebuild).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from animeface_seg.engine.runtimes.cache_files import Cache, CacheWarning, sha256_of
from conftest import REPO, cli_command, make_image, read_rgb

ONNX_RUNTIMES = ("onnxruntime", "openvino")


def run(inputs: Path, out: Path, cache: Path, weights_dir: Path, runtime: str) -> subprocess.CompletedProcess:
    """The command, quiet (stderr holds only warnings and errors), on ``cache``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANIMEFACE_SEG_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    env.pop("ANIMEFACE_SEG_WEIGHTS", None)
    return subprocess.run(cli_command() + [str(inputs), "-o", str(out), "--quiet", "--keep-background", "--device",
                                           "cpu", "--runtime", runtime, "--weights-dir", str(weights_dir)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def pristine(weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A whole cache made by one run (export, its record, ONNX Runtime's optimised graph, digest memos),
    the input and the map that run wrote."""
    root = tmp_path_factory.mktemp("pristine")
    inputs = root / "in"
    make_image(inputs / "a.png", (96, 80), seed=5)
    done = run(inputs, root / "out", root / "cache", weights_dir, "onnxruntime")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    onnx_files = sorted((root / "cache" / "onnx").glob("keep-background-*.onnx"))
    assert len(onnx_files) == 2  # the export and the graph optimised for this CPU
    return {"cache": root / "cache", "inputs": inputs, "map": read_rgb(root / "out" / "a.png"),
            "export": next(p for p in onnx_files if ".ort-" not in p.name),
            "optimised": next(p for p in onnx_files if ".ort-" in p.name)}


def cut_short(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def overwrite_keeping_size_and_time(path: Path) -> None:
    """Bytes changed in the middle, size and modification time as they were: only the digest tells."""
    stat = path.stat()
    with open(path, "r+b") as f:
        f.seek(stat.st_size // 2)
        f.write(b"\x00" * 64)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def drop_fingerprints(record: Path) -> None:
    """A record that parses, with the size and digest right, but not what the export needs from it."""
    info = json.loads(record.read_text())
    del info["fingerprints"]
    record.write_text(json.dumps(info))


def weights_memo(cache: Path, weights_dir: Path) -> Path:
    """The digest memo of the UNet checkpoint."""
    unet = str((weights_dir / "UNet.pth").resolve())
    return next(p for p in (cache / "digests").iterdir() if json.loads(p.read_text())["file"].startswith(unet + "|"))


DAMAGES = {
    "export cut short": (lambda c, w: c["export"], cut_short),
    "export overwritten, same size and time": (lambda c, w: c["export"], overwrite_keeping_size_and_time),
    "export's record cut short": (lambda c, w: c["export"].with_suffix(".json"), cut_short),
    "export's record without fingerprints": (lambda c, w: c["export"].with_suffix(".json"), drop_fingerprints),
    "optimised graph cut short": (lambda c, w: c["optimised"], cut_short),
    "digest memo garbled": (weights_memo, lambda p: p.write_text('{"file": "x", "sha256": "0"}')),
}


@pytest.mark.parametrize(("damage", "runtime"), [(name, "onnxruntime") for name in DAMAGES] + [
    ("export cut short", "openvino")])
def test_a_damaged_cached_file_is_rebuilt_with_one_warning(pristine, weights_dir, tmp_path, damage, runtime):
    cache = tmp_path / "cache"
    shutil.copytree(pristine["cache"], cache)
    where, harm = DAMAGES[damage]
    mine = {name: cache / "onnx" / pristine[name].name for name in ("export", "optimised")}
    assert all(Cache(cache).check(path) is not None for path in mine.values())  # used once: digests memoised
    target = where(mine, weights_dir) if damage != "digest memo garbled" else where(cache, weights_dir)
    harm(target)
    done = run(pristine["inputs"], tmp_path / "out", cache, weights_dir, runtime)
    assert done.returncode == 0 and done.stdout == "", done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"animeface-seg: warning: the cached file {target} was damaged ("), lines
    assert lines[0].endswith("); rebuilt")
    assert np.array_equal(read_rgb(tmp_path / "out" / "a.png"), pristine["map"])
    assert sha256_of(mine["export"]) == sha256_of(pristine["export"])  # the same bytes as the first run made
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # whole and sealed again: the next run trusts them
        assert all(Cache(cache).check(path) is not None for path in mine.values())
    assert not [p for p in cache.rglob("*.tmp")]


def mount_tmpfs(mount: Path, size: int) -> None:
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.fail(f"cannot mount a tmpfs here (the test needs root): {done.stderr.decode()}")


@pytest.fixture
def full_disk(tmp_path: Path):
    """A real tmpfs of 1 MB: the keep-background export (about 6 MB) cannot be written to it."""
    mount_tmpfs(tmp_path / "full", 2**20)
    yield tmp_path / "full"
    subprocess.run(["umount", "-l", str(tmp_path / "full")], check=False)


@pytest.fixture
def full_disk_with_export(tmp_path: Path, pristine: dict):
    """A real tmpfs holding the export with 1 MB to spare: ONNX Runtime's optimised graph (about as large
    as the export) cannot be written to it."""
    mount_tmpfs(tmp_path / "full", pristine["export"].stat().st_size + 2**20)
    shutil.copytree(pristine["cache"] / "onnx", tmp_path / "full" / "onnx",
                    ignore=shutil.ignore_patterns("*.ort-*"))
    yield tmp_path / "full"
    subprocess.run(["umount", "-l", str(tmp_path / "full")], check=False)


def bind_read_only(folder: Path) -> None:
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
    if done.returncode:
        pytest.fail(f"cannot bind-mount here (the test needs root): {done.stderr.decode()}")


@pytest.fixture
def read_only(tmp_path: Path):
    """A real read-only bind mount of an empty folder."""
    folder = tmp_path / "ro"
    folder.mkdir()
    bind_read_only(folder)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def read_only_with_export(tmp_path: Path, pristine: dict):
    """A real read-only bind mount of a cache holding the export but not ONNX Runtime's optimised graph
    (which ONNX Runtime would be asked to write)."""
    folder = tmp_path / "ro"
    shutil.copytree(pristine["cache"] / "onnx", folder / "onnx")
    for path in (folder / "onnx").glob("*.ort-*"):
        path.unlink()
    bind_read_only(folder)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize(("unusable", "runtime"), [
    (unusable, runtime) for unusable in ("full_disk", "read_only", "read_only_with_export") for runtime in ONNX_RUNTIMES
] + [("full_disk_with_export", "onnxruntime")])  # OpenVINO skips writing a blob to a full disk, silently
def test_a_cache_that_cannot_be_written_is_run_without_after_one_warning(pristine, weights_dir, tmp_path, request,
                                                                         runtime, unusable):
    """Only our one line reaches stderr (no ONNX Runtime log, no traceback); the map is the same."""
    cache = request.getfixturevalue(unusable)
    done = run(pristine["inputs"], tmp_path / "out", cache, weights_dir, runtime)
    assert done.returncode == 0 and done.stdout == "", done.stderr + done.stdout
    reason = "No space left on device" if unusable.startswith("full_disk") else "Read-only file system"
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"animeface-seg: warning: cannot write the cache in {cache}"), lines
    assert f"({reason}); this run goes on without saving to it" in lines[0] and "$ANIMEFACE_SEG_CACHE" in lines[0]
    assert np.array_equal(read_rgb(tmp_path / "out" / "a.png"), pristine["map"])
    assert not [p for p in cache.rglob("*") if p.suffix == ".tmp" or ".ort-" in p.name]


def test_a_checkpoint_replaced_in_place_gets_a_new_export(weights_dir, reference, tmp_path, monkeypatch):
    """The weights' digest memo is keyed by the file's identity (inode, size, times), not its path: other
    weights written into the same file, same size, modification time put back, are new weights."""
    import torch

    from animeface_seg import Segmentor

    monkeypatch.setenv("ANIMEFACE_SEG_CACHE", str(tmp_path / "cache"))
    unet = tmp_path / "weights" / "UNet.pth"
    unet.parent.mkdir()
    shutil.copyfile(weights_dir / "UNet.pth", unet)
    options = {"device": "cpu", "runtime": "onnxruntime", "remove_background": False, "output_size": "processed"}
    first = Segmentor.from_pretrained(unet=unet, **options)
    state = torch.load(unet, map_location="cpu", weights_only=True)
    state = {k: (-v if k == "de_block0.1.weight" else v) for k, v in state.items()}
    replaced = tmp_path / "other" / "UNet.pth"  # the same name: torch.save names the archive after it
    replaced.parent.mkdir()
    torch.save(state, replaced)
    assert replaced.stat().st_size == unet.stat().st_size
    stat = unet.stat()
    with open(unet, "r+b") as f:
        f.write(replaced.read_bytes())
    os.utime(unet, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = Segmentor.from_pretrained(unet=unet, **options)
    assert again.fingerprints["unet"] != first.fingerprints["unet"]
    assert len([p for p in (tmp_path / "cache" / "onnx").glob("*.json") if ".ort-" not in p.name]) == 2
    case = reference / "golden" / "square" / "input.png"
    assert not np.array_equal(first([case])[0].classes, again([case])[0].classes)


EXPORTER = """
import contextlib, sys, time, warnings
warnings.filterwarnings("ignore", message="ONNX export mode is set to TrainingMode.EVAL")  # as the command does
from pathlib import Path
from animeface_seg.engine.models.stacked import StackedNetworks
from animeface_seg.engine.optimize import fold_batchnorm
from animeface_seg.engine.runtimes import export
from animeface_seg.engine.runtimes.cache_files import Cache
from animeface_seg.engine.runtimes.onnxruntime_session import OnnxRuntimeNetworks
from animeface_seg.engine.weights import UNET, load

unet, barrier, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
key = export.ExportKey(export.file_digest(unet), None)
assert export.cached(key) is None

def wait(step):  # both processes meet here
    (barrier / f"{step}-{me}").touch()
    while len(list(barrier.glob(f"{step}-*"))) < 2:
        time.sleep(0.01)

class Meeting(Cache):  # the real cache; both processes also meet once each holds its temporary file
    @contextlib.contextmanager
    def sealing(self, path, info):
        with super().sealing(path, info) as tmp:
            wait("write")
            yield tmp

def build():  # right before exporting
    module = fold_batchnorm(load(UNET, unet), inplace=True)
    wait("export")
    print("start", time.time())
    return StackedNetworks(module, None)

found = export.export(key, build, {"unet": "u", "abg": None}, Meeting())
print("end", time.time())
print("sha256", Cache().check(found.path)["sha256"])
OnnxRuntimeNetworks(found)
print("ok", found.model is None)
"""


def test_two_processes_exporting_at_once_both_finish_with_one_whole_verified_file(weights_dir, tmp_path):
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "ANIMEFACE_SEG_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", EXPORTER, str(weights_dir / "UNet.pth"), str(barrier), me],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for me in "ab"]
    said = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0 and stderr == "", stderr
        said.append(dict(line.split(" ", 1) for line in stdout.splitlines()))
    assert all(lines["ok"] == "True" for lines in said)  # written to the cache, not kept in memory
    assert max(float(lines["start"]) for lines in said) < min(float(lines["end"]) for lines in said)  # overlapped
    exports = [p for p in cache.glob("onnx/*.onnx") if ".ort-" not in p.name]
    assert len(exports) == 1 and len(list(cache.glob("onnx/*.json"))) == 2  # export and optimised graph, sealed
    assert said[0]["sha256"] == said[1]["sha256"] == sha256_of(exports[0])  # identical, as each saw it sealed
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # both whole: no warning
        assert Cache(cache).check(exports[0]) is not None
        assert Cache(cache).check(next(cache.glob("onnx/*.ort-*.onnx"))) is not None
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    import onnx

    onnx.checker.check_model(str(exports[0]))


def test_the_library_warns_and_runs_where_the_cache_cannot_be_written(weights_dir, runtime_segmentor, reference,
                                                                      tmp_path, monkeypatch):
    """``Segmentor`` never raises for the cache: a ``CacheWarning``, and the export kept in memory."""
    from animeface_seg import Segmentor

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("ANIMEFACE_SEG_CACHE", str(blocker / "cache"))
    with pytest.warns(CacheWarning, match=r"cannot write the cache in .*ANIMEFACE_SEG_CACHE") as caught:
        seg = Segmentor.from_pretrained(unet=weights_dir / "UNet.pth", device="cpu", runtime="onnxruntime",
                                        remove_background=False, output_size="processed")
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1
    assert seg.networks.fingerprints == runtime_segmentor("onnxruntime", remove_background=False).fingerprints
    case = reference / "golden" / "square" / "input.png"
    expected = runtime_segmentor("onnxruntime", remove_background=False)([case])[0].classes
    assert np.array_equal(seg([case])[0].classes, expected)


def test_openvinos_own_blob_cut_short_is_compiled_again(pristine, weights_dir, tmp_path):
    """OpenVINO checks the compiled blobs in its ``CACHE_DIR`` itself: one cut short is compiled and
    written again, silently (it says nothing we could pass on), with the same results."""
    cache = tmp_path / "cache"
    shutil.copytree(pristine["cache"], cache)
    first = run(pristine["inputs"], tmp_path / "first", cache, weights_dir, "openvino")
    assert first.returncode == 0 and first.stderr == "", first.stderr
    blobs = list((cache / "openvino").glob("*.blob"))
    assert len(blobs) == 1
    size = blobs[0].stat().st_size
    blobs[0].chmod(0o644)
    cut_short(blobs[0])
    done = run(pristine["inputs"], tmp_path / "out", cache, weights_dir, "openvino")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr + done.stdout
    assert np.array_equal(read_rgb(tmp_path / "out" / "a.png"), read_rgb(tmp_path / "first" / "a.png"))
    assert [p.stat().st_size for p in (cache / "openvino").glob("*.blob")] == [size]
