"""One execution of the node: an IMAGE batch through the cached networks in device batches."""

from __future__ import annotations

import torch

from animeface_seg.engine.device import default_batch_size
from animeface_seg.engine.geometry import RESOLUTION
from animeface_seg.engine.segmentor import OutputSize, Segmentor
from animeface_seg.integrations.comfyui.networks import networks
from animeface_seg.integrations.comfyui.tensors import image_to_uint8, to_outputs


def segment(image: torch.Tensor, remove_background: bool = True, resolution: int = RESOLUTION,
            output_size: OutputSize = "processed") -> tuple[torch.Tensor, torch.Tensor]:
    """Colour maps (IMAGE) and character masks (MASK) for every image of the batch, in order.

    Progress is reported and ComfyUI's cancel button honoured between device batches.
    """
    import comfy.model_management as mm
    import comfy.utils

    if resolution != RESOLUTION:
        raise ValueError(f"resolution must be {RESOLUTION}: both networks were trained at {RESOLUTION} only "
                         f"(got {resolution}).")
    pixels = image_to_uint8(image)
    unet, *isnet = networks(remove_background)
    device = unet.load_device
    precision = "fp16" if device.type == "cuda" and mm.should_use_fp16(device) else "fp32"
    segmentor = Segmentor(unet.model, isnet[0].model if isnet else None, device=device, precision=precision,
                          output_size=output_size, place=False, runtime="torch")
    batch_size = default_batch_size(device)
    progress = comfy.utils.ProgressBar(len(pixels))
    results = []
    for start in range(0, len(pixels), batch_size):
        mm.throw_exception_if_processing_interrupted()
        chunk = pixels[start:start + batch_size]
        results += segmentor.segment_on_device(chunk, batch_size=batch_size)
        progress.update(len(chunk))
    return to_outputs(results, mm.intermediate_device())
