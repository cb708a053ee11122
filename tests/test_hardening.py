"""Nothing partial, no hang, no traceback: every input's outputs appear together or not at all, names the
output file system cannot hold are refused up front, and every documented error path is one clear line.

Real files and real limits (a small tmpfs for a full disk, ``prlimit`` for file-size and address-space
limits); in-process runs where a process shows nothing more.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from animeface_seg.batch.manifest import MANIFEST_NAME
from animeface_seg.batch.tempfiles import TEMP_PATTERN, write_set
import record_schema
from conftest import cli_command, make_image, read_rgb


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("ANIMEFACE_SEG_WEIGHTS", None)
    return env


def _records(stdout: str) -> dict[str, dict]:
    """Records by input name, each checked against the record schema."""
    return {Path(r["input"]).name: r for r in record_schema.records(stdout)}


def _leftovers(out: Path) -> list[Path]:
    return [path for path in out.rglob("*") if TEMP_PATTERN.match(path.name)]


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KB tmpfs: room for some output sets, not for all."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (the test needs root): {done.stderr.decode()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_leaves_each_input_whole_or_absent(run_cli, small_disk, tmp_path):
    src = tmp_path / "in"
    for i in range(8):
        make_image(src / f"p{i}.png", (300, 260), seed=i)
    proc = run_cli(str(src), "-o", str(small_disk / "out"), "--overlay", "--cutout", "--json", "--device", "cpu")
    records = _records(proc.stdout)
    assert proc.returncode == 1, proc.stderr  # the disk filled up part way
    statuses = {name: record["status"] for name, record in records.items()}
    assert "ok" in statuses.values() and "error" in statuses.values(), statuses
    for name, record in records.items():
        stem = Path(name).stem
        present = sorted(p.name for p in (small_disk / "out").glob(f"{stem}*.png"))
        if record["status"] == "ok":
            assert present == sorted(Path(p).name for p in record["outputs"].values()) and len(present) == 4
        else:
            assert present == [] and record["outputs"] == {}, (name, present)
            assert "cannot write output" in record["error"] and "No space left" in record["error"]
    assert _leftovers(small_disk / "out") == []


def test_file_size_limit_fails_an_input_alone_and_keeps_its_earlier_outputs(run_cli, weights_dir, tmp_path):
    """The limit stops the set after its small map and mask are written (the cutout outgrows it): none of the
    new files is put in place, and the outputs of an earlier run (at another size) are left as they were."""
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "small.png", (64, 64), seed=0)
    noisy = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(src / "noisy.png")  # its overlay and cutout outgrow the limit, its map does not
    earlier = run_cli(str(src / "noisy.png"), "-o", str(out), "--overlay", "--cutout", "--size", "processed")
    assert earlier.returncode == 0, earlier.stderr
    before = {path.name: path.read_bytes() for path in out.glob("noisy*.png")}
    assert len(before) == 4 and Image.open(out / "noisy.png").size != (700, 700)
    command = ["prlimit", "--fsize=400000", "--", *cli_command(), str(src), "-o", str(out), "--overlay",
               "--cutout", "--json", "--weights-dir", str(weights_dir), "--device", "cpu"]
    proc = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    records = _records(proc.stdout)
    assert proc.returncode == 1, proc.stderr
    assert records["small.png"]["status"] == "ok"
    assert records["noisy.png"]["status"] == "error" and records["noisy.png"]["outputs"] == {}
    assert records["noisy.png"]["error"] == f"cannot write output {out / 'noisy_cutout.png'}: File too large"
    assert {path.name: path.read_bytes() for path in out.glob("noisy*.png")} == before
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST_NAME, "small.png", "small_cutout.png",
                                                            "small_mask.png", "small_overlay.png", *before])
    assert "Traceback" not in proc.stderr


def test_a_rename_refused_mid_set_puts_back_the_files_already_replaced(run_cli, tmp_path):
    """The set is written whole, then its renames start and the last is refused (its target is a mount
    point): the map, mask and cutout already renamed into place give way to the earlier run's files again."""
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "a.png", (96, 64))
    args = (str(src), "-o", str(out), "--overlay", "--cutout", "--device", "cpu", "--json")
    assert run_cli(*args, "--size", "processed").returncode == 0
    before = {path.name: path.read_bytes() for path in out.glob("a*.png")}
    (tmp_path / "pinned.png").write_bytes(before["a_overlay.png"])
    mounted = subprocess.run(["mount", "--bind", str(tmp_path / "pinned.png"), str(out / "a_overlay.png")],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"the test needs root to bind-mount a file: {mounted.stderr}"
    try:
        proc = run_cli(*args)
    finally:
        subprocess.run(["umount", str(out / "a_overlay.png")], check=True)
    record = _records(proc.stdout)["a.png"]
    assert proc.returncode == 1 and record["status"] == "error", record
    assert record["error"] == f"cannot write output {out / 'a_overlay.png'}: Device or resource busy", record
    assert {path.name: path.read_bytes() for path in out.glob("a*.png")} == before
    assert _leftovers(out) == []


def test_write_set_takes_back_every_file_when_any_writer_fails(tmp_path):
    (tmp_path / "b.png").write_bytes(b"earlier output")

    def boom(stream):
        raise MemoryError("no room for the overlay")

    with pytest.raises(MemoryError):
        write_set({tmp_path / "a.png": lambda s: s.write(b"map"), tmp_path / "sub" / "b.png": lambda s: s.write(b"x"),
                   tmp_path / "c.png": boom})
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["b.png"]
    assert (tmp_path / "b.png").read_bytes() == b"earlier output"


def test_names_the_output_file_system_cannot_hold_are_refused_up_front(run_cli, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    stem = "n" * 250  # the map's name (254 bytes) fits in 255; the mask's (259) does not
    make_image(src / f"{stem}.png", (64, 64))
    proc = run_cli(str(src), "-o", str(out))
    assert proc.returncode == 2
    assert "longer than the 255 bytes the output file system holds" in proc.stderr
    assert f"{stem}_mask.png" in proc.stderr and not out.exists()
    ok = run_cli(str(src), "-o", str(out), "--layout", "by-kind", "--keep-background")
    assert ok.returncode == 0, ok.stderr
    assert (out / "maps" / f"{stem}.png").is_file()


_COUNTING = """import json, sys
from animeface_seg.cli import app
from animeface_seg.engine.segmentor import Segmentor
sizes, run = [], Segmentor.run
def counted(self, batch):
    sizes.append(len(batch))
    return run(self, batch)
Segmentor.run = counted
try:
    app(sys.argv[1:], prog_name="animeface-seg")
finally:
    print("batches", json.dumps(sizes), file=sys.stderr)
"""


def test_command_under_an_address_space_limit_splits_large_batches(run_cli, weights_dir, tmp_path):
    """Under ``prlimit --as`` the default budget caps a network batch: ``--batch-size 32`` over four inputs
    runs as several smaller batches (counted as the networks receive them, passed through unchanged), and
    every output is byte for byte that of one unsplit batch."""
    src, out, whole = tmp_path / "in", tmp_path / "out", tmp_path / "whole"
    for i in range(4):
        make_image(src / f"p{i}.png", (512, 512), seed=i)
    common = ["--batch-size", "32", "--json", "--device", "cpu"]
    unsplit = run_cli(str(src), "-o", str(whole), "--memory-budget", "0", *common)  # also fills the ONNX cache,
    assert unsplit.returncode == 0, unsplit.stderr  # so the limited run loads no torch (its mappings need more)
    command = ["prlimit", "--as=2200000000", "--", sys.executable, "-c", _COUNTING, str(src), "-o", str(out), *common,
               "--weights-dir", str(weights_dir)]
    proc = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert {r["status"] for r in _records(proc.stdout).values()} == {"ok"}
    batches = json.loads(proc.stderr.split("batches ")[-1])
    assert sum(batches) == 4 and len(batches) > 1 and max(batches) < 4, batches
    made = sorted(path.name for path in out.glob("*.png"))
    assert len(made) == 8 and made == sorted(path.name for path in whole.glob("*.png"))
    assert all((out / name).read_bytes() == (whole / name).read_bytes() for name in made)


def test_closed_stdin_and_ascii_file_names_encoding_end_cleanly(weights_dir, tmp_path):
    src = tmp_path / "in"
    make_image(src / "a.png", (64, 64))
    closed = subprocess.run(["bash", "-c", 'exec "$@" 0<&-', "run", *cli_command(), "-", "-o", str(tmp_path / "o1"),
                             "--weights-dir", str(weights_dir)], capture_output=True, text=True, env=_env(), timeout=300)
    assert closed.returncode == 2 and "standard input, which is closed" in closed.stderr, closed.stderr
    assert "Traceback" not in closed.stderr
    ascii_run = subprocess.run([*cli_command(), str(src), "-o", str(tmp_path / "o2"), "--keep-background",
                                "--weights-dir", str(weights_dir), "--device", "cpu"], capture_output=True, text=True,
                               env=_env(PYTHONUTF8="0", LC_ALL="C", LANG="C"), timeout=300)
    assert ascii_run.returncode == 0, ascii_run.stderr
    assert (tmp_path / "o2" / "a.png").is_file()


def test_ray_addresses_fail_fast_with_one_line(run_cli, tmp_path):
    src = tmp_path / "in"
    make_image(src / "a.png", (64, 64))
    garbage = run_cli(str(src), "-o", str(tmp_path / "o"), "--engine", "ray", "--ray-address", "garbage:::")
    assert garbage.returncode == 2 and "is not a Ray cluster address" in garbage.stderr
    pytest.importorskip("ray", reason="joining a cluster needs the ray extra")
    started = time.monotonic()
    closed = run_cli(str(src), "-o", str(tmp_path / "o"), "--engine", "ray",
                     env={"RAY_ADDRESS": "127.0.0.1:1", "RAY_AUTH_MODE": "disabled"})
    assert closed.returncode == 2, closed.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:1 ($RAY_ADDRESS)" in closed.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "o").exists()  # a run that cannot start leaves no trace


def test_local_input_with_object_storage_output_is_one_line(run_cli, tmp_path):
    pytest.importorskip("ray", reason="object storage needs the ray extra")
    src = tmp_path / "in"
    make_image(src / "a.png", (64, 64))
    proc = run_cli(str(src), "-o", "s3://bucket/out", "--engine", "ray",
                   env={"RAY_ADDRESS": "127.0.0.1:1", "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "attribute" not in proc.stderr


def test_messages_for_budgets_text_chunks_and_api_misuse(run_cli, segmentor, tmp_path):
    from animeface_seg.batch.outcome import describe_error
    from animeface_seg.engine.errors import EngineError, ImageShapeError

    src = tmp_path / "in"
    make_image(src / "a.png", (64, 64))
    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", "{" + "x" * 3_000_000 + "}", zip=True)  # a big embedded workflow, over Pillow's limit
    with Image.open(src / "a.png") as image:
        image.save(src / "workflow.png", pnginfo=info)
    proc = run_cli(str(src), "-o", str(tmp_path / "o"), "--json", "--keep-background")
    assert proc.returncode == 0, proc.stderr
    records = _records(proc.stdout)
    assert records["workflow.png"]["status"] == "ok"
    assert (read_rgb(tmp_path / "o" / "workflow.png") == read_rgb(tmp_path / "o" / "a.png")).all()

    tiny = run_cli(str(src), "-o", str(tmp_path / "o2"), "--memory-budget", "1")
    assert tiny.returncode == 1 and "over the budget of 1 byte per image (--memory-budget 1 byte)" in tiny.stderr

    assert describe_error(MemoryError()) == ("out of memory", "memory_budget")
    with pytest.raises(ImageShapeError, match="has no pixels"):
        segmentor(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(EngineError, match="uint8"):
        segmentor(np.zeros((4, 4, 3), np.float64))
    with pytest.raises(EngineError):
        segmentor.run([segmentor.prepare(np.zeros((64, 64, 3), np.uint8)),
                       segmentor.prepare(np.zeros((64, 640, 3), np.uint8))])


def test_watch_status_line_escapes_file_names():
    from pathlib import PurePath

    from animeface_seg.batch.discovery import Job
    from animeface_seg.cli.report import Reporter

    reporter = Reporter(None, stderr=io.StringIO())
    reporter._in_flight.append(Job(Path("in/evil\x1b[2J\n.png"), PurePath("evil")))
    status = reporter._status()
    assert "\x1b" not in status and "\n" not in status and "\\x1b[2J\\n.png" in status
