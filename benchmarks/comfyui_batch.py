#!/usr/bin/env python3
"""One ComfyUI IMAGE batch through our node's code path against the original node's approach.

No server: both sides run in this process on the same float (B, H, W, 3) batch, as ComfyUI
hands it to a node.
  ours:     the node's path (``integrations/comfyui``): IMAGE to uint8 once, networks already
            loaded (the node keeps them across executions), ``Segmentor.segment_on_device`` in
            device batches, outputs stacked on the device and copied once.
  original: a faithful re-creation of ``AnimeFace_SemSegPreprocessor``: both networks built
            from the checkpoint files on every execution, then one image at a time: numpy uint8
            copy, resize and pad, ISNet, composite over white, UNet, the per-pixel Python
            colouring loop, crop, a float64 map+mask array divided by 255, and a final stack.
Both use the same networks, resize rule and precision (fp32 on CPU), so the difference is the
node's approach, not the arithmetic.

    python benchmarks/comfyui_batch.py --n 16 --device cpu
    python benchmarks/comfyui_batch.py --n 16 --height 512 --width 512 --json docs/comfyui-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from animeface_seg.engine import geometry
from animeface_seg.engine.geometry import device as device_geometry
from animeface_seg.engine.device import default_batch_size, describe, select_device, select_dtype
from animeface_seg.engine.segmentor import Segmentor
from animeface_seg.engine.weights import ABG, UNET, load
from animeface_seg.integrations.comfyui.tensors import image_to_uint8, to_outputs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import _colour_pixel_by_pixel, stand_in_weights  # noqa: E402


def image_batch(n: int, height: int, width: int) -> torch.Tensor:
    """A ComfyUI IMAGE batch: n different pictures (a figure on a gradient, with noise), float in [0, 1]."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    figure = ((xx - width / 2) ** 2 / (width / 4) ** 2 + (yy - height / 2) ** 2 / (height / 3) ** 2) < 1
    images = []
    for i in range(n):
        img = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, (37 * i) % 256)], -1)
        img[figure] = (250, 220, 200)
        images.append(np.clip(img + rng.integers(-25, 25, img.shape), 0, 255).astype(np.float32) / 255.0)
    return torch.from_numpy(np.stack(images))


@torch.inference_mode()
def ours(segmentor: Segmentor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The node's execution path (run.segment without ComfyUI's progress bar and model management)."""
    pixels = image_to_uint8(image)
    batch_size = default_batch_size(segmentor.device)
    results = []
    for start in range(0, len(pixels), batch_size):
        results += segmentor.segment_on_device(pixels[start:start + batch_size], batch_size=batch_size)
    return to_outputs(results, torch.device("cpu"))


@torch.inference_mode()
def original(weights: Path, image: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The original node's approach; returns its outputs and the seconds spent building the networks."""
    start = time.perf_counter()
    unet = load(UNET, weights / UNET.filename).to(device)
    isnet = load(ABG, weights / ABG.filename).to(device)
    build = time.perf_counter() - start
    out = []
    for one in image:
        np_image = np.asarray(one.cpu() * 255.0, dtype=np.uint8)
        h, w = geometry.processed_size(*np_image.shape[:2])
        padded = device_geometry.prepare(torch.from_numpy(np_image).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        feed = torch.from_numpy(padded.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
        mask = isnet(feed)[0].permute(1, 2, 0).cpu().numpy()
        composite = (mask * padded + 255 * (1 - mask)).astype(np.uint8)
        mask = (mask * 255).astype(np.uint8)
        feed = torch.from_numpy(composite).float().permute(2, 0, 1)[None].to(device) / 255
        seg = unet(feed)[0]
        detected = _colour_pixel_by_pixel(seg.cpu().numpy())[:h, :w]
        both = np.zeros([h, w, 4])
        both[:, :, :3] = detected
        both[:, :, 3:] = mask[:h, :w]
        out.append(torch.from_numpy(both.astype(np.float32) / 255.0))
    result = torch.stack(out)
    del unet, isnet
    return result[..., :3], result[..., 3:].permute(0, 3, 1, 2), build


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="images in the IMAGE batch")
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternate the two paths this many times and keep each one's best (a shared machine is noisy)")
    ap.add_argument("--weights-dir", type=Path, help="default: seeded stand-ins from shared/reference")
    ap.add_argument("--json", type=Path, help="also save the figures here")
    args = ap.parse_args()

    device = select_device(args.device)
    weights = args.weights_dir or stand_in_weights(Path(tempfile.mkdtemp(prefix="bench-weights-")))
    image = image_batch(args.n, args.height, args.width)
    segmentor = Segmentor(load(UNET, weights / UNET.filename), load(ABG, weights / ABG.filename), device=device,
                          precision="fp32", output_size="processed")
    ours(segmentor, image[:1])  # warm-up, as a server that has run the node once
    load_before = os.getloadavg()[0]

    ours_s = original_s = build_s = float("inf")
    for _ in range(args.rounds):
        start = time.perf_counter()
        our_map, our_mask = ours(segmentor, image)
        ours_s = min(ours_s, time.perf_counter() - start)
        start = time.perf_counter()
        their_map, their_mask, build = original(weights, image, device)
        elapsed = time.perf_counter() - start
        if elapsed < original_s:
            original_s, build_s = elapsed, build

    agree = float((our_map == their_map).all(-1).float().mean())
    figures = {
        "device": describe(device, select_dtype(device, "fp32")), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "n": args.n, "rounds": args.rounds, "input_hw": [args.height, args.width], "output_hw": list(our_map.shape[1:3]),
        "ours_s": ours_s, "original_s": original_s, "original_network_build_s": build_s,
        "speedup": original_s / ours_s, "speedup_without_build": (original_s - build_s) / ours_s,
        "map_agreement": agree, "mask_max_diff": float((our_mask - their_mask[:, 0]).abs().max() * 255),
        "output_shapes": {"ours": [list(our_map.shape), list(our_mask.shape)],
                          "original": [list(their_map.shape), list(their_mask.shape)]},
    }
    print(f"IMAGE batch of {args.n} at {args.height}x{args.width} on {figures['device']} "
          f"({figures['threads']} threads), results {figures['output_hw'][0]}x{figures['output_hw'][1]}; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"  ours (node path, networks cached):  {ours_s:7.2f} s  ({args.n / ours_s:.2f} img/s)")
    print(f"  original approach:                  {original_s:7.2f} s  ({args.n / original_s:.2f} img/s), "
          f"of which building the networks {build_s:.2f} s")
    print(f"  speed-up: {figures['speedup']:.2f}x  ({figures['speedup_without_build']:.2f}x without the build)")
    print(f"  same maps on {agree:.2%} of pixels; masks within {figures['mask_max_diff']:.0f}/255; "
          f"MASK shapes ours {figures['output_shapes']['ours'][1]} vs original {figures['output_shapes']['original'][1]}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
