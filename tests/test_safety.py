"""Never lose data, never abort a whole batch: signals, temp files, memory budget, resume, pipes, OUT checks.

Through the installed command on real files: a subprocess where signals, peak memory or pipes
matter, in-process otherwise.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from animeface_seg.batch.manifest import MANIFEST_NAME
from animeface_seg.cli import Environment, app
from conftest import cli_command, make_image, signal_when_written


def _env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ANIMEFACE_SEG_WEIGHTS", None)
    return env


def _blank_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit all-black PNG written row by row, so a huge canvas costs the test no memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def _records(stdout: str) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in map(json.loads, stdout.splitlines())}


def test_sigterm_mid_run_stops_in_order_and_resume_completes(weights_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    names = {f"img{i:02d}" for i in range(10)}
    for i, name in enumerate(sorted(names)):
        make_image(src / f"{name}.png", (64, 64), seed=i)
    args = cli_command() + [str(src), "-o", str(out), "--weights-dir", str(weights_dir), "--device", "cpu",
                            "--keep-background", "--json"]
    proc = signal_when_written(args, out, "img*.png", signal.SIGTERM)
    stdout, stderr = proc.stdout, proc.stderr
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    on_disk = {p.stem for p in out.glob("img??.png")}
    records = _records(stdout)
    assert {Path(k).stem for k, r in records.items() if r["status"] == "ok"} == on_disk
    assert f"processed {len(on_disk)}, skipped 0, failed 0" in stderr
    assert 1 <= len(on_disk) < len(names)

    resumed = subprocess.run(args + ["--skip-existing"], capture_output=True, text=True, env=_env())
    assert resumed.returncode == 0, resumed.stderr
    again = _records(resumed.stdout)
    assert {Path(k).stem for k, r in again.items() if r["status"] == "skipped"} == on_disk
    assert {r["reason"] for r in again.values() if r["status"] == "skipped"} == {"already done"}
    assert {Path(k).stem for k, r in again.items() if r["status"] == "ok"} == names - on_disk
    assert {p.stem for p in out.glob("img??.png")} == names


def test_further_signals_during_the_stop_are_ignored(weights_dir, tmp_path):
    """Ctrl-C, then SIGTERM every 20 ms until the process ends: the first signal decides (130) and the stop
    still finishes its writes. (Ctrl-C first: CPython runs handlers of signals that arrive together in
    signal-number order, so SIGINT, the lower number, is handled first however close the others follow.)"""
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(8):
        make_image(src / f"img{i}.png", (640, 480), seed=i)
    args = cli_command() + [str(src), "-o", str(out), "--weights-dir", str(weights_dir), "--device", "cpu",
                            "--cutout", "--overlay", "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 240
    while not list(out.glob("img*.png")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    later = 0
    while proc.poll() is None and later < 500:
        proc.send_signal(signal.SIGTERM)
        later += 1
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=120)
    assert later > 0 and proc.returncode == 130, (later, stderr)
    assert "Traceback" not in stderr and "interrupted" in stderr, stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    done = {Path(k).stem for k, r in _records(stdout).items() if r["status"] == "ok"}
    for kind in ("", "_mask", "_cutout", "_overlay"):  # every finished input has its whole set
        assert {p.name[: -len(kind + ".png")] for p in out.glob(f"img?{kind}.png")} == done, kind
    assert f"processed {len(done)}, skipped 0, failed 0" in stderr


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_during_start_up_prints_no_traceback(weights_dir, tmp_path, signum, code):
    """A stop while torch is being imported (lazily, by the torch runtime) waits for the import to complete,
    then ends the run in order: no traceback, no output, the signal's exit code."""
    make_image(tmp_path / "in" / "a.png", (64, 64))
    args = cli_command() + [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights-dir", str(weights_dir),
                            "--runtime", "torch"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 120
    while "libtorch" not in maps.read_text() and time.monotonic() < deadline:  # torch is loading
        time.sleep(0.02)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr and stdout == ""
    assert not (tmp_path / "out" / "a.png").exists()


def _hold_lock_in_another_pid_namespace(path: Path) -> subprocess.Popen:
    """A process in a new PID namespace (as in another container) holding the lock of ``path``, as a live
    writer does; its PID means nothing here."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
            "print(os.getpid(), flush=True); time.sleep(600)")
    holder = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", code, str(path)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "1"  # PID 1 of its own namespace
    return holder


def test_stale_temp_files_removed_live_ones_kept_across_pid_namespaces(run_cli, tmp_path):
    out = tmp_path / "out"
    stale_old = out / "sub" / ".x.png.animeface-seg-4242-140000.tmp"  # 0.2's naming, its writer gone
    stale = out / ".z.png.animeface-seg-0123456789ab.tmp"
    live = out / ".y.png.animeface-seg-a1b2c3d4e5f6.tmp"  # another run's, in another PID namespace
    young = out / ".w.png.animeface-seg-00000000000f.tmp"  # just created: its writer may not hold it yet
    foreign = out / ".notes.tmp"
    long_ago = time.time() - 3600
    for path in (stale_old, stale, live, young, foreign):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        if path is not young:
            os.utime(path, (long_ago, long_ago))
    holder = _hold_lock_in_another_pid_namespace(live)
    try:
        stem = "n" * 236  # the outputs' names fit in 255 bytes; the temporary names are shortened
        make_image(tmp_path / "in" / f"{stem}.png", (64, 64))
        proc = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background")
        assert proc.returncode == 0, proc.stderr
        assert "removed 2 temporary file(s)" in proc.stderr
        assert not stale_old.exists() and not stale.exists()
        assert live.exists() and young.exists() and foreign.exists()
        assert (out / f"{stem}.png").is_file()
    finally:
        holder.kill()
        holder.wait()
    proc = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background")
    assert "removed 1 temporary file(s)" in proc.stderr and not live.exists()  # its writer is gone now


def test_huge_canvas_refused_within_the_budget_with_bounded_peak_rss(weights_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _blank_png(src / "huge.png", 16000, 16000)
    _blank_png(src / "long.png", 64, 2048)
    make_image(src / "ok.png", (64, 64))
    assert (src / "huge.png").stat().st_size < 800_000
    args = cli_command() + [str(src), "-o", str(out), "--weights-dir", str(weights_dir), "--device", "cpu",
                            "--keep-background", "--json", "--memory-budget", "2G"]
    # The command runs under a small launcher: a child forked straight from this (large) test
    # process would count the test's own memory in its peak RSS until it execs.
    launcher = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
                "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
                "sys.exit(rc)")
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.run([sys.executable, "-c", launcher, str(tmp_path / "maxrss"), *args],
                              stdout=stdout, stderr=stderr, env=_env())
    err = (tmp_path / "stderr").read_text()
    records = _records((tmp_path / "stdout").read_text())
    peak_gb = int((tmp_path / "maxrss").read_text()) * 1024 / 2**30  # ru_maxrss is in KiB on Linux
    assert proc.returncode == 1, err
    assert records["ok.png"]["status"] == "ok" and (out / "ok.png").is_file()
    for name in ("huge.png", "long.png"):
        assert records[name]["status"] == "error"
        assert "over the budget of 2.0 GB per image" in records[name]["error"]
        assert "--memory-budget SIZE" in records[name]["error"]
    assert "16000x16000" in records["huge.png"]["error"] and "would need about" in records["huge.png"]["error"]
    assert peak_gb < 3.0, f"child peak RSS {peak_gb:.2f} GB"


def _peak_rss(args: list[str], tmp_path: Path) -> int:
    """Peak RSS in bytes of the command run with ``args`` under a small launcher (a child forked straight
    from this large test process would count the test's memory until it execs)."""
    launcher = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", launcher, *cli_command(), *args], capture_output=True, text=True,
                          env=_env())
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip().splitlines()[-1]) * 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.parametrize("keep_background", [True, False])
def test_memory_estimate_covers_the_measured_growth_of_a_large_image(weights_dir, tmp_path, keep_background):
    """The budget is only as good as ``memory.estimate``: a 6000x6000 picture's peak RSS growth over a 64x64 one
    stays within it, on the default CPU path (ONNX Runtime, numpy results)."""
    from PIL import Image

    from animeface_seg.batch.kinds import memory_terms, select
    from animeface_seg.engine import memory

    x = np.linspace(0, 255, 6000, dtype=np.float32)
    big = np.stack(np.broadcast_arrays(x[None, :], x[:, None], np.float32(128)), axis=-1).astype(np.uint8)
    (tmp_path / "big").mkdir()
    Image.fromarray(big).save(tmp_path / "big" / "big.png", compress_level=1)
    make_image(tmp_path / "small" / "small.png", (64, 64))
    extra = ["--keep-background"] if keep_background else []
    common = ["--weights-dir", str(weights_dir), "--device", "cpu", "--memory-budget", "0", "--quiet", *extra]
    baseline = _peak_rss([str(tmp_path / "small"), "-o", str(tmp_path / "out-small"), *common], tmp_path)
    peak = _peak_rss([str(tmp_path / "big"), "-o", str(tmp_path / "out-big"), *common], tmp_path)
    need = memory.estimate(6000, 6000, "RGB", remove_background=not keep_background,
                           **memory_terms(select(keep_background=keep_background))).host
    assert peak - baseline <= need, f"growth {(peak - baseline) / 2**30:.2f} GB over the estimate {need / 2**30:.2f} GB"


