"""Input discovery and output naming, on real files in a temporary folder (contents are never decoded)."""

from __future__ import annotations

import io
import os
from pathlib import Path, PurePath

import pytest

from animeface_seg.batch.discovery import (
    IMAGE_EXTENSIONS,
    InputError,
    Job,
    check_collisions,
    discover,
    find_collisions,
    read_path_list,
)


def touch(root: Path, *names: str) -> None:
    """Create dummy files (and their folders) under ``root``."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not really an image")


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
    touch(src, "a.PNG", "b.JpEg", "c.TIFF", "d.bmp")
    assert relatives(discover([str(src)], out)) == ["a", "b", "c", "d"]
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


def test_outputs_inside_the_input_folder_are_not_taken(src: Path) -> None:
    out = src / "out"
    touch(src, "a.png", "out/a.png", "out/a_mask.png", "out/sub/b.png")
    assert relatives(discover([str(src)], out)) == ["a"]
    assert relatives(discover([str(src / "a.png"), str(out / "a_mask.png")], out)) == ["a"]


def test_output_folder_given_another_way_is_still_recognised(src: Path) -> None:
    touch(src, "a.png", "out/a_mask.png")
    assert relatives(discover([str(src)], src / "sub" / ".." / "out")) == ["a"]


def test_symlinked_folder_and_file_are_followed(src: Path, tmp_path: Path, out: Path) -> None:
    touch(tmp_path, "elsewhere/e.png", "other/f.jpg")
    (src / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (src / "f.jpg").symlink_to(tmp_path / "other/f.jpg")
    jobs = discover([str(src)], out)
    assert jobs == [Job(src / "f.jpg", PurePath("f")), Job(src / "linked/e.png", PurePath("linked/e"))]


def test_symlink_loop_terminates_and_yields_each_file_once(src: Path, out: Path) -> None:
    touch(src, "a.png", "sub/b.png")
    (src / "sub/up").symlink_to("..", target_is_directory=True)
    assert relatives(discover([str(src)], out)) == ["a", "sub/b"]
    # Starting below the loop: the parent is entered once through the link, then the loop stops.
    assert relatives(discover([str(src / "sub")], out)) == ["b", "up/a"]


def test_same_file_reached_twice_is_processed_once(src: Path, out: Path) -> None:
    touch(src, "a.png", "sub/b.png")
    (src / "alias.png").symlink_to(src / "a.png")
    args = [str(src / "sub/b.png"), str(src), str(src / "a.png"), str(src / "sub/../a.png")]
    jobs = discover(args, out)
    assert jobs == [Job(src / "sub/b.png", PurePath("b")), Job(src / "a.png", PurePath("a"))]


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
    assert ".bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp" in message
    assert "hidden files and folders" in message
    assert "--no-recursive" in message


def test_empty_stdin_list_is_reported() -> None:
    with pytest.raises(InputError, match="the path list read from stdin was empty"):
        discover(["-"], Path("out"), stdin=io.StringIO("\n\n"))


def test_same_name_with_different_extensions_collides(src: Path, out: Path) -> None:
    touch(src, "x.jpg", "x.png", "y.png")
    jobs = discover([str(src)], out)
    assert find_collisions(jobs) == [[Job(src / "x.jpg", PurePath("x")), Job(src / "x.png", PurePath("x"))]]
    with pytest.raises(InputError) as raised:
        check_collisions(jobs, out)
    message = str(raised.value)
    assert f"{out / 'x.png'}: {src / 'x.jpg'}, {src / 'x.png'}" in message
    assert "rename" in message
    assert "y.png" not in message


def test_collisions_ignore_letter_case_and_include_failed_jobs() -> None:
    jobs = [
        Job(Path("in/a/X.png"), PurePath("a/X")),
        Job(Path("in/a/x.jpg"), PurePath("a/x")),
        Job(Path("b.png"), PurePath("b"), "file not found"),
        Job(Path("other/B.png"), PurePath("B")),
    ]
    assert find_collisions(jobs) == [jobs[:2], jobs[2:]]


def test_same_name_in_different_folders_does_not_collide(src: Path, out: Path) -> None:
    touch(src, "a/x.png", "b/x.png")
    jobs = discover([str(src)], out)
    assert find_collisions(jobs) == []
    check_collisions(jobs, out)


def test_same_name_from_two_folders_given_separately_collides(tmp_path: Path, out: Path) -> None:
    touch(tmp_path, "one/x.png", "two/x.png")
    jobs = discover([str(tmp_path / "one"), str(tmp_path / "two")], out)
    with pytest.raises(InputError, match="common parent folder"):
        check_collisions(jobs, out)


def test_collision_message_is_capped() -> None:
    jobs = [Job(Path(f"{i}{ext}"), PurePath(str(i))) for i in range(12) for ext in (".png", ".jpg")]
    with pytest.raises(InputError) as raised:
        check_collisions(jobs)
    message = str(raised.value)
    assert "  9.png: 9.png, 9.jpg" in message
    assert "10.png" not in message
    assert "... and 2 more" in message


def test_job_outputs_naming() -> None:
    job = Job(Path("input/a/b.jpg"), PurePath("a/b"))
    assert job.outputs(Path("out"), ["map", "mask", "cutout", "overlay"]) == {
        "map": Path("out/a/b.png"),
        "mask": Path("out/a/b_mask.png"),
        "cutout": Path("out/a/b_cutout.png"),
        "overlay": Path("out/a/b_overlay.png"),
    }
    assert Job(Path("v1.2.png"), PurePath("v1.2")).outputs(Path("out"), ["mask"]) == {
        "mask": Path("out/v1.2_mask.png")
    }


def test_broken_link_in_folder_is_reported_not_skipped(src: Path, out: Path) -> None:
    touch(src, "a.png")
    (src / "gone.png").symlink_to(src / "nowhere.png")
    (src / "gone.txt").symlink_to(src / "nowhere.txt")
    jobs = discover([str(src)], out)
    assert [(j.relative.as_posix(), j.error) for j in jobs] == [("a", None), ("gone", "broken symbolic link")]
