"""The installed ``animeface-seg`` command on real files, as a user runs it."""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import select
import signal
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animeface_seg.batch.manifest import MANIFEST_NAME
from animeface_seg.engine.palette import CLASS_COLORS, CLASS_NAMES
from conftest import agreement, cli_command, make_image, make_video, read_gray, read_rgb, signal_when_written

PALETTE = {tuple(c) for c in CLASS_COLORS}


def _colors(array: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(c) for c in np.unique(array.reshape(-1, 3), axis=0)}


def test_console_script_is_installed():
    assert Path(cli_command()[0]).name == "animeface-seg", "install the project: pip install -e '.[test]'"


def test_folder_of_images_gives_maps_and_masks_at_input_size(run_cli, tmp_path):
    sizes = {"wide.png": (120, 80), "tall.jpg": (70, 130), "gray.png": (90, 90)}
    for i, (name, size) in enumerate(sizes.items()):
        make_image(tmp_path / "in" / name, size, mode="L" if name == "gray.png" else "RGB", seed=i)
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "device: cpu, fp32" in proc.stderr and "processed 3, skipped 0, failed 0" in proc.stderr
    for name, (w, h) in sizes.items():
        stem = Path(name).stem
        colour = Image.open(tmp_path / "out" / f"{stem}.png")
        mask = Image.open(tmp_path / "out" / f"{stem}_mask.png")
        assert colour.size == (w, h) and colour.mode == "RGB"
        assert mask.size == (w, h) and mask.mode == "L"
        assert _colors(read_rgb(tmp_path / "out" / f"{stem}.png")) <= PALETTE
        assert len(np.unique(read_gray(tmp_path / "out" / f"{stem}_mask.png"))) > 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{Path(n).stem}{s}.png" for n in sizes for s in ("", "_mask")] + [MANIFEST_NAME])


def test_nested_folders_are_mirrored_and_stdin_lists_work(run_cli, tmp_path):
    make_image(tmp_path / "in" / "a" / "b" / "deep one.png", (64, 48))
    make_image(tmp_path / "in" / "キャラ.jpg", (48, 64), seed=1)
    make_image(tmp_path / "other" / "listed.png", (50, 50), seed=2)
    out = tmp_path / "out"
    proc = run_cli(str(tmp_path / "in"), "-", "-o", str(out), "--keep-background", "--json",
                   stdin=f"{tmp_path / 'other' / 'listed.png'}\n\n")
    assert proc.returncode == 0, proc.stderr
    assert (out / "a" / "b" / "deep one.png").is_file()
    assert (out / "キャラ.png").is_file() and (out / "listed.png").is_file()
    assert not list(out.rglob("*_mask.png"))
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(Path(r["input"]).name for r in records) == ["deep one.png", "listed.png", "キャラ.jpg"]