def test_skip_existing_redoes_outputs_made_with_other_settings(run_cli, tmp_path):
    from PIL import Image

    make_image(tmp_path / "in" / "a.png", (96, 64))
    out = tmp_path / "out"
    first = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background", "--size", "processed",
                    env={"FORCE_COLOR": "1"})
    assert first.returncode == 0, first.stderr
    assert "━" not in first.stderr and "\x1b[" not in first.stderr  # no animated bar into a non-terminal
    assert Image.open(out / "a.png").size == (768, 512)

    second = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background", "--skip-existing", "--json")
    record = _records(second.stdout)["a.png"]
    assert record["status"] == "ok", record
    assert "size 'processed' (now 'original')" in record["reason"]
    assert Image.open(out / "a.png").size == (96, 64)

    third = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background", "--skip-existing", "--json")
    assert _records(third.stdout)["a.png"]["status"] == "skipped"
    fourth = run_cli(str(tmp_path / "in"), "-o", str(out), "--skip-existing", "--json")  # now with the mask
    assert _records(fourth.stdout)["a.png"]["status"] == "ok" and (out / "a_mask.png").is_file()


def test_skip_existing_redoes_outputs_made_at_another_precision(run_cli, tmp_path):
    make_image(tmp_path / "in" / "a.png", (64, 48))
    out = tmp_path / "out"
    args = (str(tmp_path / "in"), "-o", str(out), "--keep-background", "--size", "processed", "--device", "cpu")
    assert run_cli(*args, "--precision", "fp32").returncode == 0
    redo = _records(run_cli(*args, "--precision", "bf16", "--skip-existing", "--json").stdout)["a.png"]
    assert redo["status"] == "ok" and "precision 'fp32' (now 'bf16')" in redo["reason"], redo
    again = _records(run_cli(*args, "--precision", "bf16", "--skip-existing", "--json").stdout)["a.png"]
    assert again["status"] == "skipped" and again["reason"] == "already done"


