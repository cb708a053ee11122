#!/usr/bin/env python3
"""Both networks on one 512x704 input, in each inference variant, timed in alternation.

Variants: batch norm unfolded/folded x contiguous/channels-last memory format in fp32, and
bf16 autocast (folded, channels-last); each is compared with eager fp32 (class-map agreement,
largest mask difference in 1/255). Rounds alternate between variants so a noisy machine
affects all alike; medians of wall time and of the process's CPU time (all threads; less
sensitive to other processes on a shared machine) are reported. ``--compile`` instead times ``torch.compile``'s
first compile and a second process's start with the compile cache warm.

    python benchmarks/cpu_variants.py --rounds 5
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/cpu_variants.py   # AVX2 code paths
    python benchmarks/cpu_variants.py --compile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from animeface_seg.engine.optimize import fold_batchnorm
from animeface_seg.engine.weights import ABG, UNET, load

SHAPE = (1, 3, 512, 704)
REPO = Path(__file__).resolve().parents[1]


def networks(weights: Path, folded: bool, memory_format: torch.memory_format) -> tuple[torch.nn.Module, ...]:
    nets = [load(spec, weights / spec.filename) for spec in (ABG, UNET)]
    if folded:
        nets = [fold_batchnorm(n, inplace=True) for n in nets]
    return tuple(n.to(memory_format=memory_format) for n in nets)


@torch.inference_mode()
def run(nets, rgb: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The Segmentor's forward pass: mask, composite over white, UNet, argmax."""
    isnet, unet = nets
    context = torch.autocast("cpu", dtype=dtype) if dtype != torch.float32 else torch.autocast("cpu", enabled=False)
    with context:
        mask = isnet(rgb / 255.0).float()
        composite = (mask * rgb + 255.0 * (1.0 - mask)).trunc_()
        logits = unet(composite / 255.0)
    return logits.argmax(1), mask[:, 0]


def input_image() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(SHAPE[2]), torch.arange(SHAPE[3]), indexing="ij")
    figure = ((xx - 352) ** 2 / 176**2 + (yy - 256) ** 2 / 170**2) < 1
    rgb = torch.stack([xx * 255 / SHAPE[3], yy * 255 / SHAPE[2], torch.full_like(xx, 90.0)])
    rgb[:, figure] = torch.tensor([250.0, 220.0, 200.0])[:, None]
    rgb = (rgb + torch.randint(-25, 25, rgb.shape, generator=generator)).clamp(0, 255).round()
    return rgb[None]


def variants(weights: Path, rounds: int) -> dict:
    rgb = input_image()
    cl, cf = torch.channels_last, torch.contiguous_format
    specs = {
        "unfolded, contiguous": (False, cf, torch.float32),
        "unfolded, channels-last": (False, cl, torch.float32),
        "folded, contiguous": (True, cf, torch.float32),
        "folded, channels-last": (True, cl, torch.float32),
        "bf16 autocast, folded, channels-last": (True, cl, torch.bfloat16),
    }
    built = {name: (networks(weights, f, m), m, d) for name, (f, m, d) in specs.items()}
    reference = run(built["unfolded, contiguous"][0], rgb, torch.float32)
    times: dict[str, list[float]] = {name: [] for name in specs}
    cpu: dict[str, list[float]] = {name: [] for name in specs}
    for name, (nets, fmt, dtype) in built.items():  # warm-up, and agreement with eager fp32
        classes, mask = run(nets, rgb.contiguous(memory_format=fmt), dtype)
        times[name] = []
        built[name] = (nets, fmt, dtype, float((classes == reference[0]).float().mean()),
                       float((mask - reference[1]).abs().max() * 255))
    for _ in range(rounds):
        for name, (nets, fmt, dtype, _, _) in built.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run(nets, rgb.contiguous(memory_format=fmt), dtype)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: {"median_s": statistics.median(times[name]), "all_s": [round(t, 3) for t in times[name]],
                   "median_cpu_s": statistics.median(cpu[name]),
                   "map_agreement": built[name][3], "mask_max_diff_255": built[name][4]} for name in specs}


def compile_once(weights: Path) -> dict:
    """One process: compile both (folded, channels-last) networks and time the first call."""
    nets = networks(weights, True, torch.channels_last)
    compiled = tuple(torch.compile(n) for n in nets)
    rgb = input_image().contiguous(memory_format=torch.channels_last)
    start = time.perf_counter()
    run(compiled, rgb, torch.float32)
    first = time.perf_counter() - start
    steady = []
    for _ in range(3):
        start = time.perf_counter()
        run(compiled, rgb, torch.float32)
        steady.append(time.perf_counter() - start)
    return {"first_call_s": first, "steady_s": statistics.median(steady)}


def compile_twice(weights: Path) -> dict:
    """Two fresh processes sharing one empty compile cache: the second shows what the cache saves."""
    cache = tempfile.mkdtemp(prefix="inductor-cache-")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
    out = {}
    for label in ("first_process", "second_process"):
        proc = subprocess.run([sys.executable, __file__, "--weights-dir", str(weights), "--compile-once"],
                              capture_output=True, text=True, env=env, check=True)
        out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-dir", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="time torch.compile, cold and with a warm cache")
    ap.add_argument("--compile-once", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.compile_once:
        print(json.dumps(compile_once(args.weights_dir)))
        return
    figures = {"torch": torch.__version__, "threads": torch.get_num_threads(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "onednn_isa_limit": os.environ.get("ONEDNN_MAX_CPU_ISA", "none"), "input": list(SHAPE)}
    if args.compile:
        figures["compile"] = compile_twice(args.weights_dir)
    else:
        figures["variants"] = variants(args.weights_dir, args.rounds)
    text = json.dumps(figures, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
