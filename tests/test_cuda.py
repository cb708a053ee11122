"""GPU checks: fp16 on CUDA keeps the end-to-end golden parity. Skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import GOLDEN_CASES, agreement, read_gray, read_rgb

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_cuda_end_to_end_parity(reference, weights_dir, precision):
    from animeface_seg import Segmentor

    seg = Segmentor.from_pretrained(weights_dir=weights_dir, device="cuda", precision=precision, output_size="processed")
    results = seg([reference / "golden" / case / "input.png" for case in GOLDEN_CASES], batch_size=4)
    for case, result in zip(GOLDEN_CASES, results):
        case_dir = reference / "golden" / case
        assert agreement(result.colors, read_rgb(case_dir / "map.png")) >= 0.80, case
        assert np.abs(result.mask.astype(float) - read_gray(case_dir / "abg_mask.png")).mean() <= 5.0, case


def test_default_budget_on_cuda_is_80_percent_of_the_free_gpu_memory():
    from animeface_seg.engine.memory import GPU_FRACTION, machine_budget

    before, _ = torch.cuda.mem_get_info(0)
    budget = machine_budget("cuda", 0)
    after, _ = torch.cuda.mem_get_info(0)
    assert GPU_FRACTION == 0.8
    assert int(min(before, after) * 0.8) <= budget.device <= int(max(before, after) * 0.8)
    assert "80% of the free GPU memory" in budget.origin


def test_cuda_out_of_memory_halves_the_batch_and_keeps_every_result(weights_dir):
    """A batch that cannot fit raises CUDA's out-of-memory error inside the networks; the segmentor splits it
    until each half fits and returns every image, equal to running them one at a time."""
    from animeface_seg import Segmentor

    seg = Segmentor.from_pretrained(weights_dir=weights_dir, device="cuda", precision="fp32", output_size="processed")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8) for _ in range(8)]
    prepared = [seg.prepare(image) for image in images]
    torch.cuda.reset_peak_memory_stats(0)  # earlier tests' batches must not count
    singles = [seg.run([p])[0] for p in prepared]
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    one = torch.cuda.max_memory_allocated(0)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 3 * one / total), 0)  # room for a few images, not 8
    try:
        with pytest.raises(torch.OutOfMemoryError):
            with torch.inference_mode():
                seg.forward(torch.stack([p.pixels for p in prepared]))
        torch.cuda.empty_cache()
        batched = seg.run(prepared)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
    assert len(batched) == 8
    for single, result in zip(singles, batched):
        assert agreement(result.colors, single.colors) >= 0.99
        assert np.abs(result.mask.astype(int) - single.mask.astype(int)).max() <= 1
