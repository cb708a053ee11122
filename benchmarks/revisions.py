#!/usr/bin/env python3
"""Whole-process time of the command at two checkouts of this repository, side by side in one run.

A change must not make the command slower: this runs ``python -m animeface_seg FOLDER -o OUT`` from
checkout A and from checkout B alternately (A, B, A, B, ...) on the same folders of 1 and 8 pictures
(``throughput.make_images``), with the same stand-in weights and export cache, each once untimed first
(so each checkout's ONNX export is cached, as from a user's second run on), and reports the median of
``--repeat`` runs of each and the ratio B/A. The load average is recorded before and after.

    python benchmarks/revisions.py /path/to/old-checkout /path/to/new-checkout --repeat 7 --json docs/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_images, stand_in_weights  # noqa: E402


def timed_run(checkout: Path, folder: Path, out: Path, weights: Path, env: dict[str, str]) -> float:
    """Seconds one whole process of the command at ``checkout`` takes on ``folder`` (a fresh OUT)."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "animeface_seg", str(folder), "-o", str(out), "--weights-dir", str(weights),
               "--quiet", "--device", "cpu"]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**env, "PYTHONPATH": str(checkout)}, cwd=checkout,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="the checkout to compare against (e.g. the previous main)")
    ap.add_argument("b", type=Path, help="the checkout under test")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8], help="pictures per folder (default 1 8)")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs of each checkout per folder")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = stand_in_weights(root / "weights")
        env = {**os.environ, "ANIMEFACE_SEG_CACHE": str(root / "cache")}
        figures: dict[str, object] = {"load_before": os.getloadavg(), "a": str(args.a), "b": str(args.b)}
        for n in args.sizes:
            folder = root / f"in{n}"
            make_images(folder, n)
            times: dict[str, list[float]] = {"a": [], "b": []}
            for name in times:  # untimed: each checkout's export cached
                timed_run(getattr(args, name), folder, root / "out", weights, env)
            for _ in range(args.repeat):
                for name in times:
                    times[name].append(timed_run(getattr(args, name), folder, root / "out", weights, env))
            a, b = statistics.median(times["a"]), statistics.median(times["b"])
            figures[f"n{n}"] = {"a_s": times["a"], "b_s": times["b"], "a_median": a, "b_median": b, "b_over_a": b / a}
            print(f"{n:>3} picture(s): A {a:.3f} s, B {b:.3f} s (median of {args.repeat}), B/A {b / a:.3f}")
        figures["load_after"] = os.getloadavg()
        print(f"load average before {figures['load_before']}, after {figures['load_after']}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
