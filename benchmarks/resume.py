#!/usr/bin/env python3
"""What verifying outputs costs a ``--skip-existing`` resume: COUNT inputs whose outputs are all done.

Runs the command once on one picture, copies its real outputs (map and mask, each with the run's
record) to COUNT inputs' names, then measures, on those same files (page cache warm):
  (c) the per-input check alone: ``signature.stale_reason`` as it is now (every output walked to
      its IEND, ``pngcheck``) against the check before it (the first 64 KiB read, the record taken
      by Pillow), ROUNDS alternating rounds each, median microseconds per input;
  (p) the whole process: ``animeface-seg IN -o OUT --skip-existing --quiet``, start-up included,
      RUNS times (every input must come back skipped); with ``--baseline TREE`` (the package as it
      was, e.g. ``git archive 024d330 animeface_seg | tar -x -C /tmp/before``) alternately with that
      tree's code on the same files;
  (l) both checks on one large output (``--large WxH``: noise written by the command's PNG writer
      with a record, the size of a big cutout), ROUNDS alternating rounds of 300 checks each.

    git archive 024d330 animeface_seg | tar -x -C /tmp/before
    python benchmarks/resume.py --baseline /tmp/before --json docs/resume-cpu.json
    python benchmarks/resume.py --count 500 --runs 1       # a quick look

Without --weights-dir it uses seeded stand-in weights from shared/reference. Record the
machine's load (``uptime``) beside any figure; the load average is printed and stored.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from animeface_seg.batch.signature import KEY, Signature, stale_reason
from animeface_seg.batch.store import LOCAL
from animeface_seg.batch.writers import encode_png
from throughput import stand_in_weights


def header_only_reason(outputs: dict[str, Path], expected: Signature) -> str | None:
    """The check before outputs were verified whole: existence, then the record in the first 64 KiB."""
    for path in outputs.values():
        if not LOCAL.is_file(path):
            return f"{path.name} is missing"
    wanted = json.loads(expected.to_text())
    for path in outputs.values():
        with open(path, "rb") as stream:
            head = stream.read(64 * 1024)
        with Image.open(io.BytesIO(head)) as image:
            found = json.loads(image.info.get(KEY, "null"))
        if found != wanted:
            return f"{path.name} differs"
    return None


def prepare(root: Path, count: int, weights: Path) -> tuple[Path, Path, Signature]:
    """COUNT inputs and their finished outputs under ``root``; the input and output folders and the record."""
    src, out, first = root / "in", root / "out", root / "first"
    first.mkdir()
    y, x = np.mgrid[0:192, 0:256]
    disc = (x - 128) ** 2 + (y - 96) ** 2 < 60 ** 2
    picture = np.where(disc[..., None], [240, 210, 190], np.stack([x, y, x // 2 + 60], -1)).astype(np.uint8)
    Image.fromarray(picture).save(first / "p.png")
    command = [sys.executable, "-m", "animeface_seg", str(first), "-o", str(root / "made"), "--weights-dir",
               str(weights), "--device", "cpu", "--quiet"]
    subprocess.run(command, check=True)
    src.mkdir()
    out.mkdir()
    for i in range(count):
        os.link(first / "p.png", src / f"p{i:05d}.png")
        shutil.copyfile(root / "made" / "p.png", out / f"p{i:05d}.png")
        shutil.copyfile(root / "made" / "p_mask.png", out / f"p{i:05d}_mask.png")
    with Image.open(root / "made" / "p.png") as image:
        record = json.loads(image.info[KEY])
    return src, out, Signature(**record)


def check_rates(out: Path, count: int, expected: Signature, rounds: int) -> dict[str, float]:
    """Median microseconds per input of the new and the old check, alternating rounds over all inputs."""
    sets = [{"map": out / f"p{i:05d}.png", "mask": out / f"p{i:05d}_mask.png"} for i in range(count)]
    times: dict[str, list[float]] = {"whole": [], "header": []}
    for _ in range(rounds):
        for name, check in (("whole", stale_reason), ("header", header_only_reason)):
            start = time.perf_counter()
            reasons = [check(outputs, expected) for outputs in sets]
            times[name].append((time.perf_counter() - start) / count * 1e6)
            assert reasons == [None] * count, f"{name}: {next(r for r in reasons if r)}"
    return {name: statistics.median(values) for name, values in times.items()}


def large_output(root: Path, size: str, expected: Signature, rounds: int) -> dict[str, float]:
    """Median microseconds of each check on one noisy output of ``size`` (``WxH``), and its bytes."""
    width, height = map(int, size.split("x"))
    path = root / "large.png"
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    with open(path, "wb") as stream:
        encode_png(Image.fromarray(pixels), stream, expected.png_info())
    times: dict[str, list[float]] = {"whole": [], "header": []}
    for _ in range(rounds):
        for name, check in (("whole", stale_reason), ("header", header_only_reason)):
            start = time.perf_counter()
            for _ in range(300):
                assert check({"map": path}, expected) is None
            times[name].append((time.perf_counter() - start) / 300 * 1e6)
    return {"bytes": path.stat().st_size, **{name: statistics.median(values) for name, values in times.items()}}


def whole_process(src: Path, out: Path, weights: Path, runs: int, baseline: Path | None) -> dict[str, list[float]]:
    """Seconds of each whole ``--skip-existing`` run, this code's and (alternately) ``baseline``'s; every input
    must be skipped."""
    command = [sys.executable, "-m", "animeface_seg", str(src), "-o", str(out), "--skip-existing", "--json",
               "--weights-dir", str(weights), "--device", "cpu", "--quiet"]
    trees = {"now": Path(__file__).resolve().parent.parent, **({"baseline": baseline} if baseline else {})}
    seconds: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(runs):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            seconds[name].append(time.perf_counter() - start)
            statuses = {json.loads(line)["status"] for line in done.stdout.splitlines()}
            assert statuses == {"skipped"}, (name, statuses)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--weights-dir", type=Path)
    parser.add_argument("--large", default="1600x1200", help="the large output's size, WxH")
    parser.add_argument("--baseline", type=Path, help="a tree holding the package as it was, run alternately")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="afs-resume-") as tmp:
        root = Path(tmp)
        weights = args.weights_dir or stand_in_weights(root / "weights")
        src, out, expected = prepare(root, args.count, weights)
        load_before = os.getloadavg()
        checks = check_rates(out, args.count, expected, args.rounds)
        runs = whole_process(src, out, weights, args.runs, args.baseline)
        large = large_output(root, args.large, expected, args.rounds)
        figures = {"count": args.count, "outputs_per_input": 2, "output_bytes": (out / "p00000.png").stat().st_size,
                   "check_us_per_input": checks, "check_added_us_per_input": checks["whole"] - checks["header"],
                   "whole_process_s": runs, "large_output_us": large, "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    added = figures["check_added_us_per_input"] * args.count / 1e6
    print(f"check per input: whole {checks['whole']:.1f} us, header-only {checks['header']:.1f} us "
          f"(added {figures['check_added_us_per_input']:+.1f} us, {added:+.2f} s over {args.count} inputs)")
    for name, seconds in runs.items():
        print(f"whole process ({name}), {args.count} inputs skipped: " + ", ".join(f"{s:.2f} s" for s in seconds)
              + f", median {statistics.median(seconds):.2f} s")
    print(f"added check {100 * added / statistics.median(runs['now']):+.1f} % of this code's median")
    print(f"one {args.large} output ({large['bytes']} bytes): whole {large['whole']:.1f} us, "
          f"header-only {large['header']:.1f} us")
    print(f"load average before {load_before}, after {figures['loadavg_after']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
