"""The ``--json`` record schema (``animeface_seg/schemas/record.schema.json``) against real records.

Every record kind the local command writes is produced by a real in-process run and checked
against the shipped schema; watch-mode records are checked in ``test_watch.py`` through the same
helper. The schema is also shown to reject records that break the README's contract, so a
schema that accepts anything would fail here.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from conftest import make_image
from record_schema import assert_valid, records, validator


def _by_name(stdout: str) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in records(stdout)}


def test_ok_same_file_and_failed_records_match_the_schema(run_cli, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "a.png", (100, 60))
    (src / "link.png").symlink_to(src / "a.png")
    (src / "broken.png").write_bytes(b"not an image")
    proc = run_cli(str(src), "-o", str(out), "--json", "--cutout", "--overlay")
    assert proc.returncode == 1, proc.stderr
    got = _by_name(proc.stdout)
    assert [got[n]["status"] for n in ("a.png", "link.png", "broken.png")] == ["ok", "skipped", "error"]
    assert set(got["a.png"]["outputs"]) == {"map", "mask", "cutout", "overlay"}
    assert got["link.png"]["reason"].startswith("same file as") and got["link.png"]["outputs"] == {}


def test_keep_background_and_already_done_records_match_the_schema(run_cli, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "a.png", (64, 48))
    first = run_cli(str(src), "-o", str(out), "--json", "--keep-background")
    assert first.returncode == 0, first.stderr
    ok = _by_name(first.stdout)["a.png"]
    assert ok["mask_coverage"] is None and set(ok["outputs"]) == {"map"}
    again = run_cli(str(src), "-o", str(out), "--json", "--keep-background", "--skip-existing")
    assert again.returncode == 0, again.stderr
    skipped = _by_name(again.stdout)["a.png"]
    assert (skipped["status"], skipped["reason"], skipped["outputs"]) == ("skipped", "already done", ok["outputs"])
    redone = run_cli(str(src), "-o", str(out), "--json", "--keep-background", "--skip-existing", "--size", "processed")
    assert redone.returncode == 0, redone.stderr
    record = _by_name(redone.stdout)["a.png"]
    assert record["status"] == "ok" and "other settings" in record["reason"]


GOOD = {"input": "in/a.png", "status": "ok", "outputs": {"map": "out/a.png", "mask": "out/a_mask.png"},
        "error": None, "reason": None, "original_size": {"width": 800, "height": 600},
        "processed_size": {"width": 683, "height": 512},
        "class_fractions": {"background": 0.41, "hair": 0.22, "eye": 0.01, "mouth": 0.0, "face": 0.09,
                            "skin": 0.05, "clothes": 0.22},
        "mask_coverage": 0.57}


def _changed(path: tuple, value) -> dict:
    record = copy.deepcopy(GOOD)
    target = record
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return record


def test_the_readme_example_and_future_fields_are_valid():
    assert_valid(GOOD)
    assert_valid({**GOOD, "outputs": {**GOOD["outputs"], "hair": "out/a_hair.png", "clothes": "out/a_clothes.png"}})
    assert_valid({**GOOD, "frames": 24, "fps": 12.0, "duration": 2.0})
    assert_valid({**GOOD, "frames": 1, "fps": None, "duration": None})
    assert_valid({"input": "in/b.png", "status": "skipped", "outputs": {}, "error": None,
                  "reason": "same file as in/a.png", "original_size": None, "processed_size": None,
                  "class_fractions": None, "mask_coverage": None})


@pytest.mark.parametrize("path, value", [
    (("mask_coverage",), KeyError),              # every key is always there
    (("extra",), 1),                             # and no other
    (("status",), "done"),
    (("outputs", "depth"), "out/a_depth.png"),   # an output kind that does not exist
    (("outputs", "map"), None),
    (("original_size",), None),                  # an ok record has its sizes
    (("processed_size", "width"), 0),
    (("class_fractions", "eye"), 1.5),
    (("class_fractions", "hair"), KeyError),
    (("error",), "boom"),                        # an ok record has no error
    (("outputs",), {}),                          # and wrote something
    (("frames",), 0),
    (("fps",), "12"),
])
def test_records_breaking_the_contract_are_rejected(path, value):
    assert list(validator().iter_errors(_changed(path, value))), (path, value)


def test_skipped_and_error_records_keep_their_own_shape():
    skipped = {**GOOD, "status": "skipped", "reason": None, "original_size": None, "processed_size": None,
               "class_fractions": None, "mask_coverage": None}
    assert list(validator().iter_errors(skipped))  # a skip always says why
    error = {**GOOD, "status": "error", "error": "not a recognised image file", "original_size": None,
             "processed_size": None, "class_fractions": None, "mask_coverage": None}
    assert list(validator().iter_errors(error))  # an error record lists no outputs (nothing was written)
    assert_valid({**error, "outputs": {}})