def test_skip_existing_redoes_outputs_recorded_with_another_layout(run_cli, tmp_path):
    """The layout is part of the record: outputs of a by-kind run, put where the mirror layout writes
    (a user reorganising OUT by hand), are redone by a mirror resume, then skipped."""
    make_image(tmp_path / "in" / "a.png", (64, 48))
    by_kind, out = tmp_path / "by-kind", tmp_path / "out"
    args = ("--keep-background", "--size", "processed", "--device", "cpu")
    assert run_cli(str(tmp_path / "in"), "-o", str(by_kind), "--layout", "by-kind", *args).returncode == 0
    made = sorted(p.relative_to(by_kind) for p in by_kind.rglob("*.png"))
    assert made == [Path("maps/a.png")], made  # the background kept: the map alone
    out.mkdir()
    shutil.copy(by_kind / "maps" / "a.png", out / "a.png")
    mirror = (str(tmp_path / "in"), "-o", str(out), *args, "--skip-existing", "--json")
    redo = _records(run_cli(*mirror).stdout)["a.png"]
    assert redo["status"] == "ok" and "layout 'by-kind' (now 'mirror')" in redo["reason"], redo
    again = _records(run_cli(*mirror).stdout)["a.png"]
    assert again["status"] == "skipped" and again["reason"] == "already done"


