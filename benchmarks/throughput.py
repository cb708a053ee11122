#!/usr/bin/env python3
"""Throughput of animeface-seg on this machine, in one run.

Makes a folder of N synthetic images of mixed sizes and aspect ratios, then measures:
  (a) the networks alone, batched, on preprocessed tensors (the ceiling),
  (b) the whole ``animeface-seg`` command end to end on the folder (images/s, peak RSS),
  (c) a one-image-at-a-time baseline in the reference's style (fp32, batch 1, no overlap,
      decode, per-pixel Python colouring and PNG encoding in line),
and prints a table with the ratios (b)/(a) and (b)/(c). ``--json FILE`` saves the figures.

    python benchmarks/throughput.py --n 32 --device cpu
    python benchmarks/throughput.py --n 256 --device cuda --json cuda.json
    python benchmarks/throughput.py --rss-only --rss-n 50 500 --device cpu   # memory vs N

Without --weights-dir it uses seeded stand-in weights from shared/reference (same
architecture, same cost as the real ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from animeface_seg import Segmentor
from animeface_seg.batch.settings import RunSettings
from animeface_seg.cli.process_setup import configure_process
from animeface_seg.engine.batcher import ShapeBatcher
from animeface_seg.engine.decode import load_rgb
from animeface_seg.engine.device import describe, select_device, select_dtype
from animeface_seg.engine.palette import CLASS_COLORS

REPO = Path(__file__).resolve().parents[1]
#: (width, height) pairs cycled through: landscape, portrait, square, small (enlarged), large.
SIZES = [(800, 600), (600, 800), (512, 512), (300, 200), (1280, 720), (720, 1280), (1000, 1000), (640, 480)]


def make_images(folder: Path, n: int) -> list[Path]:
    """N synthetic JPEG/PNG pictures of mixed sizes (a figure on a gradient, with noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, (37 * i) % 256)], -1)
        figure = ((xx - w / 2) ** 2 / (w / 4) ** 2 + (yy - h / 2) ** 2 / (h / 3) ** 2) < 1
        img[figure] = (250, 220, 200)
        img = np.clip(img + rng.integers(-25, 25, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"img{i:04d}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(img).save(path, quality=92)
        paths.append(path)
    return paths


def stand_in_weights(folder: Path) -> Path:
    script = REPO.parent / "shared" / "reference" / "make_checkpoints.py"
    subprocess.run([sys.executable, str(script), str(folder), "--seed", "0"], check=True, capture_output=True)
    return folder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def networks_alone(seg: Segmentor, paths: list[Path], batch_size: int) -> float:
    """(a) images/s of the two networks on already-prepared batches grouped by shape."""
    batcher = ShapeBatcher(batch_size, key=lambda prepared: prepared.padded_shape, max_held=len(paths))
    grouped = []
    for path in paths:
        grouped += batcher.add(seg.prepare(load_rgb(path)))
    batches = [torch.stack([p.pixels for p in group]) for group in grouped + batcher.drain()]
    for batch in {b.shape: b for b in batches}.values():  # warm-up once per shape
        seg.forward(batch)
    sync(seg.device)
    start = time.perf_counter()
    for batch in batches:
        seg.forward(batch)
    sync(seg.device)
    return len(paths) / (time.perf_counter() - start)


def end_to_end(folder: Path, weights: Path, args: argparse.Namespace, extra: list[str]) -> dict:
    """(b) the installed command on the folder: its own images/s (after start-up), wall time, peak RSS."""
    out = Path(tempfile.mkdtemp(prefix="bench-out-"))
    cmd = [sys.executable, "-m", "animeface_seg", str(folder), "-o", str(out), "--weights-dir", str(weights),
           "--device", args.device, "--precision", args.precision] + extra
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed:\n{stderr}")
    rate = float(re.search(r"\(([\d.]+) images/s\)", stderr).group(1))
    return {"images_per_s": rate, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "log": stderr.strip()}


def _colour_pixel_by_pixel(probabilities: np.ndarray) -> np.ndarray:
    """The reference's colouring: a Python loop taking the argmax and palette colour of each pixel."""
    per_pixel = np.moveaxis(probabilities, 0, 2)
    return np.array([[CLASS_COLORS[int(np.argmax(v))] for v in row] for row in per_pixel], dtype=np.uint8)


@torch.inference_mode()
def one_at_a_time(weights: Path, paths: list[Path], device: str, keep_background: bool) -> float:
    """(c) reference style: fp32, one image at a time, decode, softmax, per-pixel colouring in
    Python and PNG encoding (Pillow's default level) all in line."""
    seg = Segmentor.from_pretrained(weights_dir=weights, device=device, precision="fp32",
                                    remove_background=not keep_background)
    out = Path(tempfile.mkdtemp(prefix="bench-base-"))

    def one(path: Path) -> None:
        prepared = seg.prepare(load_rgb(path))
        rgb = prepared.pixels[None].float()
        h, w = prepared.processed_size
        if seg.isnet is not None:
            mask = seg.isnet(rgb / 255.0)
            rgb = (mask * rgb + 255.0 * (1.0 - mask)).trunc()
            mask_u8 = (mask[0, 0, :h, :w] * 255).to(torch.uint8).cpu().numpy()
            Image.fromarray(mask_u8).save(out / f"{path.stem}_mask.png")
        probabilities = torch.softmax(seg.unet(rgb / 255.0), dim=1)[0].cpu().numpy()
        Image.fromarray(_colour_pixel_by_pixel(probabilities)[:h, :w]).save(out / f"{path.stem}.png")

    one(paths[0])  # warm-up
    start = time.perf_counter()
    for path in paths:
        one(path)
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="number of images (default 32)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch-size", type=int, help="default: the command's default for the device")
    ap.add_argument("--workers", type=int, help="default: the command's default for the device")
    ap.add_argument("--keep-background", action="store_true", help="UNet only")
    ap.add_argument("--weights-dir", type=Path, help="default: seeded stand-ins from shared/reference")
    ap.add_argument("--rss-only", action="store_true", help="only run the command for each --rss-n and compare peak RSS")
    ap.add_argument("--rss-n", type=int, nargs="*", default=[], help="extra folder sizes for the peak-RSS check")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    configure_process()  # the process settings the command uses, so (a), (b) and (c) compare fairly

    work = Path(tempfile.mkdtemp(prefix="animeface-bench-"))
    weights = args.weights_dir or stand_in_weights(work / "weights")
    device = select_device(args.device)
    settings = RunSettings.decide(work, device.type, batch_size=args.batch_size, workers=args.workers)
    batch_size, workers = settings.batch_size, settings.workers
    extra = ["--batch-size", str(batch_size), "--workers", str(workers)]
    extra += ["--keep-background"] if args.keep_background else []
    figures: dict = {
        "device": describe(device, select_dtype(device, args.precision)), "n": None if args.rss_only else args.n, "batch_size": batch_size, "workers": workers,
        "keep_background": args.keep_background, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "command": " ".join(sys.argv),
    }
    if not args.rss_only:
        paths = make_images(work / "images", args.n)
        # The command runs first, while this process is still small and idle.
        e2e = end_to_end(work / "images", weights, args, extra)
        figures["b_end_to_end_images_per_s"] = e2e["images_per_s"]
        figures["b_wall_s_including_startup"] = e2e["wall_s"]
        figures["b_peak_rss_mb"] = e2e["peak_rss_mb"]
        seg = Segmentor.from_pretrained(weights_dir=weights, device=args.device, precision=args.precision,
                                        remove_background=not args.keep_background)
        figures["a_networks_images_per_s"] = networks_alone(seg, paths, batch_size)
        del seg
        figures["c_one_at_a_time_images_per_s"] = one_at_a_time(weights, paths, args.device, args.keep_background)
        figures["b_over_a"] = figures["b_end_to_end_images_per_s"] / figures["a_networks_images_per_s"]
        figures["b_over_c"] = figures["b_end_to_end_images_per_s"] / figures["c_one_at_a_time_images_per_s"]
    for n in args.rss_n:
        folder = work / f"rss{n}"
        make_images(folder, n)
        figures[f"peak_rss_mb_n{n}"] = end_to_end(folder, weights, args, extra)["peak_rss_mb"]
    print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def print_table(figures: dict) -> None:
    n = f"N={figures['n']}, " if figures["n"] else ""
    print(f"animeface-seg throughput: {figures['device']}, {n}batch {figures['batch_size']}, "
          f"{figures['workers']} workers, torch {figures['torch']} ({figures['threads']} threads)")
    rows = [
        ("(a) networks alone", "a_networks_images_per_s", "img/s"),
        ("(b) end to end (command)", "b_end_to_end_images_per_s", "img/s"),
        ("    wall time incl. start-up", "b_wall_s_including_startup", "s"),
        ("    peak RSS", "b_peak_rss_mb", "MB"),
        ("(c) one at a time (reference style)", "c_one_at_a_time_images_per_s", "img/s"),
        ("(b)/(a)", "b_over_a", ""),
        ("(b)/(c)", "b_over_c", ""),
    ] + [(f"peak RSS, N={k[len('peak_rss_mb_n'):]}", k, "MB") for k in figures if k.startswith("peak_rss_mb_n")]
    for label, key, unit in rows:
        if key in figures:
            print(f"  {label:<38} {figures[key]:>9.3f} {unit}")


if __name__ == "__main__":
    main()
