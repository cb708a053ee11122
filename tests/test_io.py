"""Input discovery and output naming, on real files in a temporary folder (the plan reads headers, never pixels)."""

from __future__ import annotations

import io
import os
import sys
import unicodedata
from pathlib import Path, PurePath

import pytest
from PIL import Image

from animeface_seg.batch.discovery import (
    InputError,
    Job,
    discover,
    read_path_list,
)
from animeface_seg.batch.inputs.still import IMAGE_EXTENSIONS
from animeface_seg.batch.naming import Layout
from animeface_seg.batch.name_rule import NameRule
from animeface_seg.batch.plan import Plan, PlanError, check, make_plan
from animeface_seg.batch.spec import OutputSpec


def tiny_png() -> bytes:
    """A real 1 x 1 PNG: inputs pass the plan's header check by content, whatever their names."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    return buffer.getvalue()


def touch(root: Path, *names: str) -> None:
    """Create tiny images (and their folders) under ``root``."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tiny_png())


def relatives(jobs: list[Job]) -> list[str]:
    """The jobs' output locations as POSIX strings, in order."""
    return [job.relative.as_posix() for job in jobs]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """An empty input folder."""
    folder = tmp_path / "input"
    folder.mkdir()
    return folder


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output folder that does not exist yet."""
    return tmp_path / "out"


def test_nested_folder_is_mirrored_in_name_order(src: Path, out: Path) -> None:
    touch(src, "z.gif", "b.png", "a/c.jpg", "a/b/d.webp")
    jobs = discover([str(src)], out)
    assert relatives(jobs) == ["a/b/d", "a/c", "b", "z"]
    assert [job.source for job in jobs] == [src / "a/b/d.webp", src / "a/c.jpg", src / "b.png", src / "z.gif"]
    assert all(job.error is None for job in jobs)


def test_extensions_match_in_any_case(src: Path, out: Path) -> None:
    touch(src, "a.PNG", "b.JpEg", "c.TIFF", "d.bmp", "e.MP4", "f.Mov", "g.mkv", "h.WEBM", "i.avi")
    assert relatives(discover([str(src)], out)) == ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
    assert IMAGE_EXTENSIONS == {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def test_non_images_in_folders_are_ignored_but_explicit_files_are_taken(src: Path, out: Path) -> None:
    touch(src, "notes.txt", "layers.psd", "README", "c.png")
    assert relatives(discover([str(src)], out)) == ["c"]
    assert discover([str(src / "notes.txt")], out) == [Job(src / "notes.txt", PurePath("notes"))]


def test_hidden_files_and_folders_are_skipped(src: Path, out: Path) -> None:
    touch(src, ".hidden.png", ".cache/x.png", "visible/y.png", "z.png")
    assert relatives(discover([str(src)], out)) == ["visible/y", "z"]


def test_no_recursive_takes_only_the_top_level(src: Path, out: Path) -> None:
    touch(src, "a.png", "sub/b.png")
    assert relatives(discover([str(src)], out, recursive=False)) == ["a"]


def test_read_path_list_keeps_spaces_and_skips_blank_lines() -> None:
    stream = io.StringIO("a.png\r\n\n   \n b c.png \nゲーム 1.png")
    assert read_path_list(stream) == ["a.png", " b c.png ", "ゲーム 1.png"]


def test_read_path_list_reads_bytes_and_nul_separated_lists() -> None:
    raw = b"a b.png\0bad\xff.png\0new\nline.png\0\0"
    stream = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
    names = read_path_list(stream, null=True)
    assert names == ["a b.png", os.fsdecode(b"bad\xff.png"), "new\nline.png"]
    assert [os.fsencode(name) for name in names][1] == b"bad\xff.png"
    lines = io.TextIOWrapper(io.BytesIO(b"x\xfe.png\r\n\n"), encoding="utf-8")
    assert read_path_list(lines) == [os.fsdecode(b"x\xfe.png")]


def test_stdin_list_gives_flat_jobs(src: Path, out: Path) -> None:
    touch(src, "ゲーム 1.png", "sub/my pic.jpg")
    stdin = io.StringIO(f"{src / 'ゲーム 1.png'}\n\n{src / 'sub/my pic.jpg'}\n")
    assert discover(["-"], out, stdin=stdin) == [
        Job(src / "ゲーム 1.png", PurePath("ゲーム 1")),
        Job(src / "sub/my pic.jpg", PurePath("my pic")),
    ]


def test_stdin_folders_are_walked_and_dash_twice_reads_once(src: Path, tmp_path: Path, out: Path) -> None:
    touch(src, "a.png", "sub/b.png")
    touch(tmp_path, "single.jpg")
    stdin = io.StringIO(f"{src}\n")
    jobs = discover([str(tmp_path / "single.jpg"), "-", "-"], out, stdin=stdin)
    assert relatives(jobs) == ["single", "a", "sub/b"]
    assert jobs[2].source == src / "sub/b.png"


def test_outputs_inside_the_input_folder_are_not_taken_and_named_ones_are_refused(src: Path) -> None:
    out = src / "out"
    touch(src, "a.png", "out/a.png", "out/a_mask.png", "out/sub/b.png")
    assert relatives(discover([str(src)], out)) == ["a"]
    # Named explicitly, a file inside OUT is a job; the plan refuses it (outputs could replace it).
    assert relatives(discover([str(src / "a.png"), str(out / "a_mask.png")], out)) == ["a", "a_mask"]
    with pytest.raises(PlanError) as raised:
        make_plan([str(src / "a.png"), str(out / "a_mask.png")], OutputSpec(out, ("map",)))
    assert raised.value.conflicts == [
        f"{out / 'a_mask.png'} is inside the output folder {out}; outputs written there could replace it",
        f"{out / 'a_mask.png'}: the map of {out / 'a_mask.png'} would overwrite an input (the same file)",
    ]


def test_output_folder_given_another_way_is_still_recognised(src: Path) -> None:
    touch(src, "a.png", "out/a_mask.png")
    assert relatives(discover([str(src)], src / "sub" / ".." / "out")) == ["a"]


def test_symlinked_folder_and_file_are_followed(src: Path, tmp_path: Path, out: Path) -> None:
    touch(tmp_path, "elsewhere/e.png", "other/f.jpg")
    (src / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (src / "f.jpg").symlink_to(tmp_path / "other/f.jpg")
    jobs = discover([str(src)], out)
    assert jobs == [Job(src / "f.jpg", PurePath("f")), Job(src / "linked/e.png", PurePath("linked/e"))]


def test_symlink_loop_terminates_with_a_record_for_the_link(src: Path, out: Path) -> None:
    touch(src, "a.png", "sub/b.png")
    (src / "sub/up").symlink_to("..", target_is_directory=True)
    jobs = discover([str(src)], out)
    assert [(j.relative.as_posix(), j.skip_reason) for j in jobs] == [
        ("a", None), ("sub/b", None), ("sub/up", f"same folder as {src}")]
    # Starting below the loop: the parent is entered once through the link, then the loop stops.
    jobs = discover([str(src / "sub")], out)
    assert [(j.relative.as_posix(), j.skip_reason) for j in jobs] == [
        ("b", None), ("up/a", None), ("up/sub", f"same folder as {src / 'sub'}")]


def test_same_file_reached_twice_is_processed_once_and_recorded_each_time(src: Path, out: Path) -> None:
    touch(src, "a.png", "sub/b.png")
    (src / "alias.png").symlink_to(src / "a.png")
    args = [str(src / "sub/b.png"), str(src), str(src / "a.png"), str(src / "sub/../a.png")]
    jobs = discover(args, out)
    assert [(j.source, j.skip_reason) for j in jobs] == [
        (src / "sub/b.png", None),
        (src / "a.png", None),
        (src / "sub/b.png", f"same file as {src / 'sub/b.png'}"),
        (src / "a.png", f"same file as {src / 'a.png'}"),
        (src / "sub/../a.png", f"same file as {src / 'a.png'}"),
        (src / "alias.png", f"same file as {src / 'a.png'}"),
    ]


def test_links_never_take_the_place_of_what_they_point_to(src: Path, out: Path) -> None:
    touch(src, "z/p.png", "z.png")
    (src / "a").symlink_to("z", target_is_directory=True)  # sorts before its target
    (src / "b.png").symlink_to("z.png")
    jobs = discover([str(src)], out)
    assert [(j.relative.as_posix(), j.skip_reason) for j in jobs] == [
        ("z/p", None), ("z", None), ("a", f"same folder as {src / 'z'}"), ("b", f"same file as {src / 'z.png'}")]


def test_missing_file_becomes_a_job_with_an_error(src: Path, out: Path) -> None:
    touch(src, "a.png")
    jobs = discover([str(src / "a.png"), "nope/missing.jpg"], out)
    assert jobs[1] == Job(Path("nope/missing.jpg"), PurePath("missing"), "file not found")
    assert discover(["missing.png"], out) == [Job(Path("missing.png"), PurePath("missing"), "file not found")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_special_file_becomes_a_job_with_an_error(src: Path, out: Path) -> None:
    os.mkfifo(src / "pipe.png")
    assert discover([str(src / "pipe.png")], out) == [
        Job(src / "pipe.png", PurePath("pipe"), "not a regular file")
    ]


def test_unreadable_folder_becomes_a_job_with_an_error(
    src: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(src, "a.png", "locked/b.png")
    real_scandir = os.scandir

    def scandir(path: Path) -> object:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert discover([str(src)], out) == [
        Job(src / "a.png", PurePath("a")),
        Job(src / "locked", PurePath("locked"), "cannot read folder: Permission denied"),
    ]


def test_nothing_found_explains_what_was_searched(src: Path, out: Path) -> None:
    touch(src, "notes.txt", ".hidden.png", "sub/deep.png")
    with pytest.raises(InputError) as raised:
        discover([str(src)], out, recursive=False)
    message = str(raised.value)
    assert f"no images found in: {src}" in message
    assert ".avi, .bmp, .gif, .jpeg, .jpg, .mkv, .mov, .mp4, .png, .tif, .tiff, .webm, .webp" in message
    assert "hidden files and folders" in message
    assert "--no-recursive" in message


def test_empty_stdin_list_is_reported() -> None:
    with pytest.raises(InputError, match="the path list read from stdin was empty"):
        discover(["-"], Path("out"), stdin=io.StringIO("\n\n"))


def conflicts(jobs: list[Job], out: Path, kinds=("map",), names: NameRule = NameRule(),
              layout: Layout = Layout.MIRROR) -> list[str]:
    """The plan's conflict lines for these jobs."""
    return [text for text, _ in check(Plan(jobs, OutputSpec(out, tuple(kinds), layout), names))]