def test_json_into_a_pipe_that_closes_ends_cleanly(weights_dir, tmp_path):
    for i in range(6):
        make_image(tmp_path / "in" / f"i{i}.png", (64, 64), seed=i)
    args = cli_command() + [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights-dir", str(weights_dir),
                            "--device", "cpu", "--keep-background", "--json"]
    read_end, write_end = os.pipe()
    gone = subprocess.Popen(args, stdout=write_end, stderr=subprocess.PIPE, env=_env())
    os.close(write_end)
    os.close(read_end)  # the reader exits before the first record, as `| head -1` does after its line
    stderr = gone.stderr.read().decode()
    assert gone.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "cannot write to standard output (the program reading it exited)" in stderr
    assert "processed" in stderr  # the summary, with the files that were finished
    written = {p.name for p in (tmp_path / "out").iterdir()} - {MANIFEST_NAME}
    assert not [name for name in written if name.startswith(".")] and 1 <= len(written) <= 6

    with open("/dev/full", "w") as full:
        proc = subprocess.run(args, stdout=full, stderr=subprocess.PIPE, text=True, env=_env(), timeout=300)
    assert proc.returncode == 74, proc.stderr
    assert "Traceback" not in proc.stderr and "No space left on device" in proc.stderr


def _recording_runner(calls: list) -> tuple[CliRunner, Environment]:
    def factory(**options):
        calls.append(options)
        raise AssertionError("the networks must not load")

    return CliRunner(), Environment(segmentor_factory=factory)


def test_unwritable_out_exits_2_before_any_network_loads(tmp_path):
    make_image(tmp_path / "in" / "a.png", (64, 64))
    (tmp_path / "file").write_text("a regular file")
    calls: list = []
    runner, env = _recording_runner(calls)
    result = runner.invoke(app, [str(tmp_path / "in"), "-o", str(tmp_path / "file" / "out")], obj=env)
    assert result.exit_code == 2, result.stderr
    assert str(tmp_path / "file" / "out") in result.stderr and "lies below a file" in result.stderr
    # A folder nobody may create, not even root (the plan sees nothing wrong; the write probe does).
    result = runner.invoke(app, [str(tmp_path / "in"), "-o", "/proc/animeface-seg-out"], obj=env)
    assert result.exit_code == 2 and "/proc/animeface-seg-out" in result.stderr, result.stderr
    assert calls == []


