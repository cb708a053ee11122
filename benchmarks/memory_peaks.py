#!/usr/bin/env python3
"""Peak memory of the whole command against ``engine/memory.py``'s estimate, per output combination and batch size.

Each case runs the installed command as its own process on generated images with ``--memory-budget 0``
and reads that process's peak RSS (``getrusage(RUSAGE_CHILDREN)`` in a small launcher, so the
figure is the command's alone); the baseline is the same command on one 64x64 image. The growth
over the baseline is compared with the estimate of the largest image (times the batch for the
network step), which must cover it.

    python benchmarks/memory_peaks.py --weights-dir WEIGHTS [--sizes 6000x6000 2000x12000] [--json FILE]

Linux only (peak RSS in kilobytes from getrusage).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(code)")

COMBOS = {
    "map+mask": [],
    "keep-background": ["--keep-background"],
    "processed": ["--size", "processed"],
    "cutout+overlay": ["--cutout", "--overlay"],
    "all classes": ["--class-masks", "all"],
}


def _image(path: Path, width: int, height: int) -> Path:
    """A smooth RGB picture (decodes like a real one; cheap to make at any size)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                    np.full((height, width), 128, np.float32)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path, compress_level=1)
    return path


def _peak(command: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return int(out.stdout.strip().splitlines()[-1])


def _command(src: Path, out: Path, weights_dir: str, extra: list[str]) -> list[str]:
    script = Path(sys.executable).with_name("animeface-seg")
    return [str(script), str(src), "-o", str(out), "--weights-dir", weights_dir, "--device", "cpu",
            "--memory-budget", "0", "--quiet", *extra]


def main() -> None:
    from animeface_seg.batch.kinds import memory_terms, select
    from animeface_seg.engine import memory

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--sizes", nargs="+", default=["6000x6000", "2000x12000"])
    parser.add_argument("--combos", nargs="+", default=list(COMBOS), choices=list(COMBOS), metavar="COMBO",
                        help=f"output combinations to measure (default all: {', '.join(COMBOS)})")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8], help="batch sizes for 8 images of 512x768")
    parser.add_argument("--json", type=Path, help="save the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "base").mkdir()
        _image(root / "base" / "b.png", 64, 64)
        baseline = _peak(_command(root / "base", root / "out-base", args.weights_dir, []))
        print(f"baseline (64x64): {baseline / 2**30:.2f} GB", flush=True)
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            folder = root / size
            folder.mkdir()
            _image(folder / "big.png", width, height)
            for name in args.combos:
                extra = COMBOS[name]
                peak = _peak(_command(folder, root / f"out-{size}-{len(rows)}", args.weights_dir, extra))
                kinds = select(("background", "hair", "eye", "mouth", "face", "skin", "clothes")
                               if "--class-masks" in extra else (), remove_background="--keep-background" not in extra,
                               cutout="--cutout" in extra, overlay="--overlay" in extra)
                need = memory.estimate(width, height, "RGB", remove_background="--keep-background" not in extra,
                                       output_size="processed" if "processed" in extra else "original",
                                       **memory_terms(kinds))
                rows.append({"case": f"{size} {name}", "growth_bytes": peak - baseline, "estimate_bytes": need.host,
                             "stages": need.stages})
                print(f"{size:>10} {name:16s} growth {(peak - baseline) / 2**30:5.2f} GB, "
                      f"estimate {need.host / 2**30:5.2f} GB", flush=True)
        batch_folder = root / "batch"
        batch_folder.mkdir()
        for i in range(8):
            _image(batch_folder / f"i{i}.png", 768, 512)
        for batch in args.batches:
            peak = _peak(_command(batch_folder, root / f"out-batch-{batch}", args.weights_dir,
                                  ["--batch-size", str(batch)]))
            need = memory.network_bytes((512, 768)) * batch
            rows.append({"case": f"8x 768x512, batch {batch}", "growth_bytes": peak - baseline,
                         "estimate_bytes": need})
            print(f"batch {batch}: growth {(peak - baseline) / 2**30:5.2f} GB, network estimate "
                  f"{need / 2**30:5.2f} GB", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
