"""The two networks inside ComfyUI: loaded once per server, placed by ComfyUI's model management.

Each network is read once per file (keyed by path, size and modification time, so a replaced
file is read again) and wrapped in a ``comfy.model_patcher.ModelPatcher``. Before each run
``load_models_gpu`` puts them on ComfyUI's torch device; between runs ComfyUI may move them back
to its offload device when other models need the memory, exactly as it does with its own models.
"""

from __future__ import annotations

import logging
from pathlib import Path

from animeface_seg.engine.optimize import fold_batchnorm
from animeface_seg.engine.weights import ABG, UNET, WeightSpec, load
from animeface_seg.integrations.comfyui.paths import find_in_comfyui

log = logging.getLogger("animeface_seg")

_patchers: dict[tuple[str, str, int, int], object] = {}


def _key(spec: WeightSpec, path: Path) -> tuple[str, str, int, int]:
    stat = path.stat()
    return spec.key, str(path.resolve()), stat.st_size, stat.st_mtime_ns


def patcher(spec: WeightSpec):
    """The cached ``ModelPatcher`` of ``spec``'s network, reading the checkpoint on first use only."""
    import comfy.model_management as mm
    from comfy.model_patcher import ModelPatcher

    path = find_in_comfyui(spec)
    key = _key(spec, path)
    if key not in _patchers:
        for stale in [k for k in _patchers if k[0] == spec.key]:
            del _patchers[stale]
        # Folded once here, so each run's Segmentor uses these modules as they are (no per-run copy).
        model = fold_batchnorm(load(spec, path), inplace=True)
        _patchers[key] = ModelPatcher(model, load_device=mm.get_torch_device(),
                                      offload_device=mm.unet_offload_device())
        log.info("animeface-seg: loaded %s from %s", spec.filename, path)
    return _patchers[key]


def networks(remove_background: bool) -> list:
    """The patchers needed for one run (UNet, then ISNet when the background is removed), on the device."""
    import comfy.model_management as mm

    wanted = [patcher(UNET)] + ([patcher(ABG)] if remove_background else [])
    # Full loads: these are plain torch modules, which ComfyUI's partial (lowvram) loading cannot split.
    mm.load_models_gpu(wanted, force_full_load=True)
    return wanted
