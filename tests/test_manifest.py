"""The manifest in OUT: every input's record, extended by later runs, written atomically, robust to damage."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from animeface_seg.batch.manifest import MANIFEST_NAME, Manifest
from conftest import cli_command, make_image, signal_when_written


def manifest_of(out: Path) -> dict[str, dict]:
    """The manifest's records keyed by input (every line must be a whole JSON record)."""
    records = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    keyed = {record["input"]: record for record in records}
    assert len(keyed) == len(records), "one line per input"
    return keyed


def as_stored(records: dict[str, dict], out: Path) -> dict[str, dict]:
    """``--json`` records as the manifest keeps them: output paths relative to OUT."""
    return {name: {**record, "outputs": {kind: os.path.relpath(path, out) for kind, path in record["outputs"].items()}}
            for name, record in records.items()}


def temp_files(out: Path) -> list[Path]:
    return [path for path in out.rglob("*") if path.name.endswith(".tmp")]


def test_later_runs_extend_the_manifest_and_replace_their_inputs(run_cli, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for name in ("a.png", "b.png"):
        make_image(first / name, (40, 30))
    make_image(second / "c.png", (30, 40))
    out = tmp_path / "out"
    proc = run_cli(str(first), "-o", str(out), "--keep-background", "--json")
    assert proc.returncode == 0, proc.stderr
    printed = {record["input"]: record for record in map(json.loads, proc.stdout.splitlines())}
    assert printed[str(first / "a.png")]["outputs"] == {"map": str(out / "a.png")}  # --json: paths as given
    assert manifest_of(out) == as_stored(printed, out)

    # A second run over another folder and again over a.png (now with overlays): b's record stays,
    # c's is added, a's is replaced by the newer one.
    proc = run_cli(str(second), str(first / "a.png"), "-o", str(out), "--keep-background", "--overlay")
    assert proc.returncode == 0, proc.stderr
    records = manifest_of(out)
    assert sorted(records) == sorted(str(p) for p in (first / "a.png", first / "b.png", second / "c.png"))
    assert set(records[str(first / "a.png")]["outputs"]) == {"map", "overlay"}
    assert set(records[str(first / "b.png")]["outputs"]) == {"map"}
    assert records[str(second / "c.png")]["outputs"]["overlay"] == "c_overlay.png"

    # Skipped inputs (nothing done) keep their earlier record, with its class fractions.
    proc = run_cli(str(first), "-o", str(out), "--keep-background", "--skip-existing")
    assert proc.returncode == 0 and "skipped 2" in proc.stderr, proc.stderr
    assert manifest_of(out) == records
    assert not temp_files(out)


def test_inputs_are_kept_absolute_and_outputs_relative_to_out(run_cli, tmp_path, monkeypatch):
    make_image(tmp_path / "in" / "a.png", (30, 30))
    monkeypatch.chdir(tmp_path)
    assert run_cli("in", "-o", "out", "--keep-background").returncode == 0
    monkeypatch.chdir(tmp_path / "in")
    assert run_cli("a.png", "-o", "../out", "--keep-background").returncode == 0
    (record,) = manifest_of(tmp_path / "out").values()  # the same input from two folders: one record
    assert record["input"] == str(tmp_path / "in" / "a.png")
    assert record["outputs"] == {"map": "a.png"}  # inside OUT: relative to it, so OUT can move


def test_old_absolute_lines_still_read_and_are_rewritten_relative(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    old = {"input": "/elsewhere/old.png", "status": "ok", "outputs": {"map": str(out / "sub" / "old.png"),
                                                                      "mask": "/other/old_mask.png"}}
    (out / MANIFEST_NAME).write_text(json.dumps(old) + "\n" + json.dumps({**old, "input": "/elsewhere/new.png",
                                                                        "outputs": {"map": "new.png"}}) + "\n")
    with Manifest(out) as manifest:
        assert manifest.records["/elsewhere/old.png"] == old
        assert manifest.records["/elsewhere/new.png"]["outputs"] == {"map": str(out / "new.png")}
        manifest.add({"input": "/elsewhere/third.png", "status": "ok", "outputs": {"map": str(out / "third.png")}})
    records = manifest_of(out)
    assert records["/elsewhere/old.png"]["outputs"] == {"map": "sub/old.png", "mask": "/other/old_mask.png"}
    assert records["/elsewhere/third.png"]["outputs"] == {"map": "third.png"}


def test_damaged_manifest_keeps_its_valid_lines_and_the_run_goes_on(run_cli, tmp_path):
    make_image(tmp_path / "in" / "new.png", (30, 30))
    out = tmp_path / "out"
    out.mkdir()
    kept = {"input": "/elsewhere/old.png", "status": "ok", "outputs": {"map": "/elsewhere/out/old.png"},
            "class_fractions": None, "mask_coverage": None}
    (out / MANIFEST_NAME).write_bytes(b"\n".join([
        b'{"input": "/elsewhere/half.png", "status": "o',  # cut off mid-line
        json.dumps(kept).encode(),
        b"\xff\xfe not utf-8",
        b"[1, 2, 3]",
        b'{"status": "ok"}',
    ]))
    proc = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("damaged line(s) dropped") == 1
    assert "4 damaged line(s) dropped, 1 record(s) kept" in proc.stderr
    records = manifest_of(out)
    assert records["/elsewhere/old.png"] == kept
    assert records[str(tmp_path / "in" / "new.png")]["status"] == "ok"


def test_damaged_lines_leave_the_file_on_the_next_write(run_cli, tmp_path):
    """Even a run that adds no record (every input skipped) writes the damage away: one warning, then none."""
    make_image(tmp_path / "in" / "a.png", (30, 30))
    out = tmp_path / "out"
    assert run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background").returncode == 0
    good = (out / MANIFEST_NAME).read_bytes()
    (out / MANIFEST_NAME).write_bytes(good + b'{"input": "/cut/off.png", "sta\n' + b"\xff\xfe\n")
    for warned in (True, False):
        proc = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background", "--skip-existing", "--review")
        assert proc.returncode == 0 and "skipped 1" in proc.stderr, proc.stderr
        assert proc.stderr.count("2 damaged line(s) dropped, 1 record(s) kept") == warned, proc.stderr
        assert (out / MANIFEST_NAME).read_bytes() == good


def test_unusable_manifest_never_stops_the_run(run_cli, tmp_path):
    make_image(tmp_path / "in" / "a.png", (30, 30))
    out = tmp_path / "out"
    (out / MANIFEST_NAME).mkdir(parents=True)  # neither readable nor replaceable
    proc = run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background")
    assert proc.returncode == 0, proc.stderr
    assert (out / "a.png").is_file()
    assert f"cannot read {out / MANIFEST_NAME}" in proc.stderr
    assert proc.stderr.count(f"cannot write {out / MANIFEST_NAME}") == 1
    assert not temp_files(out)


def test_periodic_writes_and_a_whole_file_at_every_moment(tmp_path):
    written: list[bytes] = []

    def write(path, data: bytes) -> None:
        from animeface_seg.batch.manifest import write_atomic

        write_atomic(path, data)
        written.append((tmp_path / MANIFEST_NAME).read_bytes())

    manifest = Manifest(tmp_path, write=write)
    manifest.every(0.05)
    for index in range(3):
        manifest.add({"input": f"/in/{index}.png", "status": "ok", "outputs": {}})
    deadline = time.monotonic() + 10
    while not written and time.monotonic() < deadline:
        time.sleep(0.01)
    assert written, "records that arrived were written without waiting for the end"
    assert len(written) == 1  # all three landed in one write: writes are spaced by the interval
    manifest.add({"input": "/in/3.png", "status": "error", "outputs": {}})
    manifest.close()
    assert [len(data.splitlines()) for data in written][-1] == 4
    assert all(data.endswith(b"\n") and all(json.loads(line) for line in data.splitlines()) for data in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]


def test_interrupted_run_leaves_a_whole_manifest(weights_dir, tmp_path):
    names = [f"img{index:02d}.png" for index in range(12)]
    for index, name in enumerate(names):
        make_image(tmp_path / "in" / name, (64, 48), seed=index)
    out = tmp_path / "out"
    args = cli_command() + [str(tmp_path / "in"), "-o", str(out), "--weights-dir", str(weights_dir),
                            "--device", "cpu", "--keep-background", "--json"]
    proc = signal_when_written(args, out, "img*.png", signal.SIGINT)
    assert proc.returncode == 130, proc.stderr
    reported = {record["input"]: record for record in map(json.loads, proc.stdout.splitlines())}
    assert manifest_of(out) == as_stored(reported, out) and 1 <= len(reported) < len(names)
    assert not temp_files(out)
