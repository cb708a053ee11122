#!/usr/bin/env python3
"""Peak memory of each network per padded input pixel, the constants of ``engine/memory.py``.

Each measurement runs in a fresh process with the command's own process settings: build the
network, run it once on a small input (one-time allocations out of the way), note the resident
size, reset the peak (``/proc/self/clear_refs``), run it on a zero (1, 3, H, W) input and read
the new peak (``VmHWM``). Growth divided by H x W is the figure per padded pixel.

    python benchmarks/memory_per_pixel.py --weights-dir WEIGHTS [--sizes 512x512 512x1024 1024x1024]

Linux only (reads /proc/self/status).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(network: str, height: int, width: int, weights_dir: str) -> None:
    """Measure one network at one size in this process and print a JSON line."""
    import torch

    from animeface_seg.cli.process_setup import configure_process
    from animeface_seg.engine.weights import ABG, UNET, load, resolve

    configure_process()
    spec = UNET if network == "unet" else ABG
    model = load(spec, resolve(spec, None, weights_dir))
    with torch.inference_mode():
        model(torch.zeros(1, 3, 64, 64))
        x = torch.zeros(1, 3, height, width)
        before = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
        model(x)
        peak = _status_kb("VmHWM")
    growth = (peak - before) * 1024
    print(json.dumps({"network": network, "height": height, "width": width, "growth_bytes": growth,
                      "bytes_per_pixel": round(growth / (height * width), 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--sizes", nargs="+", default=["512x512", "512x1024", "1024x1024"])
    parser.add_argument("--json", type=Path, help="save the figures here")
    parser.add_argument("--child", nargs=3, metavar=("NETWORK", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), args.weights_dir)
        return
    rows = []
    for network in ("unet", "isnet"):
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            out = subprocess.run([sys.executable, __file__, "--weights-dir", args.weights_dir,
                                  "--child", network, str(h), str(w)], check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{network:6s} {h}x{w}: +{rows[-1]['growth_bytes'] / 2**20:.0f} MiB, "
                  f"{rows[-1]['bytes_per_pixel']} B per padded pixel", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
