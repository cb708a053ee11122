"""A new input kind is one module plus one registry line: a toy kind (a still read from a NumPy ``.npy``
array) registered through ``batch.inputs.KINDS`` runs through the real command like any picture."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest

from animeface_seg.batch import inputs
from animeface_seg.batch.inputs import Header, StillKind
from conftest import make_image, read_gray, read_rgb


@dataclass(frozen=True)
class ArrayKind(StillKind):
    """The toy kind's whole module: an H x W x 3 uint8 array saved by ``numpy.save``, known by its magic bytes."""

    name: str = "array"
    extensions = frozenset({".npy"})

    def recognises(self, header: Header) -> bool:
        return header.head.startswith(b"\x93NUMPY")

    def read(self, source: Path | BinaryIO, stages: object) -> np.ndarray:
        return np.load(source)


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def pictures(tmp_path: Path) -> tuple[Path, Path]:
    """The same pixels as a PNG and as a ``.npy`` array."""
    png = make_image(tmp_path / "in" / "picture.png", (48, 40), seed=3)
    array = tmp_path / "in" / "array.npy"
    np.save(array, read_rgb(png))
    return png, array


def test_an_unregistered_kind_fails_its_header_check(run_cli, pictures, tmp_path):
    proc = run_cli(str(pictures[1]), "-o", str(tmp_path / "out"), "--json")
    assert proc.returncode == 2
    assert [record["error"] for record in _records(proc.stdout)] == ["not a recognised image or video file"]


def test_a_registered_kind_runs_through_the_command_like_a_picture(run_cli, pictures, tmp_path, monkeypatch):
    monkeypatch.setitem(inputs.KINDS, ArrayKind.name, ArrayKind())  # the one registry line
    png, array = pictures
    out = tmp_path / "out"
    proc = run_cli(str(png.parent), "-o", str(out), "--json")  # the folder walk takes .npy files now
    assert proc.returncode == 0, proc.stderr
    size = {"width": 48, "height": 40}
    assert sorted((Path(record["input"]).name, record["status"], record["original_size"])
                  for record in _records(proc.stdout)) == [("array.npy", "ok", size), ("picture.png", "ok", size)]
    assert np.array_equal(read_rgb(out / "array.png"), read_rgb(out / "picture.png"))
    assert np.array_equal(read_gray(out / "array_mask.png"), read_gray(out / "picture_mask.png"))
    again = run_cli(str(array), "-o", str(out), "--json", "--skip-existing")
    assert [record["status"] for record in _records(again.stdout)] == ["skipped"]
