"""Watch mode: a live ``--watch`` process on real files, and the settling job source on its own.

Each live process costs a start-up (imports, networks), so one long-lived process runs most
scenarios in turn and a second one checks the first scan and a clean exit 0. Waits are bounded
so a failure cannot hang the suite; nothing is timed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path, PurePath

import pytest

from animeface_seg.batch.manifest import MANIFEST_NAME
from animeface_seg.engine.decode import load_rgb
from conftest import agreement, cli_command, make_image, read_rgb
from record_schema import assert_valid

#: Only the tests that watch need the watch extra; the others run without it.
needs_watchfiles = pytest.mark.skipif(importlib.util.find_spec("watchfiles") is None,
                                      reason="needs the watch extra: pip install -e '.[test]'")

#: Longest wait for the first record (process start-up on a busy 2-core machine) and for later ones.
FIRST_WAIT = 300
WAIT = 90


class LiveWatch:
    """A running ``animeface-seg --watch`` with its ``--json`` records collected by a reader thread."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("ANIMEFACE_SEG_WEIGHTS", None)
        self.proc = subprocess.Popen(cli_command() + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.records: list[dict] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.records.append(json.loads(line))
                self._changed.notify_all()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def for_input(self, path: Path) -> list[dict]:
        with self._changed:
            return [r for r in self.records if r["input"] == str(path)]

    def wait_for(self, path: Path, count: int = 1, timeout: float = WAIT) -> dict:
        """The ``count``-th record for ``path``, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [r for r in self.records if r["input"] == str(path)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no record #{count} for {path}; records: {self.records}; "
                                         f"stderr: {''.join(self.stderr)}")
                self._changed.wait(min(left, 1.0))

    def stop(self, sig: int) -> int:
        """Send ``sig`` and return the exit status (bounded wait)."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=120)
        for thread in self._threads:
            thread.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def _args(src: Path, out: Path, weights_dir: Path) -> list[str]:
    return [str(src), "-o", str(out), "--watch", "--settle", "0.5", "--weights-dir", str(weights_dir),
            "--keep-background", "--device", "cpu", "--size", "processed", "--json"]


def _assert_matches(segmentor_keep, source: Path, out_map: Path) -> None:
    """The written map is the one the networks give for the file as it is now."""
    expected = segmentor_keep.run([segmentor_keep.prepare(load_rgb(source))])[0]
    assert agreement(read_rgb(out_map), expected.colors) >= 0.99, source


def _moved_in(staging: Path, target: Path, size: tuple[int, int], seed: int) -> Path:
    """Write an image elsewhere, then rename it into the watched folder (how careful tools drop files)."""
    written = make_image(staging / f"{target.stem}-{seed}.png", size, seed=seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(written, target)
    return target


@needs_watchfiles
def test_live_watch_moves_slow_writes_nested_corrupt_rewrite_and_sigterm(weights_dir, segmentor_keep, tmp_path):
    src, out, staging = tmp_path / "in", tmp_path / "out", tmp_path / "staging"
    staging.mkdir()
    first = make_image(src / "first.png", (64, 48), seed=0)
    watch = LiveWatch(_args(src, out, weights_dir))
    try:
        assert watch.wait_for(first, timeout=FIRST_WAIT)["status"] == "ok"

        # moved into place
        moved = _moved_in(staging, src / "moved.png", (80, 60), seed=1)
        assert watch.wait_for(moved)["status"] == "ok"
        _assert_matches(segmentor_keep, moved, out / "moved.png")

        # temporary and hidden names are never read, and a slow writer is read only once it is done
        (src / ".hidden.png").write_bytes(b"not an image")
        (src / "download.png.part").write_bytes(b"not an image")
        (src / "~lock.png").write_bytes(b"not an image")
        make_image(staging / "slow.png", (96, 72), seed=2)
        data = (staging / "slow.png").read_bytes()
        slow = src / "slow.png"
        chunks = 12
        with open(slow, "wb") as stream:  # 12 chunks over about 1.8 s, 3 times the settle time
            for i in range(chunks):
                stream.write(data[i * len(data) // chunks:(i + 1) * len(data) // chunks])
                stream.flush()
                time.sleep(0.15)
        record = watch.wait_for(slow)
        assert record["status"] == "ok", record
        _assert_matches(segmentor_keep, slow, out / "slow.png")

        # a new nested folder, made after the watch began, with an image inside
        nested = _moved_in(staging, src / "new" / "deeper" / "nested.png", (70, 70), seed=3)
        assert watch.wait_for(nested)["status"] == "ok"
        _assert_matches(segmentor_keep, nested, out / "new" / "deeper" / "nested.png")

        # a corrupt file fails alone; the watch goes on
        corrupt = src / "corrupt.png"
        corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
        record = watch.wait_for(corrupt)
        assert record["status"] == "error" and record["error"], record
        after = _moved_in(staging, src / "after.png", (50, 40), seed=4)
        assert watch.wait_for(after)["status"] == "ok"

        # the manifest in OUT follows while the watch runs (written every few seconds)
        manifest = out / MANIFEST_NAME
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (manifest.is_file() and str(after) in manifest.read_text()):
            time.sleep(0.1)
        assert str(after) in manifest.read_text() and str(corrupt) in manifest.read_text()

        # a file rewritten after its first processing is processed again, from its new content
        first_map = read_rgb(out / "moved.png")
        _moved_in(staging, moved, (60, 80), seed=5)
        assert watch.wait_for(moved, count=2)["status"] == "ok"
        _assert_matches(segmentor_keep, moved, out / "moved.png")
        assert read_rgb(out / "moved.png").shape != first_map.shape

        # an input deleted: its outputs stay
        first.unlink()
        code = watch.stop(signal.SIGTERM)
    finally:
        watch.kill()
    stderr = "".join(watch.stderr)
    assert code == 1, stderr  # the corrupt file failed
    assert "processed 6, skipped 0, failed 1" in stderr, stderr
    assert f"error: {corrupt}" in stderr
    assert (out / "first.png").is_file()
    assert [len(watch.for_input(p)) for p in (slow, nested, corrupt, after)] == [1, 1, 1, 1]
    for record in watch.records:
        assert_valid(record)
    for name in (".hidden.png", "download.png.part", "~lock.png"):
        assert not watch.for_input(src / name), name
    assert not list(out.rglob(".*")), "temporary files left behind"


@needs_watchfiles
def test_first_scan_skips_done_redoes_changed_and_sigint_exits_0(run_cli, weights_dir, segmentor_keep, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    done = make_image(src / "done.png", (64, 48), seed=0)
    changed = make_image(src / "sub" / "changed.png", (64, 48), seed=1)
    cut = make_image(src / "cut.png", (64, 48), seed=3)
    other = make_image(src / "other.png", (64, 48), seed=4)
    once = run_cli(str(src), "-o", str(out), "--keep-background", "--size", "processed", "--device", "cpu")
    assert once.returncode == 0, once.stderr
    done_written = (out / "done.png").stat().st_mtime_ns
    # newer than their inputs, yet not done: a map cut short, and one made with other settings
    whole = (out / "cut.png").read_bytes()
    (out / "cut.png").write_bytes(whole[: len(whole) // 2])
    again = run_cli(str(other), "-o", str(out), "--keep-background", "--size", "original", "--device", "cpu")
    assert again.returncode == 0, again.stderr
    make_image(changed, (48, 64), seed=2)  # changed while no watch was running
    os.utime(changed, ns=(time.time_ns(), (out / "sub" / "changed.png").stat().st_mtime_ns + 10**9))

    watch = LiveWatch(_args(src, out, weights_dir))
    try:
        assert watch.wait_for(changed, timeout=FIRST_WAIT)["status"] == "ok"
        skipped = watch.wait_for(done)
        assert (skipped["status"], skipped["reason"]) == ("skipped", "already done"), skipped
        _assert_matches(segmentor_keep, changed, out / "sub" / "changed.png")
        for redone in (cut, other):
            assert watch.wait_for(redone)["status"] == "ok", redone
            _assert_matches(segmentor_keep, redone, out / redone.name)
        code = watch.stop(signal.SIGINT)
    finally:
        watch.kill()
    stderr = "".join(watch.stderr)
    assert code == 0, stderr
    assert "processed 3, skipped 1, failed 0" in stderr and "watching" in stderr, stderr
    assert (out / "done.png").stat().st_mtime_ns == done_written
    for record in watch.records:
        assert_valid(record)


@needs_watchfiles
def test_watch_needs_folders(run_cli, tmp_path):
    image = make_image(tmp_path / "in" / "a.png", (32, 32))
    for inputs in ([str(image)], ["-"], [str(tmp_path / "missing")]):
        proc = run_cli(*inputs, "-o", str(tmp_path / "out"), "--watch", stdin="")
        assert proc.returncode == 2, proc.stderr
        assert "--watch needs folders as INPUT" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_settle_without_watch_is_a_usage_error(run_cli, tmp_path):
    make_image(tmp_path / "in" / "a.png", (32, 32))
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--settle", "2")
    assert proc.returncode == 2 and "--settle only applies with --watch" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_without_watchfiles_the_watch_is_a_clear_setup_error(run_cli, tmp_path, monkeypatch):
    """No watch extra installed (its import blocked): one line naming the install command, exit 2."""
    make_image(tmp_path / "in" / "a.png", (32, 32))
    monkeypatch.setitem(sys.modules, "watchfiles", None)
    monkeypatch.delitem(sys.modules, "animeface_seg.integrations.watch", raising=False)
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--watch")
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'animeface-seg[watch]'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@needs_watchfiles
def test_temporary_names():
    from animeface_seg.integrations.watch import is_temporary

    assert all(map(is_temporary, ["a.png.part", "a.PNG.crdownload", "a.png~", "~$a.png", "x.tmp", "a.download"]))
    assert not any(map(is_temporary, ["a.png", "part.png", "a~b.png"]))


@needs_watchfiles
def test_source_hands_over_settled_files_once_and_stops(tmp_path):
    from animeface_seg.batch.kinds import select
    from animeface_seg.batch.spec import OutputSpec
    from animeface_seg.integrations.watch import DropFolders

    src, staging = tmp_path / "in", tmp_path / "staging"
    src.mkdir()
    staging.mkdir()
    drop = DropFolders([str(src)], OutputSpec(src / "out", select()), settle=0.3)
    drop.start()
    got: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [got.put(job) for job in drop.jobs()], daemon=True)
    reader.start()
    try:
        (src / ".hidden.png").write_bytes(b"x")
        (src / "a.png.part").write_bytes(b"x")
        (src / "notes.txt").write_bytes(b"x")
        (src / "page.download").mkdir()
        (src / "page.download" / "b.png").write_bytes(b"x")
        (src / "out").mkdir()
        (src / "out" / "result.png").write_bytes(b"x")  # OUT inside the watched folder
        make_image(staging / "m.png", (8, 8))  # a real picture: the source reads each settled file's header
        os.replace(staging / "m.png", src / "m.png")
        job = got.get(timeout=WAIT)
        assert (job.source, job.relative, job.error) == (src / "m.png", PurePath("m"), None)

        stamp = (src / "m.png").stat()
        os.utime(src / "m.png", ns=(stamp.st_atime_ns + 1, stamp.st_mtime_ns))  # an event, same size and time
        time.sleep(1)
        (src / "m.png").write_bytes(make_image(staging / "second.png", (9, 9), seed=1).read_bytes())
        job = got.get(timeout=WAIT)
        assert job.source == src / "m.png"
    finally:
        drop.stop()
        reader.join(timeout=WAIT)
    assert not reader.is_alive(), "the source did not stop"
    assert got.empty(), [got.get() for _ in range(got.qsize())]


def test_live_watch_checks_every_kind_follows_a_recreated_folder_and_ignores_a_second_stop(weights_dir, tmp_path):
    src, out, staging = tmp_path / "in", tmp_path / "out", tmp_path / "staging"
    staging.mkdir()
    x = make_image(src / "x.png", (64, 48), seed=0)
    args = [str(src), "-o", str(out), "--watch", "--settle", "0.5", "--weights-dir", str(weights_dir),
            "--device", "cpu", "--size", "processed", "--json"]
    watch = LiveWatch(args)
    try:
        assert watch.wait_for(x, timeout=FIRST_WAIT)["status"] == "ok"
        mask_of_x = (out / "x_mask.png").read_bytes()

        # its map would be x's mask: refused alone, x's mask stays as it was
        clash = _moved_in(staging, src / "x_mask.png", (48, 64), seed=1)
        record = watch.wait_for(clash)
        assert record["status"] == "error" and record["outputs"] == {}, record
        assert "would overwrite another input's" in record["error"] and "the mask of" in record["error"], record
        assert (out / "x_mask.png").read_bytes() == mask_of_x

        # the watched folder removed and made again: noticed, and watched again
        for path in sorted(src.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        src.rmdir()
        deadline = time.monotonic() + WAIT
        while not any("was removed" in line for line in watch.stderr) and time.monotonic() < deadline:
            time.sleep(0.2)
        src.mkdir()
        back = _moved_in(staging, src / "back.png", (64, 48), seed=2)
        assert watch.wait_for(back)["status"] == "ok"
        assert (out / "back.png").is_file()

        # a second stop signal during the orderly stop is ignored: the documented exit code stays
        watch.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        if watch.proc.poll() is None:
            watch.proc.send_signal(signal.SIGTERM)
        code = watch.stop(signal.SIGTERM) if watch.proc.poll() is None else watch.proc.wait()
    finally:
        watch.kill()
    stderr = "".join(watch.stderr)
    assert code == 1, stderr  # the clash failed
    assert "was removed; waiting for it to come back" in stderr and "is there again" in stderr, stderr
    assert "Traceback" not in stderr
