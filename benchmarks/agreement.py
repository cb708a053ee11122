#!/usr/bin/env python3
"""Each runtime's agreement with the reference's golden outputs, picture by picture.

For every installed runtime (fp32, CPU) and every golden case (``shared/reference/golden``, made by the
original with the stand-in weights of seed 0), with and without background removal:

- *end to end*: from ``input.png`` through the project's own decode and resize, as a user runs it
  (``--size processed``, the size the original returns);
- *stage*: fed the reference's own ``resized.png``, so only the networks and what follows them count.

It prints the share of map pixels equal to ``map.png`` / ``map_keep.png``, the mask's largest and mean
difference from ``abg_mask.png`` in levels, how many values of the network input differ from
``resized.png``, and each runtime's lowest picture.

    python benchmarks/agreement.py --weights-dir WEIGHTS [--reference shared/reference] [--json FILE]

``WEIGHTS``: ``python shared/reference/make_checkpoints.py WEIGHTS --seed 0``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

CASES = ("tall", "wide", "square", "rgba", "small", "gray")
RUNTIMES = ("reference", "torch", "onnxruntime", "openvino")
REPO = Path(__file__).resolve().parents[1]


def _read(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image.convert(mode))


def _segmentor(runtime: str, weights_dir: Path, remove_background: bool):
    from animeface_seg import Segmentor

    return Segmentor.from_pretrained(weights_dir=weights_dir, device="cpu", precision="fp32",
                                     output_size="processed", runtime=runtime,
                                     remove_background=remove_background)


def _prepared(segmentor, case_dir: Path, stage: bool):
    """The network input: the reference's ``resized.png`` (stage), else the project's from ``input.png``."""
    from animeface_seg.engine.decode import load_rgb
    from animeface_seg.engine.segmentor import Prepared
    from animeface_seg.engine.sides import HostSide

    if not stage:
        return segmentor.prepare(load_rgb(case_dir / "input.png"))
    resized = _read(case_dir / "resized.png", "RGB")
    size = _read(case_dir / "abg_mask.png", "L").shape
    pixels = np.ascontiguousarray(resized.transpose(2, 0, 1))
    if not isinstance(segmentor.side, HostSide):  # a runtime on the device side takes tensors
        import torch

        pixels = torch.from_numpy(pixels)
    return Prepared(pixels, size, size)


def measure(segmentor, case_dir: Path, stage: bool) -> dict:
    """One picture's figures: map agreement, mask differences, input values unlike ``resized.png``."""
    prepared = _prepared(segmentor, case_dir, stage)
    pixels = prepared.pixels if isinstance(prepared.pixels, np.ndarray) else prepared.pixels.cpu().numpy()
    input_differs = int((pixels.transpose(1, 2, 0) != _read(case_dir / "resized.png", "RGB")).sum())
    result = segmentor.run([prepared])[0]
    golden_map = _read(case_dir / ("map.png" if segmentor.remove_background else "map_keep.png"), "RGB")
    row = {"map_agreement": float((result.colors == golden_map).all(axis=-1).mean()),
           "input_values_differing": input_differs}
    if segmentor.remove_background:
        diff = np.abs(result.mask.astype(int) - _read(case_dir / "abg_mask.png", "L"))
        row.update(mask_max_diff=int(diff.max()), mask_mean_diff=round(float(diff.mean()), 4))
    return row


def run(runtimes: list[str], weights_dir: Path, reference: Path) -> list[dict]:
    """Every runtime, mode, path and case: one record each."""
    from animeface_seg.engine.errors import EngineError

    records = []
    for runtime in runtimes:
        for remove_background in (True, False):
            try:
                segmentor = _segmentor(runtime, weights_dir, remove_background)
            except EngineError as exc:  # not installed here: say so and go on
                print(f"{runtime}: skipped ({exc})")
                break
            for stage in (False, True):
                for case in CASES:
                    row = measure(segmentor, reference / "golden" / case, stage)
                    records.append({"runtime": runtime, "background": "removed" if remove_background else "kept",
                                    "path": "stage" if stage else "end to end", "case": case, **row})
    return records


def table(records: list[dict]) -> str:
    """A Markdown table: per runtime, background and path, each case's map agreement and the lowest."""
    lines = ["| runtime | background | path | " + " | ".join(CASES) + " | lowest | mask max / mean diff |",
             "| --- " * (len(CASES) + 5) + "|"]
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault((record["runtime"], record["background"], record["path"]), []).append(record)
    for (runtime, background, path), rows in groups.items():
        lowest = min(rows, key=lambda r: r["map_agreement"])
        mask = (f"{max(r['mask_max_diff'] for r in rows)} / {max(r['mask_mean_diff'] for r in rows):.4f}"
                if "mask_max_diff" in rows[0] else "")
        cells = " | ".join(f"{r['map_agreement']:.2%}" for r in rows)
        lines.append(f"| {runtime} | {background} | {path} | {cells} | {lowest['map_agreement']:.2%} "
                     f"({lowest['case']}) | {mask} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", type=Path, required=True)
    parser.add_argument("--reference", type=Path, default=REPO.parent / "shared" / "reference")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--json", type=Path, help="save every record here")
    args = parser.parse_args()
    records = run(args.runtimes, args.weights_dir, args.reference)
    print(table(records))
    inputs = {(r["runtime"], r["case"]): r["input_values_differing"] for r in records if r["path"] == "end to end"}
    print("network input values unlike resized.png, end to end: "
          + "; ".join(f"{runtime} {case} {n}" for (runtime, case), n in inputs.items()))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