def test_json_records(run_cli, tmp_path):
    make_image(tmp_path / "in" / "a.png", (100, 60))
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--json")
    assert proc.returncode == 1
    records = {Path(r["input"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    ok, bad = records["a.png"], records["broken.png"]
    assert ok["status"] == "ok" and ok["error"] is None
    assert ok["original_size"] == {"width": 100, "height": 60}
    assert ok["processed_size"] == {"width": 853, "height": 512}
    assert set(ok["class_fractions"]) == set(CLASS_NAMES)
    assert sum(ok["class_fractions"].values()) == pytest.approx(1.0)
    assert 0.0 < ok["mask_coverage"] < 1.0
    assert ok["outputs"] == {"map": str(tmp_path / "out" / "a.png"), "mask": str(tmp_path / "out" / "a_mask.png")}
    mask = read_gray(tmp_path / "out" / "a_mask.png")
    assert ok["mask_coverage"] == pytest.approx(mask.mean() / 255, abs=0.01)
    assert bad["status"] == "error" and "not a recognised image" in bad["error"]
    assert bad["outputs"] == {} and not (tmp_path / "out" / "broken.png").exists()


def test_bad_files_fail_alone(run_cli, tmp_path):
    src = tmp_path / "in"
    make_image(src / "good1.png", (64, 64))
    make_image(src / "good2.jpg", (64, 80), seed=3)
    (src / "empty.png").write_bytes(b"")
    (src / "text.jpg").write_text("hello")
    whole = (src / "good1.png").read_bytes()
    (src / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (src / "corrupt.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 garbage" * 4)
    make_image(src / "huge.png", (200, 200))
    (src / "dangling.png").symlink_to(src / "missing-target.png")
    proc = run_cli(str(src), "-o", str(tmp_path / "out"), "--max-pixels", "20000", "--keep-background")
    assert proc.returncode == 1, proc.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "good1.png", "good2.png"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    for name in ("empty.png", "text.jpg", "truncated.png", "corrupt.webp", "huge.png", "dangling.png"):
        assert sum(name in line for line in errors) == 1, (name, proc.stderr)
    assert "over the limit of 20,000" in proc.stderr and "empty" in proc.stderr
    assert "processed 2, skipped 0, failed 6" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_input_failing_its_header_check_exits_2_and_writes_nothing(weights_dir, tmp_path):
    """Nothing could be done (exit 2) is told apart from some inputs failed (exit 1): inputs that are empty or
    no image fail their header check before any network loads, and OUT is neither made nor touched."""
    from typer.testing import CliRunner

    from animeface_seg.cli import Environment, app

    loads: list[dict] = []

    def factory(**options):
        loads.append(options)
        raise AssertionError("no network may load when every input failed")

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "x.png").write_text("not an image\n")
    (src / "y.jpg").write_bytes(b"")
    (src / "notes.txt").write_text("not an input: a folder walk never looks at it")

    def run(*inputs: Path, engine: str = "local"):
        result = CliRunner().invoke(app, [*map(str, inputs), "-o", str(out), "--json", "--engine", engine,
                                          "--weights-dir", str(weights_dir)], obj=Environment(segmentor_factory=factory))
        assert result.exit_code == 2, result.output
        found = [(Path(r["input"]).name, r["status"], r["error"]) for r in map(json.loads, result.stdout.splitlines())]
        assert found == [("x.png", "error", "not a recognised image or video file"),
                         ("y.jpg", "error", "file is empty (0 bytes)")]
        assert f"error: {src / 'x.png'}: not a recognised image or video file" in result.stderr
        assert f"error: {src / 'y.jpg'}: file is empty (0 bytes)" in result.stderr
        assert "processed 0, skipped 0, failed 2" in result.stderr and "no network was loaded" in result.stderr

    run(src)
    run(src / "x.png", src / "y.jpg")
    if importlib.util.find_spec("ray") is not None:  # the Ray engine reads the same headers before Ray starts
        run(src, engine="ray")
    assert not out.exists() and loads == []
    out.mkdir()  # an OUT of an earlier run stays as it was: no manifest written, nothing removed
    (out / MANIFEST_NAME).write_text('{"input": "earlier.png", "status": "ok"}\n')
    make_image(out / "earlier.png", (8, 8))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    run(src)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before and loads == []


def test_inputs_are_recognised_by_content_not_by_extension(run_cli, tmp_path):
    """A GIF named .webp is a clip, a video named .jpg is a clip (and with --first-frame its first frame), a
    one-frame GIF is a still: the header decides, never the name (more names in ``test_plan``, ``test_frames``)."""
    src = tmp_path / "in"
    frames = [Image.fromarray(np.full((40, 56, 3), colour, np.uint8)) for colour in ((200, 40, 40), (40, 40, 200))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=80)
    src.mkdir()
    (src / "gif.webp").write_bytes((tmp_path / "anim.gif").read_bytes())
    make_video(src / "movie.jpg", size=(48, 32))
    frames[1].save(src / "still.gif")
    result = run_cli(str(src), "-o", str(tmp_path / "out"), "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    found = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert {name: (r["status"], r["frames"]) for name, r in found.items()} == {
        "gif.webp": ("ok", 2), "movie.jpg": ("ok", 2), "still.gif": ("ok", None)}
    out = tmp_path / "out"
    assert found["movie.jpg"]["fps"] == pytest.approx(10) and found["movie.jpg"]["original_size"] == {
        "width": 48, "height": 32}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png") if "_mask" not in p.name) == [
        "gif/000001.png", "gif/000002.png", "movie/000001.png", "movie/000002.png", "still.png"]
    first = run_cli(str(src / "movie.jpg"), "-o", str(tmp_path / "first"), "--first-frame", "--device", "cpu")
    assert first.returncode == 0, first.stderr
    assert np.array_equal(read_rgb(tmp_path / "first" / "movie.png"), read_rgb(out / "movie" / "000001.png"))


def test_unreadable_file_and_folder_fail_alone(unprivileged):
    """Run as a user without privileges (root reads anything): an unreadable file and folder each fail alone."""
    base = unprivileged.folder("unreadable")
    src = base / "in"
    make_image(src / "ok.png", (64, 64))
    make_image(src / "locked.png", (64, 64), seed=1).chmod(0)
    make_image(src / "locked" / "inside.png", (64, 64), seed=2)
    (src / "locked").chmod(0)
    proc = unprivileged.run(str(src), "-o", str(base / "out"), "--keep-background", "--json")
    assert proc.returncode == 1, proc.stderr
    records = {Path(r["input"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert records["ok.png"]["status"] == "ok" and (base / "out" / "ok.png").is_file()
    assert records["locked.png"]["status"] == "error" and "permission denied" in records["locked.png"]["error"]
    assert records["locked"]["status"] == "error", records
    assert records["locked"]["error"] == "cannot read folder: Permission denied"
    assert f"error: {src / 'locked.png'}" in proc.stderr and f"error: {src / 'locked'}" in proc.stderr
    assert sorted(p.name for p in (base / "out").iterdir() if p.suffix == ".png") == ["ok.png"]


def test_collisions_exit_2_before_writing(run_cli, tmp_path):
    make_image(tmp_path / "in" / "x.jpg", (64, 64))
    make_image(tmp_path / "in" / "x.png", (64, 64))
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "x.jpg" in proc.stderr and "x.png" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli(str(tmp_path / "empty"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "no images found" in proc.stderr
    proc = run_cli(str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--bogus-flag")
    assert proc.returncode == 2
    make_image(tmp_path / "in" / "a.png", (64, 64))
    proc = run_cli(str(tmp_path / "in"))
    assert proc.returncode == 2 and "-o OUT" in proc.stderr


def test_cuda_request_without_cuda_is_a_setup_error(run_cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    make_image(tmp_path / "in" / "a.png", (64, 64))
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--device", "cuda")
    assert proc.returncode == 2 and "CUDA is not available" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cutout_and_overlay(run_cli, tmp_path):
    make_image(tmp_path / "in" / "pic.png", (90, 60))
    out = tmp_path / "out"
    proc = run_cli(str(tmp_path / "in"), "-o", str(out), "--cutout", "--overlay")
    assert proc.returncode == 0, proc.stderr
    cutout, overlay = Image.open(out / "pic_cutout.png"), Image.open(out / "pic_overlay.png")
    assert cutout.mode == "RGBA" and cutout.size == (90, 60)
    assert overlay.mode == "RGB" and overlay.size == (90, 60)
    assert (np.array(cutout)[..., 3] == read_gray(out / "pic_mask.png")).all()
    source = np.array(Image.open(tmp_path / "in" / "pic.png").convert("RGB"))
    assert (np.array(cutout)[..., :3] == source).all()
    expected = (source.astype(float) + read_rgb(out / "pic.png")) / 2
    assert np.abs(np.array(overlay).astype(float) - expected).max() <= 1

    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "small"), "--overlay",
                   "--size", "processed", "--keep-background")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "small" / "pic_overlay.png").size == (768, 512)


def test_cutout_without_a_mask_is_refused(run_cli, tmp_path):
    make_image(tmp_path / "in" / "pic.png", (90, 60))
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--cutout", "--keep-background")
    assert proc.returncode == 2 and "--cutout needs the character mask" in proc.stderr
    assert not (tmp_path / "out").exists()


def _on_a_terminal(args: list[str], timeout: float = 300) -> tuple[int, str, str]:
    """Run the command with standard error on a pseudo-terminal (as in an interactive shell); exit status,
    standard output and everything written to the terminal."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("ANIMEFACE_SEG_WEIGHTS", None)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cli_command() + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=follower, env=env)
    os.close(follower)
    screen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        stdout = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return proc.returncode, stdout.decode(), screen.decode(errors="replace")


def test_progress_bar_only_when_standard_error_is_a_terminal(run_cli, run_process, weights_dir, tmp_path):
    make_image(tmp_path / "in" / "a.png", (64, 64))
    make_image(tmp_path / "in" / "b.png", (48, 64), seed=1)
    args = [str(tmp_path / "in"), "--keep-background", "--weights-dir", str(weights_dir)]
    code, stdout, screen = _on_a_terminal([*args, "-o", str(tmp_path / "tty")])
    assert code == 0, screen
    assert "segmenting" in screen and "━" in screen and "\x1b[" in screen, screen  # the bar is drawn...
    assert "processed 2, skipped 0, failed 0" in screen and stdout == ""

    piped = run_process(*args, "-o", str(tmp_path / "pipe"), weights=False, env={"FORCE_COLOR": "1"})
    assert piped.returncode == 0, piped.stderr
    assert "━" not in piped.stderr and "\x1b[" not in piped.stderr and "segmenting" not in piped.stderr  # ...not here
    assert "processed 2, skipped 0, failed 0" in piped.stderr and piped.stdout == ""

    code, stdout, screen = _on_a_terminal([*args, "-o", str(tmp_path / "quiet"), "--quiet"])
    assert code == 0 and screen == "" and stdout == "", screen  # --quiet: nothing, even on a terminal
    quiet = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "quiet2"), "--keep-background", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


def test_interrupt_then_resume_with_skip_existing(weights_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(12):
        make_image(src / f"img{i:02d}.png", (64, 64), seed=i)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = cli_command() + [str(src), "-o", str(out), "--weights-dir", str(weights_dir), "--device", "cpu"]
    proc = signal_when_written(args, out, "img*_mask.png", signal.SIGINT)
    stderr = proc.stderr
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not list(out.glob(".*")), "temporary files left behind"
    maps = {p.stem for p in out.glob("img??.png")}
    masks = {p.stem[: -len("_mask")] for p in out.glob("img??_mask.png")}
    assert maps == masks and 1 <= len(maps) < 12

    resumed = subprocess.run(args + ["--skip-existing", "--json"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    statuses = {Path(r["input"]).stem: r["status"] for r in map(json.loads, resumed.stdout.splitlines())}
    assert {k for k, v in statuses.items() if v == "skipped"} == maps
    assert {k for k, v in statuses.items() if v == "ok"} == {f"img{i:02d}" for i in range(12)} - maps
    assert len(list(out.glob("img??.png"))) == 12 and len(list(out.glob("img??_mask.png"))) == 12


def test_version_and_help():
    version = subprocess.run(cli_command() + ["--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("animeface-seg ")
    help_text = subprocess.run(cli_command() + ["--help"], capture_output=True, text=True).stdout
    for flag in ("--keep-background", "--skip-existing", "--json", "--fetch-weights", "--runtime", "Exit codes"):
        assert flag in help_text


HELP_PANELS = {
    "Inputs": ["INPUT", "--recursive", "--root", "--null"],
    "Outputs": ["--output", "--keep-background", "--size", "--cutout", "--overlay", "--class-masks", "--layout",
                "--review"],
    "Videos and animated images": ["--frame-step", "--first-frame", "--encode"],
    "Resume and safety": ["--skip-existing", "--max-pixels", "--memory-budget"],
    "Speed and devices": ["--device", "--precision", "--runtime", "--batch-size", "--workers"],
    "Weights": ["--unet", "--abg", "--weights-dir", "--fetch-weights"],
    "Watch a folder": ["--watch", "--settle"],
    "Scaling out (Ray)": ["--engine", "--ray-address", "--replicas", "--gpus-per-replica", "--s3-endpoint"],
    "Reporting and help": ["--quiet", "--json", "--version", "--help"],
}


def test_help_lists_every_option_once_in_its_panel_within_80_columns():
    """``--help`` (the real app, in-process, on an 80-column terminal) shows the panels in order, each holding
    exactly its options, every option of the command in one panel, and no line wider than the terminal."""
    import re

    import typer
    from typer.testing import CliRunner

    from animeface_seg.cli import app

    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80, [line for line in lines if len(line) > 80]
    panels: dict[str, list[str]] = {}
    for line in lines[lines.index("Inputs:"):]:
        if line and not line.startswith(" "):
            panels[line.rstrip(":")] = []
        elif line.startswith("  ") and line[2] != " ":  # a row's first line: its names, then its help
            names = line[2:].split("  ")[0]
            last = list(panels)[-1]
            panels[last] += ["INPUT"] if names.startswith("INPUT") else [
                name for name in re.findall(r"(?<![\w|])--?[a-z0-9][\w-]*", names)
                if name.startswith("--") and not name.startswith("--no-")]
    assert panels == HELP_PANELS
    command = typer.main.get_command(app)
    declared = {max(param.opts, key=len) if param.param_type_name == "option" else "INPUT"
                for param in command.get_params(command.make_context("animeface-seg", ["-o", "x", "in"]))}
    assert declared == {name for names in HELP_PANELS.values() for name in names}


def test_fetch_weights_locates_and_checks_both_files(run_cli, run_process, weights_dir, tmp_path):
    proc = run_cli("--fetch-weights")
    assert proc.returncode == 0, proc.stderr
    assert f"UNet.pth: {weights_dir / 'UNet.pth'}" in proc.stdout
    assert f"isnetis.ckpt: {weights_dir / 'isnetis.ckpt'}" in proc.stdout
    offline = run_process("--fetch-weights", weights=False, env={"HF_HOME": str(tmp_path / "hf")})
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr and "Traceback" not in offline.stderr


def test_batch_size_workers_and_precision_flags_keep_the_results(run_process, run_cli, tmp_path):
    """Other batch sizes and worker counts write the same results (a batch of 3 runs other float kernels than a
    batch of 1, so a few map pixels may flip); the device line names the precision."""
    sizes = [(64, 48), (48, 64), (64, 48), (80, 60), (64, 48)]
    for i, size in enumerate(sizes):
        make_image(tmp_path / "in" / f"i{i}.png", size, seed=i)
    base = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "one"), "--device", "cpu", "--precision", "fp32")
    assert base.returncode == 0 and "device: cpu, fp32" in base.stderr, base.stderr
    other = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "three"), "--batch-size", "3", "--workers", "2")
    assert other.returncode == 0, other.stderr
    one, three = sorted((tmp_path / "one").glob("*.png")), sorted((tmp_path / "three").glob("*.png"))
    assert [p.name for p in one] == [p.name for p in three] and len(one) == 2 * len(sizes)
    for a, b in zip(one, three):
        if a.stem.endswith("_mask"):
            assert np.abs(read_gray(a).astype(int) - read_gray(b)).max() <= 2, a.name
        else:
            assert agreement(read_rgb(a), read_rgb(b)) >= 0.99, a.name
    for flag, value in (("--batch-size", "0"), ("--workers", "0"), ("--precision", "fp8")):
        bad = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "bad"), flag, value)
        assert bad.returncode == 2 and flag in bad.stderr, (flag, bad.stderr)
    assert not (tmp_path / "bad").exists()


def test_runtime_is_named_on_the_device_line_and_a_missing_one_is_a_usage_error(run_cli, tmp_path, monkeypatch):
    make_image(tmp_path / "in" / "a.png", (64, 96))
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--device", "cpu", "--keep-background")
    assert proc.returncode == 0 and "device: cpu, fp32, onnxruntime;" in proc.stderr, proc.stderr
    monkeypatch.setitem(sys.modules, "openvino", None)  # an install without the extra
    missing = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "--device", "cpu", "--runtime", "openvino")
    assert missing.returncode == 2 and not (tmp_path / "out2").exists()
    assert "runtime openvino is not installed: pip install 'animeface-seg[openvino]'" in missing.stderr
    wrong = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "--device", "cpu", "--runtime", "onnx")
    assert wrong.returncode == 2 and "--runtime auto|torch|reference|onnxruntime|openvino" in wrong.stderr


def test_contradicting_flags_are_refused_in_one_fixed_order_before_anything_loads(run_cli, tmp_path):
    """With several problems at once the first in the flags module's order is the one error line (exit 2),
    as it always was; nothing is made."""
    make_image(tmp_path / "in" / "a.png", (32, 32))
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    cases = [
        ([src, "-o", out, "--class-masks", "nose", "--fetch-weights"], "--class-masks: "),
        ([src, "--keep-background", "--cutout"], "no output folder given: add -o OUT"),
        ([src, "-o", out, "--keep-background", "--cutout", "-0", "--settle", "1"], "--cutout needs the character mask"),
        ([src, "-o", out, "-0", "--root", str(tmp_path / "nowhere")], "-0 (--null) describes the list"),
        ([src, "-o", out, "--root", str(tmp_path / "nowhere"), "--settle", "1"], "--root "),
        ([src, "-o", out, "--settle", "1", "--first-frame", "--encode", "video"], "--settle only applies with --watch"),
        ([src, "-o", out, "--first-frame", "--encode", "video", "--frame-step", "2"], "--encode makes videos of clips"),
        ([src, "-o", out, "--first-frame", "--frame-step", "2", "--memory-budget", "lots"], "--frame-step picks frames"),
        ([src, "-o", out, "--memory-budget", "lots"], "--memory-budget: "),
    ]
    for args, message in cases:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith(f"animeface-seg: error: {message}"), (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and not (tmp_path / "out").exists(), (args, proc.stderr)


def test_keep_background_reaches_the_engine_once_as_remove_background_false(weights_dir, cached_factory, tmp_path):
    """``--keep-background`` is translated once: the segmentor is built with ``remove_background=False``, no
    mask is planned or written, and the outputs' record says the background was kept."""
    from typer.testing import CliRunner

    from animeface_seg.batch.signature import read
    from animeface_seg.cli import Environment, app

    calls: list[dict] = []

    def factory(**options):
        calls.append(options)
        return cached_factory(**options)

    make_image(tmp_path / "in" / "a.png", (48, 40))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(tmp_path / "in"), "-o", str(out), "--keep-background", "--layout", "by-kind",
                                      "--device", "cpu", "--weights-dir", str(weights_dir)],
                                obj=Environment(segmentor_factory=factory), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert [options["remove_background"] for options in calls] == [False]
    assert sorted(path.relative_to(out).as_posix() for path in out.rglob("*.png")) == ["maps/a.png"]
    with open(out / "maps" / "a.png", "rb") as stream:
        assert read(stream)["keep_background"] is True
