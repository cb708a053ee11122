"""``--engine ray`` on a real local Ray instance (2 CPUs), a ``ray start`` cluster and an S3 server on 127.0.0.1.

One in-process Ray instance serves the module (started once: Ray is slow to start on 2 cores);
it, the ``ray start --head`` cluster and the moto S3 server are stopped by what started them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import record_schema
from conftest import agreement, cli_command, make_image, read_gray, read_rgb, signal_when_written

try:
    import ray
except ImportError:  # only the tests that start Ray skip; the others check the command without it
    ray = None

MANIFEST = "animeface-seg-manifest.jsonl"
BUCKET = "frames"


def _pngs(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*.png"))}


def _records(stdout: str) -> dict[str, dict]:
    """The Ray engine's records by input name, each checked against the record schema."""
    return {Path(r["input"]).name: r for r in record_schema.records(stdout)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_env():
    """Ray's environment for this module: no token auth, a short private temp folder, dummy S3 keys for moto.
    Every test that starts Ray comes through here, so only those skip without the ray extra."""
    if ray is None:
        pytest.skip("the Ray engine's tests need the ray extra: pip install -e '.[test]'")
    tmp = tempfile.mkdtemp(prefix="afs-ray-", dir="/tmp")
    values = {"RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": tmp, "AWS_ACCESS_KEY_ID": "testing",
              "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    yield values
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def ray_instance(ray_env):
    """A local Ray instance in this process, limited to 2 CPUs; the command finds it and uses it."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three tiny images (two shapes, one nested) and a corrupt file."""
    root = tmp_path_factory.mktemp("ray-in")
    make_image(root / "a.png", (64, 48), seed=1)
    make_image(root / "b.jpg", (64, 48), seed=2)
    make_image(root / "nested" / "c.png", (40, 56), seed=3)
    (root / "broken.png").write_bytes(b"this is not an image")
    return root


@pytest.fixture(scope="module")
def both_engines(ray_instance, run_cli, folder, tmp_path_factory):
    """The same folder through the local engine and the Ray engine, background removed, batch size 2."""
    out = tmp_path_factory.mktemp("ray-out")
    args = ("--batch-size", "2", "--json", "--device", "cpu")
    local = run_cli(str(folder), "-o", str(out / "local"), *args)
    remote = run_cli(str(folder), "-o", str(out / "ray"), "--engine", "ray", *args)
    return local, remote, out / "local", out / "ray"


def test_ray_engine_writes_the_local_engines_files_and_pixels(both_engines):
    local, remote, local_out, ray_out = both_engines
    assert "a local Ray instance" not in remote.stderr and "(2 CPUs, 0 GPUs): 2 CPU actors" in remote.stderr
    local_files, ray_files = _pngs(local_out), _pngs(ray_out)
    assert sorted(ray_files) == sorted(local_files) == [
        "a.png", "a_mask.png", "b.png", "b_mask.png", "nested/c.png", "nested/c_mask.png"]
    # Same networks, same batches: equal up to float summation order, which follows the thread
    # count (the actors run one thread each, the local engine all cores) and can flip a rare near-tie.
    for name, path in local_files.items():
        if name.endswith("_mask.png"):
            ours, theirs = read_gray(ray_files[name]).astype(int), read_gray(path).astype(int)
            assert np.abs(ours - theirs).max() <= 1 and (ours != theirs).mean() <= 1e-3, name
        else:
            assert agreement(read_rgb(ray_files[name]), read_rgb(path)) >= 0.9999, name
    assert len(np.unique(read_gray(ray_files["a_mask.png"]))) > 1
    local_records, ray_records = _records(local.stdout), _records(remote.stdout)
    for name in ("a.png", "b.jpg", "c.png"):
        ours, theirs = dict(ray_records[name]), dict(local_records[name])
        assert ours.pop("outputs") == {k: v.replace(str(local_out), str(ray_out)) for k, v in theirs.pop("outputs").items()}
        assert ours.pop("class_fractions") == pytest.approx(theirs.pop("class_fractions"), abs=1e-4)
        assert ours.pop("mask_coverage") == pytest.approx(theirs.pop("mask_coverage"), abs=1e-4)
        assert ours == theirs


def test_corrupt_file_fails_alone(both_engines):
    local, remote, _, ray_out = both_engines
    assert remote.returncode == local.returncode == 1
    bad = _records(remote.stdout)["broken.png"]
    assert bad["status"] == "error" and bad["error"] == _records(local.stdout)["broken.png"]["error"]
    assert bad["outputs"] == {} == _records(local.stdout)["broken.png"]["outputs"]  # nothing of its set exists
    assert "not a recognised image" in bad["error"]
    assert f"error: {bad['input']}: not a recognised image" in remote.stderr
    assert "processed 3, skipped 0, failed 1" in remote.stderr
    assert not (ray_out / "broken.png").exists()


def test_manifest_holds_every_record_and_is_no_input(both_engines, run_cli, folder, tmp_path):
    _, remote, _, ray_out = both_engines
    manifest = [json.loads(line) for line in (ray_out / MANIFEST).read_text().splitlines()]
    printed = [{**record, "outputs": {kind: os.path.relpath(path, ray_out) for kind, path in record["outputs"].items()}}
               for record in map(json.loads, remote.stdout.splitlines())]  # the manifest: outputs relative to OUT
    assert sorted(manifest, key=lambda r: r["input"]) == sorted(printed, key=lambda r: r["input"])
    assert not [p for p in ray_out.rglob("*") if p.name.startswith(".")]  # no temporary files left
    # OUT inside INPUT: neither engine takes the manifest (or any output) as an input.
    proc = run_cli(str(ray_out), "-o", str(ray_out / "again"), "--keep-background", "--json")
    assert proc.returncode == 0, proc.stderr
    assert MANIFEST not in proc.stdout and len(proc.stdout.splitlines()) == 6


def test_skip_existing_resumes(both_engines, run_cli, folder):
    _, _, _, ray_out = both_engines
    (ray_out / "b_mask.png").unlink()
    before = {name: path.stat().st_mtime_ns for name, path in _pngs(ray_out).items()}
    proc = run_cli(str(folder), "-o", str(ray_out), "--engine", "ray", "--batch-size", "2", "--device", "cpu",
                   "--skip-existing", "--json")
    assert proc.returncode == 1  # the corrupt file is tried again, and fails again
    records = _records(proc.stdout)
    status = {name: record["status"] for name, record in records.items()}
    assert status == {"a.png": "skipped", "c.png": "skipped", "b.jpg": "ok", "broken.png": "error"}
    assert records["a.png"]["reason"] == "already done" and records["b.jpg"]["reason"] == "b_mask.png is missing"
    after = _pngs(ray_out)
    assert "b_mask.png" in after
    assert all(after[name].stat().st_mtime_ns == mtime for name, mtime in before.items() if not name.startswith("b"))


def test_ray_keeps_the_local_layout_budget_and_resume_rule(ray_instance, run_cli, tmp_path):
    src = tmp_path / "in"
    make_image(src / "small.png", (64, 48), seed=1)
    make_image(src / "sub" / "wide.png", (160, 64), seed=2)  # networks at 1280x512: over a 400M budget
    args = ("--layout", "by-kind", "--memory-budget", "400M", "--json", "--device", "cpu")
    local = run_cli(str(src), "-o", str(tmp_path / "local"), *args)
    remote = run_cli(str(src), "-o", str(tmp_path / "ray"), "--engine", "ray", *args)
    assert local.returncode == remote.returncode == 1, remote.stderr
    assert sorted(map(str, _tree(tmp_path / "ray"))) == sorted(map(str, _tree(tmp_path / "local"))) == [
        "maps/small.png", "masks/small.png"]
    ours, theirs = _records(remote.stdout), _records(local.stdout)
    assert ours["wide.png"]["status"] == "error" and ours["wide.png"]["error"] == theirs["wide.png"]["error"]
    assert "over the budget of 400.0 MB per image (--memory-budget 400.0 MB)" in ours["wide.png"]["error"]

    # another size: made again on Ray as locally, saying why; the refused image is still refused
    redo = run_cli(str(src), "-o", str(tmp_path / "ray"), "--engine", "ray", "--skip-existing", "--size",
                   "processed", *args)
    records = _records(redo.stdout)
    assert records["small.png"]["status"] == "ok"
    assert records["small.png"]["reason"] == "small.png was made with other settings: size 'original' (now 'processed')"
    assert records["small.png"]["outputs"] == {"map": str(tmp_path / "ray" / "maps" / "small.png"),
                                               "mask": str(tmp_path / "ray" / "masks" / "small.png")}
    assert read_rgb(tmp_path / "ray" / "maps" / "small.png").shape[:2] == (512, 683)


def _tree(root: Path) -> list[Path]:
    return [path.relative_to(root) for path in root.rglob("*.png")]


def test_without_ray_installed_the_engine_is_a_clear_setup_error(run_cli, folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    proc = run_cli(str(folder), "-o", str(tmp_path / "out"), "--engine", "ray")
    assert proc.returncode == 2
    assert "pip install 'animeface-seg[ray]'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_object_storage_needs_the_ray_engine(run_cli, tmp_path):
    proc = run_cli("s3://bucket/in", "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "needs --engine ray" in proc.stderr


@pytest.fixture(scope="module")
def head_cluster(ray_env):
    """``ray start --head`` on 127.0.0.1 with 2 CPUs, in its own process group, killed at the end."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="afs-head-", dir="/tmp")
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--temp-dir", temp, "--include-dashboard", "false", "--disable-usage-stats", "--block"],
        env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([str(ray_cli), "status", "--address", address], capture_output=True,
                             env=os.environ.copy()).returncode != 0:
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up: {head.stderr.read().decode()[-2000:]}")
            time.sleep(2)
        yield address
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(head.pid, sig)
                head.wait(timeout=30)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


def test_cluster_reached_through_ray_address(head_cluster, run_process, run_cli, folder, tmp_path):
    proc = run_process(str(folder), "-o", str(tmp_path / "ray"), "--engine", "ray", "--keep-background",
                       "--batch-size", "2", "--device", "cpu", "--json",
                       env={"RAY_ADDRESS": head_cluster}, timeout=400)
    assert proc.returncode == 1, proc.stderr
    assert f"Ray at {head_cluster} (2 CPUs, 0 GPUs)" in proc.stderr
    assert {name: r["status"] for name, r in _records(proc.stdout).items()} == {
        "a.png": "ok", "b.jpg": "ok", "c.png": "ok", "broken.png": "error"}
    local = run_cli(str(folder), "-o", str(tmp_path / "local"), "--keep-background", "--batch-size", "2")
    assert local.returncode == 1
    ours, theirs = _pngs(tmp_path / "ray"), _pngs(tmp_path / "local")
    assert sorted(ours) == sorted(theirs) == ["a.png", "b.png", "nested/c.png"]
    for name in theirs:
        assert agreement(read_rgb(ours[name]), read_rgb(theirs[name])) >= 0.9999, name


@pytest.fixture(scope="module")
def s3_server(ray_env):
    """moto's S3 server on 127.0.0.1 (any free port), with one bucket; its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def test_s3_input_and_output(ray_instance, s3_server, run_cli, folder, tmp_path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for name in ("a.png", "nested/c.png", "broken.png", "old.png"):
        s3.upload_file(str(folder / name if name != "old.png" else folder / "a.png"), BUCKET, f"in/{name}")
    s3.put_object(Bucket=BUCKET, Key="in/notes.txt", Body=b"not an image, not listed")
    s3.put_object(Bucket=BUCKET, Key="out/old.png", Body=b"done by an earlier run")
    proc = run_cli(f"s3://{BUCKET}/in", "-o", f"s3://{BUCKET}/out", "--engine", "ray", "--keep-background",
                   "--batch-size", "2", "--device", "cpu", "--json", "--skip-existing",
                   env={"AWS_ENDPOINT_URL": s3_server})
    assert proc.returncode == 1, proc.stderr
    assert "warning" not in proc.stderr  # no manifest yet: nothing to warn about
    records = _records(proc.stdout)
    assert records["a.png"]["input"] == f"s3://{BUCKET}/in/a.png"
    assert records["c.png"]["outputs"] == {"map": f"s3://{BUCKET}/out/nested/c.png"}
    # old.png holds no settings record: made again, as the local engine does, saying why
    assert {name: r["status"] for name, r in records.items()} == {
        "a.png": "ok", "c.png": "ok", "old.png": "ok", "broken.png": "error"}
    assert records["old.png"]["reason"].startswith("old.png has no animeface-seg record")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="out/")["Contents"])
    assert keys == ["out/a.png", f"out/{MANIFEST}", "out/nested/c.png", "out/old.png"]
    assert s3.get_object(Bucket=BUCKET, Key="out/old.png")["Body"].read().startswith(b"\x89PNG")
    manifest = s3.get_object(Bucket=BUCKET, Key=f"out/{MANIFEST}")["Body"].read().decode()
    assert sorted(json.loads(line)["input"] for line in manifest.splitlines()) == sorted(
        r["input"] for r in records.values())

    # the same settings again: every object's record (read from its first bytes) matches
    again = run_cli(f"s3://{BUCKET}/in", "-o", f"s3://{BUCKET}/out", "--engine", "ray", "--keep-background",
                    "--batch-size", "2", "--device", "cpu", "--json", "--skip-existing",
                    env={"AWS_ENDPOINT_URL": s3_server})
    statuses = {name: (r["status"], r["reason"]) for name, r in _records(again.stdout).items()}
    assert statuses == {"a.png": ("skipped", "already done"), "c.png": ("skipped", "already done"),
                        "old.png": ("skipped", "already done"), "broken.png": ("error", None)}

    local = run_cli(str(folder / "a.png"), str(folder / "nested"), "-o", str(tmp_path / "local"),
                    "--keep-background", "--batch-size", "2")
    assert local.returncode == 0, local.stderr
    for key, path in (("out/a.png", tmp_path / "local" / "a.png"), ("out/nested/c.png", tmp_path / "local" / "c.png")):
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        with Image.open(io.BytesIO(body)) as image:
            assert agreement(np.array(image.convert("RGB")), read_rgb(path)) >= 0.9999, key


def test_sigterm_stops_a_ray_run_in_order(ray_env, weights_dir, tmp_path):
    """Joining Ray installs a SIGTERM handler that aborts the process; the command takes it back, so a
    stop is the documented one: exit 143, the summary, whole output sets, the instance it started shut down."""
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(10):
        make_image(src / f"p{i}.png", (256, 200), seed=i)
    args = [*cli_command(), str(src), "-o", str(out), "--engine", "ray", "--replicas", "1", "--json",
            "--weights-dir", str(weights_dir)]
    proc = signal_when_written(args, out, "*_mask.png", signal.SIGTERM, env=ray_env)
    assert proc.returncode == 143, proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr and "SIGTERM received" not in proc.stderr
    for image in src.iterdir():
        present = {path.name for path in out.glob(f"{image.stem}*.png")}
        assert present in (set(), {f"{image.stem}.png", f"{image.stem}_mask.png"}), present
    assert not [path for path in out.rglob(".*") if path.name.endswith(".tmp")]
