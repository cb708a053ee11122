"""Resume trusts only what it checked: ``--skip-existing`` skips an input only when each of its outputs is a
whole PNG (chunks walked to an IEND that ends the file) carrying the run's record, locally and in object storage.

Real outputs of the command, damaged the ways a full disk, a stopped copy or a flipped bit leave them.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animeface_seg.batch.pngcheck import HEAD_BYTES, DamagedPNG, text_chunks
from animeface_seg.batch.signature import KEY, Signature, read, stale_reason
from animeface_seg.batch.writers import encode_png
from conftest import make_image


def _records(stdout: str) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in map(json.loads, stdout.splitlines())}


def _chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, length) of each chunk of a PNG, walked here independently of the project."""
    found, position = [], 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        found.append((position, kind, length))
        position += 12 + length
    return found


@pytest.fixture(scope="module")
def done(run_cli, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """Five inputs segmented once (map and mask each): the folders and the input names."""
    root = tmp_path_factory.mktemp("resume")
    names = [f"{stem}.png" for stem in "abcde"]
    for seed, name in enumerate(names):
        make_image(root / "in" / name, (80, 56), seed=seed)
    first = run_cli(str(root / "in"), "-o", str(root / "out"), "--device", "cpu")
    assert first.returncode == 0, first.stderr
    return root / "in", root / "out", names


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> tuple[Path, Signature]:
    """A noisy 800x600 output written by the command's PNG writer with a record: about 1.4 MB, so its
    later chunk headers lie far beyond the first read; the file and its signature."""
    signature = Signature(size="original", remove_background=True, precision="fp32", unet="u" * 16, abg="m" * 16)
    path = tmp_path_factory.mktemp("large") / "large.png"
    pixels = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    with open(path, "wb") as stream:
        encode_png(Image.fromarray(pixels), stream, signature.png_info())
    assert path.stat().st_size > HEAD_BYTES * 16
    return path, signature


def _damage(out: Path) -> dict[str, str]:
    """Damage one output of four inputs in four ways; the name of each damaged file's input and the words
    its reason must hold."""
    whole = (out / "a.png").read_bytes()
    (out / "a.png").write_bytes(whole[:len(whole) // 2])  # cut to half its size
    mask = (out / "b_mask.png").read_bytes()
    (out / "b_mask.png").write_bytes(mask[:-12])  # the IEND chunk lost
    (out / "c.png").write_bytes((out / "c.png").read_bytes() + b"\0" * 100)  # bytes after the end
    data = bytearray((out / "d_mask.png").read_bytes())
    offset = data.index(KEY.encode()) + len(KEY) + 5
    data[offset] ^= 0x20  # one bit of the settings record flipped, its CRC kept
    (out / "d_mask.png").write_bytes(bytes(data))
    return {"a.png": "a.png is cut short", "b.png": "b_mask.png is cut short",
            "c.png": "c.png has 100 bytes after its IEND", "d.png": "d_mask.png has a damaged 'tEXt' chunk"}


def test_skip_existing_redoes_every_output_that_is_not_a_whole_png(run_cli, done):
    src, out, names = done
    before = {path.name: path.read_bytes() for path in out.glob("*.png")}
    expected = _damage(out)
    resumed = run_cli(str(src), "-o", str(out), "--device", "cpu", "--skip-existing", "--json")
    assert resumed.returncode == 0, resumed.stderr
    records = _records(resumed.stdout)
    assert records["e.png"]["status"] == "skipped" and records["e.png"]["reason"] == "already done"
    for name, words in expected.items():
        assert records[name]["status"] == "ok", records[name]
        assert records[name]["reason"].startswith(words), records[name]
    assert {path.name: path.read_bytes() for path in out.glob("*.png")} == before  # made again, whole
    again = _records(run_cli(str(src), "-o", str(out), "--device", "cpu", "--skip-existing", "--json").stdout)
    assert {name: record["status"] for name, record in again.items()} == dict.fromkeys(names, "skipped")


@pytest.mark.parametrize("which", ["map", "large"])
def test_every_cut_of_a_real_output_is_refused_and_the_whole_file_read(done, large, which):
    """Cut at each chunk boundary and inside each chunk: never whole; the uncut file gives its record."""
    path = done[1] / "e.png" if which == "map" else large[0]
    data = path.read_bytes()
    with open(path, "rb") as stream:
        record = read(stream)
    assert record is not None and record["size"] == "original" and record["format"] == 1
    chunks = _chunks(data)
    assert chunks[0][1] == b"IHDR" and chunks[-1][1] == b"IEND"
    cuts = {offset + step for offset, _, length in chunks for step in (0, 4, 8, 8 + length // 2, 11 + length)}
    for cut in sorted(cut for cut in cuts | {0} if cut < len(data)):
        cut_file = path.with_name("cut.png")
        cut_file.write_bytes(data[:cut])
        with open(cut_file, "rb") as stream, pytest.raises(DamagedPNG, match=r"^is cut short: "):
            text_chunks(stream)
        assert stale_reason({"map": cut_file}, None) is None  # existence alone says nothing of wholeness
    cut_file.unlink()


def test_a_png_without_its_header_first_or_image_data_is_not_whole(done, tmp_path):
    _, out, _ = done
    data = (out / "e.png").read_bytes()
    (first, _, first_length), (second, _, second_length) = _chunks(data)[:2]
    swapped = tmp_path / "swapped.png"  # IHDR moved after the chunk that followed it
    swapped.write_bytes(data[:8] + data[second:second + 12 + second_length] + data[first:first + 12 + first_length]
                        + data[second + 12 + second_length:])
    with open(swapped, "rb") as stream, pytest.raises(DamagedPNG, match="does not start with its IHDR"):
        text_chunks(stream)
    no_pixels = tmp_path / "no-pixels.png"
    no_pixels.write_bytes(data[:8] + b"".join(data[offset:offset + 12 + length]
                                              for offset, kind, length in _chunks(data) if kind != b"IDAT"))
    with open(no_pixels, "rb") as stream, pytest.raises(DamagedPNG, match="holds no image data"):
        text_chunks(stream)


@pytest.fixture(scope="module")
def s3_bucket():
    """moto's S3 server on 127.0.0.1 with one bucket (dummy keys); its endpoint URL."""
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1"}.items():
            patch.setenv(name, value)
        server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="resume")
        yield endpoint
        server.stop()


def test_object_storage_resume_verifies_the_whole_object(s3_bucket, large):
    """The Ray engine's store: a whole object with the record is done; one cut short, or with bytes after
    its end, is made again, saying why (the same rule as local files)."""
    import boto3

    from animeface_seg.integrations.ray.storage import Storage, parse_location

    path, signature = large
    data = path.read_bytes()
    s3 = boto3.client("s3", endpoint_url=s3_bucket)
    bodies = {"whole.png": data, "cut.png": data[:len(data) - HEAD_BYTES * 3], "longer.png": data + b"tail"}
    for key, body in bodies.items():
        s3.put_object(Bucket="resume", Key=f"out/{key}", Body=body)
    store = Storage(s3_endpoint=s3_bucket)
    reasons = {key: stale_reason({"map": parse_location(f"s3://resume/out/{key}")}, signature, store)
               for key in bodies}
    assert reasons["whole.png"] is None
    assert reasons["cut.png"].startswith("cut.png is cut short"), reasons
    assert reasons["longer.png"].startswith("longer.png has 4 bytes after its IEND"), reasons


def test_skip_existing_remakes_a_clip_frame_cut_short(run_cli, tmp_path):
    """A clip's frames follow the same rule: a frame PNG cut short is made again, the whole ones are kept."""
    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(3)]
    (tmp_path / "in").mkdir()
    frames[0].save(tmp_path / "in" / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "out"
    args = (str(tmp_path / "in"), "-o", str(out), "--keep-background", "--json", "--device", "cpu", "--skip-existing")
    assert run_cli(*args).returncode == 0
    before = {path.name: path.read_bytes() for path in (out / "anim").glob("*.png")}
    assert sorted(before) == ["000001.png", "000002.png", "000003.png"]
    kept = {name: (out / "anim" / name).stat().st_mtime_ns for name in ("000001.png", "000003.png")}
    (out / "anim" / "000002.png").write_bytes(before["000002.png"][:-40])
    resumed = run_cli(*args)
    record = _records(resumed.stdout)["anim.gif"]
    assert (record["status"], record["frames"]) == ("ok", 3), record
    assert record["reason"] == "resumed: 2 frames already done, 1 made", record
    assert {path.name: path.read_bytes() for path in (out / "anim").glob("*.png")} == before
    assert {name: (out / "anim" / name).stat().st_mtime_ns for name in kept} == kept


def test_the_record_stores_the_background_choice_under_its_old_key_and_wording():
    """Python says ``remove_background``; the record written into every PNG (and a video's) keeps the key and
    meaning outputs of earlier versions carry, so their resume still matches: text compared byte for byte."""
    from animeface_seg.batch.encode import video_record
    from animeface_seg.batch.signature import differences

    removed = Signature(size="original", remove_background=True, precision="fp32", unet="u" * 16, abg="m" * 16)
    assert removed.to_text() == (
        '{"abg": "mmmmmmmmmmmmmmmm", "format": 1, "keep_background": false, "layout": "mirror", '
        '"precision": "fp32", "size": "original", "unet": "uuuuuuuuuuuuuuuu"}')
    kept = Signature(size="original", remove_background=False, precision="fp32", unet="u" * 16, abg=None)
    assert list(kept.record()) == ["size", "keep_background", "precision", "unet", "abg", "layout", "format"]
    assert video_record(kept, 3)["keep_background"] is True
    assert differences(removed.record(), kept.record()) == "keep_background False (now True), other mask weights"