def test_same_name_with_different_extensions_collides(src: Path, out: Path) -> None:
    touch(src, "x.jpg", "x.png", "y.png")
    with pytest.raises(PlanError) as raised:
        make_plan([str(src)], OutputSpec(out, ("map",)))
    message = str(raised.value)
    assert f"{out / 'x.png'}: the map of {src / 'x.jpg'} and the map of {src / 'x.png'}" in message
    assert "rename" in message
    assert "y.png" not in message


def test_letter_case_is_compared_as_the_file_system_does_and_failed_jobs_never_collide(out: Path) -> None:
    jobs = [
        Job(Path("in/a/X.png"), PurePath("a/X")),
        Job(Path("in/a/x.jpg"), PurePath("a/x")),
        Job(Path("b.png"), PurePath("b"), "file not found"),
        Job(Path("other/B.png"), PurePath("B")),
    ]
    assert conflicts(jobs, out) == []
    folding = conflicts(jobs, out, names=NameRule(folds_case=True, folds_unicode=True))
    assert folding == [f"{out / 'a/x.png'}: the map of in/a/X.png and the map of in/a/x.jpg"]
    nfc, nfd = "caf\u00e9", unicodedata.normalize("NFD", "caf\u00e9")
    spellings = [Job(Path(f"{nfc}.png"), PurePath(nfc)), Job(Path(f"{nfd}.png"), PurePath(nfd))]
    assert conflicts(spellings, out) == []
    assert len(conflicts(spellings, out, names=NameRule(folds_unicode=True))) == 1


