"""The streaming pipeline: same results as one image at a time, and memory that stays flat."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import PurePath

import numpy as np
import pytest

from animeface_seg.engine.decode import load_rgb
from animeface_seg.batch.discovery import Job
from animeface_seg.batch.pipeline import process
from animeface_seg.batch.kinds import select
from animeface_seg.batch.settings import RunSettings
from animeface_seg.batch.spec import OutputSpec
from conftest import GOLDEN_CASES, agreement, make_image, read_gray, read_rgb


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, reference):
    """Golden inputs plus synthetic pictures; several share a padded shape so batches form."""
    folder = tmp_path_factory.mktemp("mixed")
    for case in GOLDEN_CASES:
        (folder / f"{case}.png").write_bytes((reference / "golden" / case / "input.png").read_bytes())
    for i, size in enumerate([(800, 600), (790, 600), (600, 800), (300, 200)]):
        make_image(folder / f"synthetic{i}.png", size, seed=i)
    return folder


def test_streaming_matches_one_image_at_a_time(segmentor, mixed_folder, tmp_path):
    jobs = [Job(path, PurePath(path.stem)) for path in sorted(mixed_folder.iterdir())]
    options = RunSettings.decide(OutputSpec(tmp_path, select()), "cpu", batch_size=3, workers=2)
    outcomes = list(process(jobs, segmentor, options))
    assert sorted(o.job.source.name for o in outcomes) == sorted(j.source.name for j in jobs)
    assert all(o.status == "ok" for o in outcomes), [o.error for o in outcomes]
    for job in jobs:
        alone = segmentor.run([segmentor.prepare(load_rgb(job.source))])[0]
        streamed_map = read_rgb(tmp_path / f"{job.relative}.png")
        streamed_mask = read_gray(tmp_path / f"{job.relative}_mask.png")
        assert agreement(streamed_map, alone.colors) >= 0.99, job.source.name
        assert np.abs(streamed_mask.astype(int) - alone.mask).max() <= 1, job.source.name


def test_batches_group_by_padded_shape(segmentor, mixed_folder):
    prepared = [segmentor.prepare(load_rgb(p)) for p in sorted(mixed_folder.glob("synthetic*.png"))]
    shapes = [p.padded_shape for p in prepared]
    assert shapes[0] == shapes[1] != shapes[2]
    with pytest.raises(ValueError, match="one padded shape"):
        segmentor.run(prepared[:3])
    both = segmentor.run(prepared[:2])
    for item, result in zip(prepared[:2], both):
        alone = segmentor.run([item])[0]
        assert agreement(result.colors, alone.colors) >= 0.99
        assert np.abs(result.mask.astype(int) - alone.mask).max() <= 1


def _run_counting(segmentor_keep, folder, out, n) -> tuple[int, int]:
    """Process n images; return (peak traced host memory, most inputs in flight at once)."""
    paths = [make_image(folder / f"{i:03d}.png", (48, 40), seed=i) for i in range(n)]
    lock = threading.Lock()
    state = {"pulled": 0, "done": 0, "most": 0}

    def jobs():
        for path in paths:
            with lock:
                state["pulled"] += 1
                state["most"] = max(state["most"], state["pulled"] - state["done"])
            yield Job(path, PurePath(path.stem))

    options = RunSettings.decide(OutputSpec(out, select(remove_background=False)), "cpu", batch_size=2,
                                 workers=2)
    tracemalloc.start()
    try:
        for outcome in process(jobs(), segmentor_keep, options):
            assert outcome.status == "ok", outcome.error
            with lock:
                state["done"] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state["done"] == n
    return peak, state["most"]


def test_memory_stays_flat_as_inputs_grow(segmentor_keep, tmp_path):
    small_peak, small_flight = _run_counting(segmentor_keep, tmp_path / "few", tmp_path / "o1", 6)
    large_peak, large_flight = _run_counting(segmentor_keep, tmp_path / "many", tmp_path / "o2", 30)
    # Inputs are pulled lazily: the number held at once does not grow with N...
    assert large_flight <= 16 and large_flight <= small_flight + 10
    # ...and neither does the host memory the run allocates (numpy buffers are traced).
    assert large_peak < 1.5 * small_peak + 4_000_000, (small_peak, large_peak)
