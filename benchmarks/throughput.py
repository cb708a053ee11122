#!/usr/bin/env python3
"""Throughput of animeface-seg on this machine, in one run.

Makes a folder of N synthetic images of mixed sizes and aspect ratios, then measures:
  (a) the networks alone, as the command runs them, on preprocessed tensors (the ceiling),
  (b) the whole ``animeface-seg`` command end to end on the folder (images/s, wall time of the
      whole process, peak RSS),
  (c) a competent plain script (``--baseline``, run as its own process): networks loaded once
      as built (batch norms unfolded, default memory format), one image at a time, no threads,
      the same decode and resize, a vectorised palette lookup and PNG at the same compression;
      no process-wide settings (allocator) of its own,
running (b) and (c) alternately ``--repeat`` times and reporting medians, and prints a table with
the ratios (b)/(a) and (b)/(c) (rates after start-up, and whole-process wall times).

``--whole-process 1 8 32`` also times both whole processes (start to exit) on folders of that
many of the images, alternating, medians of ``--repeat``: what a user feels. The command runs
once untimed first, so its ONNX export is cached as it is from a user's second run on.
``--runtimes`` times the networks alone per runtime (and in bf16 where the CPU has it) on one
512x704 input, alternating, best and median of ``--repeat``. The load average is recorded
before and after: figures from a busy machine say little.

    python benchmarks/throughput.py --n 8 --repeat 3 --device cpu --json docs/cpu-n8.json
    python benchmarks/throughput.py --n 256 --device cuda --json cuda.json
    python benchmarks/throughput.py --rss-only --rss-n 50 500 --device cpu   # memory vs N
    python benchmarks/throughput.py --n 8 --repeat 5 --device cpu --whole-process 1 8 32 --runtimes \
        --json docs/cpu-runtimes.json

Without --weights-dir it uses seeded stand-in weights from shared/reference (same
architecture, same cost as the real ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from animeface_seg import Segmentor
from animeface_seg.batch.kinds import select
from animeface_seg.batch.settings import RunSettings
from animeface_seg.batch.spec import OutputSpec
from animeface_seg.cli.process_setup import configure_process
from animeface_seg.batch.writers import PNG_COMPRESS_LEVEL
from animeface_seg.engine import geometry
from animeface_seg.engine.geometry import device as device_geometry
from animeface_seg.engine.batcher import ShapeBatcher
from animeface_seg.engine.decode import load_rgb
from animeface_seg.engine.device import describe, memory_format, select_device, select_dtype
from animeface_seg.engine.palette import palette_tensor
from animeface_seg.engine.weights import ABG, UNET, load

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


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The vector-instruction flags that matter to the CPU kernels (AVX2, AVX-512, bf16, AMX)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("flags"):
            wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "fma")
            return " ".join(f for f in line.split(":", 1)[1].split() if f in wanted)
    return ""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def networks_alone(seg: Segmentor, paths: list[Path], batch_size: int) -> float:
    """(a) images/s of the two networks on already-prepared batches grouped by shape."""
    batcher = ShapeBatcher(batch_size, key=lambda prepared: prepared.padded_shape, max_held=len(paths))
    grouped = []
    for path in paths:
        grouped += batcher.add(seg.prepare(load_rgb(path)))
    batches = [seg.side.stack([p.pixels for p in group]) for group in grouped + batcher.drain()]  # the runtime's side
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


@torch.inference_mode()
def baseline(folder: Path, weights: Path, out: Path, device: str, keep_background: bool) -> float:
    """(c) A competent plain script: images/s after loading, one image at a time, no threads.

    The networks are loaded once and run as built (no batch-norm folding, default memory format,
    fp32); each image is decoded, resized and padded as the command does, then the map (palette
    lookup on the device) and the mask are brought to the original size and written as PNG at
    the command's compression level.
    """
    dev = select_device(device)
    unet = load(UNET, weights / UNET.filename).to(dev)
    isnet = None if keep_background else load(ABG, weights / ABG.filename).to(dev)
    palette = palette_tensor(dev)
    out.mkdir(parents=True, exist_ok=True)
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    start = time.perf_counter()
    for path in paths:
        pixels = torch.from_numpy(load_rgb(path)).to(dev).permute(2, 0, 1)
        size = tuple(pixels.shape[1:])
        h, w = geometry.processed_size(*size)
        rgb = device_geometry.prepare(pixels)[None].float()
        if isnet is not None:
            mask = isnet(rgb / 255.0)
            rgb = (mask * rgb + 255.0 * (1.0 - mask)).trunc()
            mask = device_geometry.resize_mask(mask[0, 0, :h, :w], size)
            mask_u8 = (mask * 255.0).clamp(0, 255).to(torch.uint8).cpu().numpy()
            Image.fromarray(mask_u8).save(out / f"{path.stem}_mask.png", compress_level=PNG_COMPRESS_LEVEL)
        classes = device_geometry.resize_classes(unet(rgb / 255.0).argmax(1)[0, :h, :w].to(torch.uint8), size)
        colors = palette[classes.long()].cpu().numpy()
        Image.fromarray(colors).save(out / f"{path.stem}.png", compress_level=PNG_COMPRESS_LEVEL)
    return len(paths) / (time.perf_counter() - start)


def whole_processes(images: list[Path], work: Path, weights: Path, args: argparse.Namespace,
                    extra: list[str]) -> dict:
    """Whole-process wall times of the command (b) and the plain script (c) on folders of the first
    N images for each N of ``--whole-process``, alternating, medians; after one untimed command run."""
    figures = {}
    for n in args.whole_process:
        folder = work / f"whole{n}"
        folder.mkdir(parents=True, exist_ok=True)
        for path in images[:n]:
            (folder / path.name).write_bytes(path.read_bytes())
        end_to_end(folder, weights, args, extra)  # the export (and optimised graph) cached, as after a first run
        command, script = [], []
        for _ in range(args.repeat):
            command.append(end_to_end(folder, weights, args, extra)["wall_s"])
            script.append(baseline_process(folder, weights, args)["wall_s"])
        figures[str(n)] = {"command_wall_s": statistics.median(command), "script_wall_s": statistics.median(script),
                           "speed_up": statistics.median(script) / statistics.median(command),
                           "runs": {"command": command, "script": script}}
    return figures


def networks_per_runtime(weights: Path, repeat: int, keep_background: bool) -> dict:
    """Seconds of the networks alone on one 512x704 input (both networks unless the background is kept)
    for every installed runtime, fp32 and, where the CPU has native bf16, bf16: best and median of
    ``repeat`` rounds, the runtimes alternating within each round."""
    from animeface_seg.engine.device import cpu_has_native_bf16
    from animeface_seg.engine.runtimes.select import installed

    variants = [(r, "fp32") for r in ("reference", "torch", "onnxruntime", "openvino") if installed(r)]
    if cpu_has_native_bf16():
        variants += [(r, "bf16") for r in ("torch", "openvino") if installed(r)]
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 704, 512), dtype=np.uint8))
    segs = {}
    for runtime, precision in variants:
        seg = Segmentor.from_pretrained(weights_dir=weights, device="cpu", runtime=runtime, precision=precision,
                                        remove_background=not keep_background)
        seg.forward(pixels)  # first call: kernels chosen, memory laid out
        segs[f"{runtime} {precision}"] = seg
    times: dict[str, list[float]] = {name: [] for name in segs}
    for _ in range(max(repeat, 3)):
        for name, seg in segs.items():
            start = time.perf_counter()
            seg.forward(pixels)
            times[name].append(time.perf_counter() - start)
    return {name: {"best_s": min(t), "median_s": statistics.median(t)} for name, t in times.items()}


def baseline_process(folder: Path, weights: Path, args: argparse.Namespace) -> dict:
    """(c) run as its own process, like the command: its rate after loading and its whole wall time."""
    out = Path(tempfile.mkdtemp(prefix="bench-base-"))
    cmd = [sys.executable, __file__, "--baseline", str(folder), "--baseline-out", str(out),
           "--weights-dir", str(weights), "--device", args.device] + (["--keep-background"] if args.keep_background else [])
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"baseline failed:\n{proc.stderr}")
    return {"images_per_s": json.loads(proc.stdout.strip().splitlines()[-1])["images_per_s"], "wall_s": wall}


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
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs of (b) and (c); medians reported")
    ap.add_argument("--whole-process", type=int, nargs="*", default=[], metavar="N",
                    help="also time whole processes of the command and of (c) on N images, for each N")
    ap.add_argument("--runtimes", action="store_true", help="also time the networks alone per runtime (CPU)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--baseline", type=Path, help="only run (c) on this folder and print its rate as JSON")
    ap.add_argument("--baseline-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline:
        rate = baseline(args.baseline, args.weights_dir, args.baseline_out, args.device, args.keep_background)
        print(json.dumps({"images_per_s": rate}))
        return
    configure_process()  # the process settings the command uses, so (a), (b) and (c) compare fairly

    work = Path(tempfile.mkdtemp(prefix="animeface-bench-"))
    os.environ.setdefault("ANIMEFACE_SEG_CACHE", str(work / "cache"))  # the stand-ins' exports stay out of ~/.cache
    weights = args.weights_dir or stand_in_weights(work / "weights")
    device = select_device(args.device)
    settings = RunSettings.decide(OutputSpec(work, select()), device.type, batch_size=args.batch_size,
                                  workers=args.workers)
    batch_size, workers = settings.batch_size, settings.workers
    extra = ["--batch-size", str(batch_size), "--workers", str(workers)]
    extra += ["--keep-background"] if args.keep_background else []
    figures: dict = {
        "device": describe(device, select_dtype(device, args.precision)), "n": None if args.rss_only else args.n, "batch_size": batch_size, "workers": workers,
        "keep_background": args.keep_background, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "command": " ".join(sys.argv), "repeat": args.repeat,
        "memory_format": str(memory_format(device, select_dtype(device, args.precision))),
        "load_average_before": os.getloadavg(),
    }
    if not args.rss_only:
        paths = make_images(work / "images", args.n)
        # The processes run first, while this process is still small and idle, alternating.
        # One untimed run first: it makes the ONNX export (once per weights), as a user's first run does.
        figures["b_first_run_wall_s"] = end_to_end(work / "images", weights, args, extra)["wall_s"]
        runs_b, runs_c = [], []
        for _ in range(args.repeat):
            runs_b.append(end_to_end(work / "images", weights, args, extra))
            runs_c.append(baseline_process(work / "images", weights, args))
        median = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
        figures["b_end_to_end_images_per_s"] = median(runs_b, "images_per_s")
        figures["b_wall_s_including_startup"] = median(runs_b, "wall_s")
        figures["b_peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs_b)
        figures["c_baseline_images_per_s"] = median(runs_c, "images_per_s")
        figures["c_wall_s_including_startup"] = median(runs_c, "wall_s")
        figures["runs"] = {"b_images_per_s": [r["images_per_s"] for r in runs_b],
                           "b_wall_s": [r["wall_s"] for r in runs_b],
                           "c_images_per_s": [r["images_per_s"] for r in runs_c],
                           "c_wall_s": [r["wall_s"] for r in runs_c]}
        seg = Segmentor.from_pretrained(weights_dir=weights, device=args.device, precision=args.precision,
                                        remove_background=not args.keep_background)
        figures["a_networks_images_per_s"] = networks_alone(seg, paths, batch_size)
        del seg
        figures["b_over_a"] = figures["b_end_to_end_images_per_s"] / figures["a_networks_images_per_s"]
        figures["b_over_c"] = figures["b_end_to_end_images_per_s"] / figures["c_baseline_images_per_s"]
        figures["b_over_c_whole_process"] = figures["c_wall_s_including_startup"] / figures["b_wall_s_including_startup"]
    if args.whole_process:
        figures["whole_process"] = whole_processes(make_images(work / "whole", max(args.whole_process)), work,
                                                   weights, args, extra)
    if args.runtimes:
        figures["networks_512x704_s"] = networks_per_runtime(weights, args.repeat, args.keep_background)
    figures["load_average_after"] = os.getloadavg()
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
        ("    first run (exports the networks once)", "b_first_run_wall_s", "s"),
        ("(c) plain script baseline", "c_baseline_images_per_s", "img/s"),
        ("    wall time incl. start-up", "c_wall_s_including_startup", "s"),
        ("(b)/(a)", "b_over_a", ""),
        ("(b)/(c), rates", "b_over_c", ""),
        ("(b)/(c), whole processes (c wall / b wall)", "b_over_c_whole_process", ""),
    ] + [(f"peak RSS, N={k[len('peak_rss_mb_n'):]}", k, "MB") for k in figures if k.startswith("peak_rss_mb_n")]
    for label, key, unit in rows:
        if key in figures:
            print(f"  {label:<46} {figures[key]:>9.3f} {unit}")
    for n, whole in figures.get("whole_process", {}).items():
        print(f"  whole process, {n:>3} image(s): command {whole['command_wall_s']:7.2f} s, "
              f"script {whole['script_wall_s']:7.2f} s, {whole['speed_up']:.2f}x")
    for name, t in figures.get("networks_512x704_s", {}).items():
        print(f"  networks alone 512x704, {name:<17} best {t['best_s']:.3f} s, median {t['median_s']:.3f} s")
    print(f"  load average before {figures['load_average_before']}, after {figures['load_average_after']}")


if __name__ == "__main__":
    main()