def test_name_rule_probe_finds_this_file_system_exact(tmp_path: Path) -> None:
    rule = NameRule.probe(tmp_path / "not" / "yet")
    if sys.platform.startswith("linux"):
        assert rule == NameRule(folds_case=False, folds_unicode=False)
    assert [p.name for p in tmp_path.iterdir()] == []  # the probe file is gone
    assert NameRule(folds_case=True, folds_unicode=True).key("Cafe\u0301.PNG") == "caf\u00e9.png"


def test_outputs_of_every_kind_and_folders_are_checked(out: Path) -> None:
    jobs = [Job(Path("in/x.png"), PurePath("x")), Job(Path("in/x_mask.png"), PurePath("x_mask")),
            Job(Path("in/a.jpg"), PurePath("a")), Job(Path("in/a.png/b.jpg"), PurePath("a.png/b"))]
    kinds = ("map", "mask")
    assert conflicts(jobs, out, kinds) == [
        f"{out / 'x_mask.png'}: the mask of in/x.png and the map of in/x_mask.png",
        f"{out / 'a.png'}: the map of in/a.jpg, but a folder must go there for the map of in/a.png/b.jpg",
    ]
    assert conflicts(jobs[:2], out, kinds, layout=Layout.BY_KIND) == []


def test_existing_folder_or_file_in_the_way_is_a_conflict(tmp_path: Path, out: Path) -> None:
    (out / "a.png").mkdir(parents=True)
    (out / "f").write_bytes(b"")
    jobs = [Job(Path("in/a.jpg"), PurePath("a")), Job(Path("in/f/b.png"), PurePath("f/b"))]
    assert conflicts(jobs, out) == [
        f"{out / 'a.png'} is a folder, but the map of in/a.jpg goes there",
        f"{out / 'f'} is a file, but a folder must go there for the map of in/f/b.png",
    ]