def test_out_without_write_permission_exits_2_naming_it(unprivileged):
    """As a user without privileges (root writes anywhere): an existing OUT that user may not write."""
    base = unprivileged.folder("locked-out")
    make_image(base / "in" / "a.png", (64, 64))
    locked = base / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    proc = unprivileged.run(str(base / "in"), "-o", str(locked / "out"))
    assert proc.returncode == 2, proc.stderr
    assert str(locked / "out") in proc.stderr and "Traceback" not in proc.stderr
    assert "device:" not in proc.stderr  # refused before the networks load
    assert list(locked.iterdir()) == []
    locked.chmod(0o777)
    (locked / "out").mkdir()
    (locked / "out").chmod(0o555)
    proc = unprivileged.run(str(base / "in"), "-o", str(locked / "out"))
    assert proc.returncode == 2 and str(locked / "out") in proc.stderr, proc.stderr
    assert list((locked / "out").iterdir()) == []


def test_garbage_weights_never_advise_turning_weights_only_off(run_cli, tmp_path):
    bad = tmp_path / "UNet.pth"
    torch.save({"saved_on": datetime.date(2026, 12, 1)}, bad)  # a pickle that weights_only=True refuses
    make_image(tmp_path / "in" / "a.png", (64, 64))
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--unet", str(bad), "--keep-background",
                   weights=False)
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "not a readable PyTorch checkpoint" in proc.stderr
    assert "weights_only" not in proc.stderr and "False" not in proc.stderr


def test_skip_existing_redoes_outputs_made_with_other_weights(run_cli, weights_dir, reference, tmp_path):
    """The resume rule covers the weights: the same files elsewhere still count as done, other weights do not."""
    make_image(tmp_path / "in" / "a.png", (64, 48))
    out = tmp_path / "out"
    first = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background")
    assert first.returncode == 0, first.stderr
    copied = tmp_path / "copied-weights"
    copied.mkdir()
    shutil.copyfile(weights_dir / "UNet.pth", copied / "UNet.pth")
    same = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background", "--skip-existing", "--json",
                   "--unet", str(copied / "UNet.pth"), weights=False)
    assert _records(same.stdout)["a.png"]["status"] == "skipped", same.stderr  # the fingerprint, not the path
    other = tmp_path / "other-weights"
    subprocess.run([sys.executable, str(reference / "make_checkpoints.py"), str(other), "--seed", "1"],
                   check=True, capture_output=True)
    redone = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background", "--skip-existing", "--json",
                     "--unet", str(other / "UNet.pth"), weights=False)
    record = _records(redone.stdout)["a.png"]
    assert record["status"] == "ok" and "other settings" in record["reason"] and "weights" in record["reason"], record


def test_memory_budget_default_is_half_the_available_ram_and_0_turns_it_off(run_cli, run_process, tmp_path):
    """Default: half of MemAvailable at the start, as the error names it. An image whose Pillow RGB copy alone
    (4 bytes a pixel) needs more than all of it is refused before decoding; ``0`` lifts a budget."""
    available = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemAvailable:"))) * 1024
    side = int((available / 4) ** 0.5) + 1
    _blank_png(tmp_path / "in" / "huge.png", side, side)
    proc = run_process(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--keep-background", "--json",
                       "--max-pixels", str(side * side))
    assert proc.returncode == 1, proc.stderr
    error = _records(proc.stdout)["huge.png"]["error"]
    assert "of the memory available at start)" in error, error
    budget_gb = float(error.split("over the budget of ")[1].split(" GB")[0])
    assert budget_gb == pytest.approx(available / 2 / 2**30, rel=0.25), error  # MemAvailable moves with other work

    make_image(tmp_path / "small" / "a.png", (64, 48))
    tight = run_cli(str(tmp_path / "small"), "-o", str(tmp_path / "tight"), "--keep-background", "--json",
                    "--memory-budget", "1M")
    assert tight.returncode == 1 and "over the budget" in _records(tight.stdout)["a.png"]["error"], tight.stderr
    free = run_cli(str(tmp_path / "small"), "-o", str(tmp_path / "free"), "--keep-background", "--json",
                   "--memory-budget", "0")
    assert free.returncode == 0 and _records(free.stdout)["a.png"]["status"] == "ok", free.stderr
