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