def test_same_name_in_different_folders_does_not_collide(src: Path, out: Path) -> None:
    touch(src, "a/x.png", "b/x.png")
    assert relatives(make_plan([str(src)], OutputSpec(out, ("map",))).jobs) == ["a/x", "b/x"]


def test_same_name_from_two_folders_given_separately_collides(tmp_path: Path, out: Path) -> None:
    touch(tmp_path, "one/x.png", "two/x.png")
    with pytest.raises(PlanError, match="common parent folder"):
        make_plan([str(tmp_path / "one"), str(tmp_path / "two")], OutputSpec(out, ("map",)))


def test_conflict_message_is_capped() -> None:
    jobs = [Job(Path(f"{i}{ext}"), PurePath(str(i))) for i in range(12) for ext in (".png", ".jpg")]
    with pytest.raises(PlanError) as raised:
        raise PlanError(check(Plan(jobs, OutputSpec(Path("out"), ("map",)))))
    message = str(raised.value)
    assert "  out/9.png: the map of 9.png and the map of 9.jpg" in message
    assert "10.png" not in message
    assert "... and 2 more" in message


def test_job_outputs_naming() -> None:
    job = Job(Path("input/a/b.jpg"), PurePath("a/b"))
    assert OutputSpec(Path("out"), ("map", "mask", "cutout", "overlay")).outputs(job) == {
        "map": Path("out/a/b.png"),
        "mask": Path("out/a/b_mask.png"),
        "cutout": Path("out/a/b_cutout.png"),
        "overlay": Path("out/a/b_overlay.png"),
    }
    assert OutputSpec(Path("out"), ("mask",)).outputs(Job(Path("v1.2.png"), PurePath("v1.2"))) == {
        "mask": Path("out/v1.2_mask.png")
    }
    assert OutputSpec(Path("out"), ("map", "mask", "cutout", "overlay"), Layout.BY_KIND).outputs(job) == {
        "map": Path("out/maps/a/b.png"),
        "mask": Path("out/masks/a/b.png"),
        "cutout": Path("out/cutouts/a/b.png"),
        "overlay": Path("out/overlays/a/b.png"),
    }


def test_broken_link_in_folder_is_reported_not_skipped(src: Path, out: Path) -> None:
    touch(src, "a.png")
    (src / "gone.png").symlink_to(src / "nowhere.png")
    (src / "gone.txt").symlink_to(src / "nowhere.txt")
    jobs = discover([str(src)], out)
    assert [(j.relative.as_posix(), j.error) for j in jobs] == [("a", None), ("gone", "broken symbolic link")]
