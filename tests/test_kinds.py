"""Registered output kinds (``batch/kinds``): a kind registered as one record is written by the real command
(both layouts, stills and encoded clips) with nothing else changed, and the run's selection and memory terms
come from the records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animeface_seg.batch.kinds import Kind, always, memory_terms, register, select, unregister, when
from animeface_seg.engine import memory
from conftest import make_image, make_video, read_gray, read_rgb


def _inverted(result, source):
    return Image.fromarray(255 - result.mask, "L")


def _gray(result, source):
    return Image.fromarray(source, "RGB").convert("L")


#: A toy kind from the results alone, written whenever the mask is.
INVERTED = Kind("inverted", suffix="_inverted", folder="inverted-masks", render=_inverted,
                wanted=when("remove_background"))
#: A toy kind drawn from the decoded source, written by every run, dearer to render than the overlay.
GRAY = Kind("gray", suffix="_gray", folder="grays", render=_gray, wanted=always, needs_source=True,
            render_bytes_per_pixel=40)


@pytest.fixture
def toys():
    """The two toy kinds registered for one test."""
    for kind in (INVERTED, GRAY):
        register(kind)
    yield
    for kind in (INVERTED, GRAY):
        unregister(kind.name)


def _records(stdout: str) -> dict[str, dict]:
    return {Path(record["input"]).name: record for record in map(json.loads, stdout.splitlines())}


def test_a_registered_kind_is_written_and_encoded_by_the_command(run_cli, toys, tmp_path):
    av = pytest.importorskip("av")
    src = tmp_path / "in"
    make_image(src / "a.png", (48, 40))
    make_video(src / "clip.mp4", frames=3, size=(32, 16))
    out = tmp_path / "out"
    result = run_cli(str(src), "-o", str(out), "--encode", "both", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    records = _records(result.stdout)
    assert list(records["a.png"]["outputs"]) == ["map", "mask", "inverted", "gray"]
    assert np.array_equal(read_gray(out / "a_inverted.png"), 255 - read_gray(out / "a_mask.png"))
    with Image.open(src / "a.png") as source:
        assert np.array_equal(read_gray(out / "a_gray.png"), np.array(source.convert("RGB").convert("L")))
    assert records["clip.mp4"]["outputs"]["inverted_video"] == str(out / "clip_inverted.mkv")
    with av.open(str(out / "clip_inverted.mkv")) as container:
        assert container.streams.video[0].codec_context.name == "ffv1"
        frames = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    masks = [read_gray(out / "clip" / f"{n:06d}_mask.png") for n in (1, 2, 3)]
    assert len(frames) == 3 and all(np.array_equal(f, 255 - m) for f, m in zip(frames, masks))
    with av.open(str(out / "clip_gray.mkv")) as container:
        grays = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    assert np.array_equal(grays[0], read_gray(out / "clip" / "000001_gray.png"))
    assert grays[0].shape == read_rgb(out / "clip" / "000001.png").shape[:2]

    by_kind = tmp_path / "by-kind"
    result = run_cli(str(src / "a.png"), "-o", str(by_kind), "--layout", "by-kind", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(by_kind).as_posix() for p in by_kind.rglob("*.png")) == [
        "grays/a.png", "inverted-masks/a.png", "maps/a.png", "masks/a.png"]

    kept = tmp_path / "kept"
    result = run_cli(str(src / "a.png"), "-o", str(kept), "--keep-background", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in kept.glob("*.png")) == ["a.png", "a_gray.png"]  # no mask, so no inverted one


def test_a_run_selects_its_kinds_from_the_records_once():
    assert select() == ("map", "mask")
    assert select(remove_background=False) == ("map",)
    assert select(("eye", "hair", "eye"), overlay=True, cutout=True) == ("map", "mask", "cutout", "overlay", "eye",
                                                                          "hair")
    with pytest.raises(ValueError, match="unknown output kind 'edges'"):
        select(("edges",))
    with pytest.raises(ValueError, match="already registered"):
        register(Kind("mask", suffix="_m", folder="m", render=_inverted))


def test_the_memory_estimate_counts_the_source_and_the_costliest_kind(toys):
    assert memory_terms(["map", "mask", "hair"]) == {"keep_source": False, "render_bytes_per_pixel": 0}
    assert memory_terms(["map", "mask", "cutout"]) == {"keep_source": True, "render_bytes_per_pixel": 26}
    assert memory_terms(["map", "cutout", "overlay"])["render_bytes_per_pixel"] == 26  # rendered one at a time
    assert memory_terms(["map", "gray"]) == {"keep_source": True, "render_bytes_per_pixel": 40}
    assert memory_terms(select(remove_background=False, overlay=True))["render_bytes_per_pixel"] == 40
    plain = memory.estimate(300, 200, "RGB", **memory_terms(["map", "mask"]))
    dear = memory.estimate(300, 200, "RGB", **memory_terms(select()))
    assert dear.stages["writing"] - plain.stages["writing"] == (3 + 40) * 300 * 200  # the source kept, GRAY drawn


def test_the_kinds_needing_the_mask_come_from_their_records(toys):
    from animeface_seg.batch.kinds import KINDS, needing_mask

    assert needing_mask(KINDS) == ("mask", "cutout")
    assert needing_mask(select(("hair",), remove_background=False, overlay=True)) == ()
