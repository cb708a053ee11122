"""Shared fixtures: the reference data, seeded stand-in checkpoints, loaded models, CLI runner.

Stand-in checkpoints come from ``shared/reference/make_checkpoints.py`` (seed 0), the same
files the golden outputs were made with. Everything heavy is built once per session.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("ANIMEFACE_SEG_REFERENCE", REPO.parent / "shared" / "reference"))
GOLDEN_CASES = ("tall", "wide", "square", "rgba", "small", "gray")
#: Every runtime, each skipped only when its package is missing (the test extra installs them all).
RUNTIMES = [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(package) is None,
                                                        reason=f"{package} is not installed"))
            for name, package in (("torch", "torch"), ("reference", "cv2"), ("onnxruntime", "onnxruntime"),
                                  ("openvino", "openvino"))]


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ONNX exports (and digests) go to one folder per session, never the user's cache; processes the
    tests start inherit it."""
    path = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("ANIMEFACE_SEG_CACHE")
    os.environ["ANIMEFACE_SEG_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("ANIMEFACE_SEG_CACHE", None)
    else:
        os.environ["ANIMEFACE_SEG_CACHE"] = previous


@pytest.fixture(scope="session")
def reference() -> Path:
    """The reference folder (shared/reference beside the checkout, or $ANIMEFACE_SEG_REFERENCE)."""
    if not (REFERENCE / "make_checkpoints.py").is_file():
        pytest.fail(f"reference data not found at {REFERENCE}; set ANIMEFACE_SEG_REFERENCE")
    return REFERENCE


@pytest.fixture(scope="session")
def weights_dir(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with stand-in UNet.pth and isnetis.ckpt (seed 0), in the real layout."""
    out = tmp_path_factory.mktemp("weights")
    subprocess.run([sys.executable, str(reference / "make_checkpoints.py"), str(out), "--seed", "0"],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def segmentor(weights_dir: Path):
    """CPU fp32 torch segmentor with background removal, results at the processed size."""
    from animeface_seg import Segmentor

    return Segmentor.from_pretrained(weights_dir=weights_dir, device="cpu", output_size="processed", runtime="torch")


@pytest.fixture(scope="session")
def segmentor_keep(weights_dir: Path):
    """CPU fp32 torch segmentor without background removal, results at the processed size."""
    from animeface_seg import Segmentor

    return Segmentor.from_pretrained(weights_dir=weights_dir, device="cpu", output_size="processed",
                                     remove_background=False, runtime="torch")


def read_rgb(path: Path) -> np.ndarray:
    """A PNG as an H x W x 3 uint8 array."""
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


def read_gray(path: Path) -> np.ndarray:
    """A PNG as an H x W uint8 array."""
    with Image.open(path) as image:
        return np.array(image.convert("L"))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels where two colour maps are identical."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a == b).all(axis=-1).mean())


def cli_command() -> list[str]:
    """The installed ``animeface-seg`` console script beside this Python, or ``python -m``."""
    script = Path(sys.executable).with_name("animeface-seg")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "animeface_seg"]


@dataclass
class CliResult:
    """What a command run left: exit status and both streams (like ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def cached_factory():
    """Builds each distinct segmentor once per session; a failure (bad weights) is raised every time."""
    from animeface_seg import Segmentor

    cache: dict[tuple, object] = {}

    def build(**options):
        key = tuple(sorted((k, str(v)) for k, v in options.items()))
        if key not in cache:
            cache[key] = Segmentor.from_pretrained(**options)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def runtime_segmentor(weights_dir: Path, cached_factory):
    """The CPU fp32 segmentor of a runtime, results at the processed size, built once per session."""

    def get(runtime: str, remove_background: bool = True):
        return cached_factory(weights_dir=weights_dir, device="cpu", output_size="processed", runtime=runtime,
                              remove_background=remove_background)

    return get


@pytest.fixture(scope="session")
def run_cli(weights_dir: Path, cached_factory):
    """Run the command in-process (Typer's runner) with stand-in weights; returns a ``CliResult``.

    Loaded networks are shared across calls through the injected segmentor factory; the command's
    parsing, planning, pipeline, writers and reporting all run as in a real process.
    """
    from typer.testing import CliRunner

    from animeface_seg.cli import Environment, app

    runner = CliRunner()

    def run(*args: str, stdin: str | None = None, weights: bool = True, env: dict | None = None) -> CliResult:
        extra = ["--weights-dir", str(weights_dir)] if weights else []
        environment = {"ANIMEFACE_SEG_WEIGHTS": None, **(env or {})}
        result = runner.invoke(app, list(args) + extra, input=stdin, env=environment,
                               obj=Environment(segmentor_factory=cached_factory), catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture(scope="session")
def run_process(weights_dir: Path):
    """Run the installed command as a real process, for what only a process shows (signals, exit codes)."""

    def run(*args: str, stdin: str | None = None, weights: bool = True, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("ANIMEFACE_SEG_WEIGHTS", None)
        extra = ["--weights-dir", str(weights_dir)] if weights else []
        return subprocess.run(cli_command() + list(args) + extra, input=stdin, capture_output=True,
                              text=True, env=full_env, timeout=timeout)

    return run


def signal_when_written(args: list[str], out: Path, pattern: str, signum: int,
                       env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command, send ``signum`` once a file matching ``pattern`` appears in ``out``
    (mid-run), and return the finished process with both streams."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("ANIMEFACE_SEG_WEIGHTS", None)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    deadline = time.monotonic() + 240
    while not list(out.glob(pattern)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def make_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    """Write a synthetic picture (a bright figure on a textured background) of ``size`` (w, h)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)),
                     np.full_like(xx, 90 + 40 * seed % 160)], axis=-1).astype(np.uint8)
    figure = ((xx - w / 2) ** 2 / (w / 4) ** 2 + (yy - h / 2) ** 2 / (h / 3) ** 2) < 1
    base[figure] = (255, 220, 200)
    base = np.clip(base.astype(int) + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def make_video(path: Path, frames: int = 2, size: tuple[int, int] = (32, 16)) -> Path:
    """Write a real MPEG-4 video of ``frames`` distinct frames into an MP4 container, whatever ``path``'s
    extension (inputs are recognised by content); skips the test without PyAV."""
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            image = Image.new("RGB", size, (60 * i % 256, 90, (200 - 60 * i) % 256))
            container.mux(stream.encode(av.VideoFrame.from_image(image)))
        container.mux(stream.encode())
    return path


@dataclass
class Unprivileged:
    """Runs the command as a user without privileges, in folders that user may use (see ``unprivileged``)."""

    root: Path
    weights: Path
    prefix: list[str]

    def folder(self, name: str) -> Path:
        """A new folder everyone may write into (the command's OUT goes below it)."""
        path = self.root / name
        path.mkdir()
        path.chmod(0o777)
        return path

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "HOME": str(self.root),
               "HF_HOME": str(self.root / "hf-home"), "PYTHONDONTWRITEBYTECODE": "1",
               "ANIMEFACE_SEG_CACHE": str(self.root / "cache")}  # the session's cache is private to root
        env.pop("ANIMEFACE_SEG_WEIGHTS", None)
        return subprocess.run(self.prefix + cli_command() + list(args) + ["--weights-dir", str(self.weights)],
                              capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def unprivileged(weights_dir: Path):
    """Permission checks that mean something under root too: as root, the command runs as nobody
    (uid and gid 65534, no groups) through util-linux ``setpriv``; as any other user, as that user."""
    import shutil
    import tempfile

    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("the tests run as root, and setpriv (util-linux) is needed to drop privileges")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    root = Path(tempfile.mkdtemp(prefix="animeface-seg-unprivileged-"))  # outside pytest's private folder
    root.chmod(0o755)
    (root / "cache").mkdir(mode=0o777)
    (root / "cache").chmod(0o777)
    weights = root / "weights"
    weights.mkdir()
    for name in ("UNet.pth", "isnetis.ckpt"):
        try:
            os.link(weights_dir / name, weights / name)
        except OSError:
            shutil.copyfile(weights_dir / name, weights / name)
        (weights / name).chmod(0o644)
    yield Unprivileged(root, weights, prefix)
    shutil.rmtree(root, ignore_errors=True)
