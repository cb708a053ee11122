"""The output plan through the command: conflicts stop the run before any network loads or any file
is written, every input name gets one record, and any file name survives messages and ``--json``."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path, PurePath

import pytest
from PIL import Image

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.inputs import ANIMATION, FIRST_FRAME, VIDEO
from animeface_seg.batch.manifest import MANIFEST_NAME
from animeface_seg.batch.naming import Layout
from animeface_seg.batch.name_rule import NameRule
from animeface_seg.batch.plan import Plan, PlanError, check, make_plan
from animeface_seg.batch.spec import OutputSpec
from conftest import make_image, make_video


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` but the manifest (relative POSIX path -> contents), to prove nothing changed."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and p.name != MANIFEST_NAME}


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def recorded_run(weights_dir):
    """Run the command in-process with a segmentor factory that only records that it was called."""
    from typer.testing import CliRunner

    from animeface_seg.cli import Environment, app

    calls: list[dict] = []

    def factory(**options):
        calls.append(options)
        raise AssertionError("the networks must not be loaded")

    def run(*args: str):
        result = CliRunner().invoke(app, [*args, "--weights-dir", str(weights_dir)],
                                    obj=Environment(segmentor_factory=factory), catch_exceptions=False)
        return result, calls

    return run


@pytest.mark.parametrize("layout", [("p", "p/sub"), ("d", "d/a")])
def test_input_inside_out_is_refused_and_nothing_changes(recorded_run, tmp_path, layout):
    out_name, input_name = layout
    out, src = tmp_path / out_name, tmp_path / input_name
    make_image(out / "x.png", (40, 30))
    make_image(src / "x.png", (30, 40), seed=1)
    make_image(src / "a" / "p.png", (30, 40), seed=2)
    before = files_under(tmp_path)
    result, calls = recorded_run(str(src), "-o", str(out), "--keep-background")
    assert result.exit_code == 2, result.output
    assert f"{src / 'x.png'} is inside the output folder {out}" in result.stderr
    assert "no input may lie inside OUT" in result.stderr
    assert calls == [] and files_under(tmp_path) == before


def test_out_inside_an_input_folder_is_fine_and_never_walked(run_cli, tmp_path):
    make_image(tmp_path / "in" / "a.png", (40, 30))
    first = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "in" / "out"), "--keep-background")
    again = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "in" / "out"), "--keep-background", "--json")
    assert first.returncode == again.returncode == 0, again.stderr
    assert [r["input"] for r in records(again.stdout)] == [str(tmp_path / "in" / "a.png")]


def test_x_and_x_mask_conflict_and_by_kind_layout_keeps_them_apart(run_cli, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "x.png", (64, 48))
    make_image(src / "x_mask.png", (48, 64), seed=1)
    proc = run_cli(str(src), "-o", str(out))
    assert proc.returncode == 2
    assert f"{out / 'x_mask.png'}: the mask of {src / 'x.png'} and the map of {src / 'x_mask.png'}" in proc.stderr
    assert "--layout by-kind" in proc.stderr and not out.exists()

    proc = run_cli(str(src), "-o", str(out), "--layout", "by-kind", "--cutout")
    assert proc.returncode == 0, proc.stderr
    assert sorted(files_under(out)) == ["cutouts/x.png", "cutouts/x_mask.png", "maps/x.png", "maps/x_mask.png",
                                        "masks/x.png", "masks/x_mask.png"]
    for name, size in (("x", (64, 48)), ("x_mask", (48, 64))):
        assert Image.open(out / "maps" / f"{name}.png").size == size
        assert Image.open(out / "masks" / f"{name}.png").mode == "L"
        assert Image.open(out / "masks" / f"{name}.png").size == size


def test_folder_named_like_an_output_is_a_conflict_up_front(run_cli, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "a.jpg", (40, 30))
    make_image(src / "a.png" / "b.jpg", (40, 30))
    proc = run_cli(str(src), "-o", str(out), "--keep-background")
    assert proc.returncode == 2
    assert (f"{out / 'a.png'}: the map of {src / 'a.jpg'}, but a folder must go there for the map of "
            f"{src / 'a.png' / 'b.jpg'}") in proc.stderr
    assert not out.exists()


@pytest.mark.skipif(NameRule.probe(Path.cwd()).folds_case, reason="needs a case-sensitive file system")
def test_names_differing_only_in_case_both_work(run_cli, tmp_path):
    make_image(tmp_path / "in" / "X.png", (40, 30))
    make_image(tmp_path / "in" / "x.png", (30, 40), seed=1)
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--keep-background")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "out" / "X.png").size == (40, 30)
    assert Image.open(tmp_path / "out" / "x.png").size == (30, 40)


def test_every_name_gets_one_record_with_links_and_loops(run_cli, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "z" / "p.png", (40, 30))
    make_image(src / "real.png", (40, 30), seed=1)
    (src / "a").symlink_to("z", target_is_directory=True)  # an alias that sorts before its folder
    (src / "self").symlink_to(".", target_is_directory=True)  # a loop
    (src / "alias.png").symlink_to("real.png")
    (src / "loop.png").symlink_to("loop.png")  # a link to itself
    make_image(tmp_path / "elsewhere" / "e.png", (40, 30), seed=2)
    (src / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    proc = run_cli(str(src), "-o", str(out), "--keep-background", "--json")
    assert proc.returncode == 1, proc.stderr
    got = {Path(r["input"]).relative_to(src).as_posix(): (r["status"], r["reason"] or r["error"])
           for r in records(proc.stdout)}
    assert got == {
        "z/p.png": ("ok", None),
        "real.png": ("ok", None),
        "a": ("skipped", f"same folder as {src / 'z'}"),
        "alias.png": ("skipped", f"same file as {src / 'real.png'}"),
        "linked/e.png": ("ok", None),
        "loop.png": ("error", "cannot follow symbolic link: Too many levels of symbolic links"),
        "self": ("skipped", f"same folder as {src}"),
    }
    assert sorted(files_under(out)) == ["linked/e.png", "real.png", "z/p.png"]
    assert "processed 3, skipped 3, failed 1" in proc.stderr


def test_any_bytes_and_newlines_in_names_stay_one_line_and_valid_json(run_cli, tmp_path):
    src = tmp_path / "in"
    names = [b"bad\xff.png", b"new\nline.png", b"esc\x1b[31m.png"]
    for raw in names:
        make_image(src / os.fsdecode(raw), (40, 30))
    (src / os.fsdecode(b"broken\n\xfe\x1b.png")).write_bytes(b"not an image")
    proc = run_cli(str(src), "-o", str(tmp_path / "out"), "--keep-background", "--json")
    assert proc.returncode == 1
    got = {os.fsencode(Path(r["input"]).name): r for r in records(proc.stdout)}
    assert set(got) == {*names, b"broken\n\xfe\x1b.png"}
    for raw in names:
        assert got[raw]["status"] == "ok"
        assert Path(got[raw]["outputs"]["map"]).is_file()
        assert os.fsencode(Path(got[raw]["outputs"]["map"]).name) == raw[:-4] + b".png"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {src}/broken\\n\\xfe\\x1b.png: not a recognised image or video file"]
    assert "\x1b" not in proc.stderr


def test_nul_separated_stdin_with_root_lands_where_the_full_run_writes(run_cli, tmp_path):
    data = tmp_path / "dataset"
    make_image(data / "a" / "x.png", (40, 30))
    make_image(data / "b" / "new\nline.jpg", (30, 40), seed=1)
    make_image(data / "top.png", (30, 30), seed=2)
    make_image(tmp_path / "outside.png", (30, 30), seed=3)
    full = run_cli(str(data), "-o", str(tmp_path / "full"), "--keep-background")
    assert full.returncode == 0, full.stderr
    listed = b"".join(os.fsencode(p) + b"\0" for p in (data / "a" / "x.png", data / "b" / "new\nline.jpg"))
    proc = run_cli("-", "-0", str(data / "top.png"), "--root", str(data), "-o", str(tmp_path / "inc"),
                   "--keep-background", stdin=listed)
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path / "inc").keys() == files_under(tmp_path / "full").keys()
    assert sorted(files_under(tmp_path / "inc")) == ["a/x.png", "b/new\nline.png", "top.png"]

    proc = run_cli(str(tmp_path / "outside.png"), str(data / "a"), "--root", str(data), "-o",
                   str(tmp_path / "more"), "--keep-background", "--json")
    assert proc.returncode == 1
    assert {r["input"]: r["error"] for r in records(proc.stdout)} == {
        str(tmp_path / "outside.png"): f"not inside --root {data}", str(data / "a" / "x.png"): None}
    assert sorted(files_under(tmp_path / "more")) == ["a/x.png"]


def remove_tree_without_recursion(top: Path) -> None:
    """Remove a folder tree of any depth (``shutil.rmtree``, ``os.walk`` and pytest's clean-up recurse)."""
    stack = [str(top)]
    while stack:
        folder = stack[-1]
        subfolders = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(entry.path)
                else:
                    os.unlink(entry.path)
        if subfolders:
            stack.extend(subfolders)
        else:
            os.rmdir(stack.pop())


@pytest.fixture
def deep_tmp(tmp_path):
    """``tmp_path``, emptied without recursion afterwards (a ~1100-deep tree would break pytest's clean-up)."""
    yield tmp_path
    for child in tmp_path.iterdir():
        remove_tree_without_recursion(child)


def test_deeply_nested_folders_are_walked_without_recursion(run_cli, deep_tmp):
    deep = deep_tmp / "in"
    deep.mkdir()
    for _ in range(1100):  # Path.mkdir(parents=True) itself recurses
        deep = deep / "d"
        deep.mkdir()
    make_image(deep / "x.png", (30, 30))
    proc = run_cli(str(deep_tmp / "in"), "-o", str(deep_tmp / "out"), "--keep-background")
    assert proc.returncode == 0, proc.stderr
    assert (deep_tmp / "out" / Path(*["d"] * 1100) / "x.png").is_file()


def test_empty_names_are_usage_errors(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "in" / "a.png", (30, 30))
    proc = run_cli("in", "-o", "", "--keep-background")
    assert proc.returncode == 2 and "-o is empty" in proc.stderr
    proc = run_cli("", "-o", "out", "--keep-background")
    assert proc.returncode == 2 and "an INPUT argument is empty" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_missing_inputs_are_reported_without_loading_the_networks(recorded_run, tmp_path):
    result, calls = recorded_run(str(tmp_path / "mistyped"), "-o", str(tmp_path / "out"), "--json")
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'mistyped'}: file not found" in result.stderr
    assert "nothing left to process" in result.stderr
    assert [r["status"] for r in records(result.stdout)] == ["error"]
    assert calls == [] and not (tmp_path / "out").exists()


# -- clips: a video or an animated image owns a folder of frames ------------------------------------

def animated_gif(path: Path, frames: int = 2) -> Path:
    """A real GIF of ``frames`` distinct frames (one frame: a still)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.new("RGB", (24, 16), (40 * i, 200 - 40 * i, 90)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=50)
    return path


def clip_conflicts(jobs: list[Job], out: Path, kinds=("map",), layout: Layout = Layout.MIRROR) -> list[str]:
    """The plan's conflict lines for these jobs (names compared exactly)."""
    return [text for text, _ in check(Plan(jobs, OutputSpec(out, tuple(kinds), layout), NameRule()))]


def test_a_clip_beside_a_folder_of_the_same_name_is_refused_before_the_networks_load(recorded_run, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "clip" / "x.png", (40, 30))
    make_video(src / "clip.MP4")
    before = files_under(tmp_path)
    result, calls = recorded_run(str(src), "-o", str(out))
    assert result.exit_code == 2, result.output
    assert (f"{out / 'clip' / 'x.png'}: the map of {src / 'clip' / 'x.png'}, inside {out / 'clip'}, which holds "
            f"the frames of {src / 'clip.MP4'}") in result.stderr
    assert calls == [] and files_under(tmp_path) == before and not out.exists()


def test_an_animated_gif_beside_a_video_of_the_same_name_is_refused(recorded_run, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    animated_gif(src / "clip.gif")
    make_video(src / "clip.webm")
    result, calls = recorded_run(str(src), "-o", str(out), "--layout", "by-kind")
    assert result.exit_code == 2, result.output
    for tree in ("maps", "masks"):
        assert (f"{out / tree / 'clip'}: the frames of {src / 'clip.gif'} and the frames of "
                f"{src / 'clip.webm'}") in result.stderr
    assert calls == [] and not out.exists()


def test_the_plan_marks_clips_from_headers_whatever_the_name(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    animated_gif(src / "anim.gif")
    animated_gif(src / "still.gif", frames=1)
    make_video(src / "movie.mkv")
    make_image(src / "photo.png", (40, 30))
    (src / "lying.webp").write_bytes(animated_gif(tmp_path / "gif.gif").read_bytes())  # names that lie
    (src / "gif.png").write_bytes((tmp_path / "gif.gif").read_bytes())
    make_video(src / "video.jpg")
    (src / "one.webm").write_bytes(animated_gif(tmp_path / "one.gif", frames=1).read_bytes())
    plan = make_plan([str(src), str(src / "missing.mov")], OutputSpec(out, ("map", "mask")))
    assert {job.source.name: (job.kind.streams_frames, job.kind.name) for job in plan.jobs} == {
        "anim.gif": (True, "animation"), "movie.mkv": (True, "video"), "photo.png": (False, "still"),
        "still.gif": (False, "still"), "lying.webp": (True, "animation"), "gif.png": (True, "animation"),
        "video.jpg": (True, "video"), "one.webm": (False, "still"), "missing.mov": (False, "still")}
    assert plan.spec.frame_folders(plan.jobs[0]) == {
        "map": out / "anim", "mask": out / "anim"}
    # one picture per file: nothing is a clip (a video is still read as one), so a still GIF and a video
    # of one name do collide
    firsts = make_plan([str(src)], OutputSpec(out, ("map",), first_frame=True)).jobs
    assert not any(job.kind.streams_frames for job in firsts)
    assert [job.source.name for job in firsts if job.kind is FIRST_FRAME] == ["movie.mkv", "video.jpg"]


def test_a_single_frame_gif_beside_a_video_is_a_still_beside_a_folder(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    animated_gif(src / "clip.gif", frames=1)
    make_video(src / "clip.mp4")
    plan = make_plan([str(src)], OutputSpec(out, ("map", "mask")))
    assert [(job.source.name, job.kind.streams_frames) for job in plan.jobs] == [("clip.gif", False),
                                                                                 ("clip.mp4", True)]


def test_frame_folders_meet_files_folders_and_other_clips(tmp_path):
    out = tmp_path / "out"
    jobs = [Job(Path("in/x.png.mp4"), PurePath("x.png"), kind=VIDEO), Job(Path("in/x.jpg"), PurePath("x")),
            Job(Path("in/a/b.gif"), PurePath("a/b"), kind=ANIMATION), Job(Path("in/a.mkv"), PurePath("a"), kind=VIDEO),
            Job(Path("in/c.avi"), PurePath("c"), kind=VIDEO), Job(Path("in/c_mask.png"), PurePath("c_mask")),
            Job(Path("in/d.mov"), PurePath("d"), "file not found")]
    assert clip_conflicts(jobs, out, ("map", "mask")) == [
        f"{out / 'x.png'}: the map of in/x.jpg, but a folder must go there for the frames of in/x.png.mp4",
        f"{out / 'a' / 'b'}: the frames of in/a/b.gif, inside {out / 'a'}, which holds the frames of in/a.mkv",
    ]
    # the same clips in the other order, and each kind in its own tree
    assert clip_conflicts(jobs[3::-1], out, ("map",), Layout.BY_KIND) == [
        f"{out / 'maps' / 'a' / 'b'}: the frames of in/a/b.gif, inside {out / 'maps' / 'a'}, which holds "
        f"the frames of in/a.mkv",
        f"{out / 'maps' / 'x.png'}: the map of in/x.jpg, but a folder must go there for the frames of in/x.png.mp4",
    ]


def test_a_frame_folder_on_disk_is_resumed_but_a_file_there_is_a_conflict(tmp_path):
    out = tmp_path / "out"
    (out / "done").mkdir(parents=True)
    (out / "done" / "000001.png").write_bytes(b"")
    (out / "blocked").write_bytes(b"")
    (out / "file").write_bytes(b"")
    jobs = [Job(Path(f"in/{name}.mp4"), PurePath(name), kind=VIDEO) for name in ("done", "blocked")]
    jobs.append(Job(Path("in/file/deep.mp4"), PurePath("file/deep"), kind=VIDEO))
    assert clip_conflicts(jobs, out) == [
        f"{out / 'blocked'} is a file, but a folder must go there for the frames of in/blocked.mp4",
        f"{out / 'file'} is a file, but a folder must go there for the frames of in/file/deep.mp4",
    ]


def test_frame_outputs_are_numbered_files_in_the_clip_folder():
    from animeface_seg.batch.naming import clip_folders, frame_output_paths

    out, clip, kinds = Path("OUT"), PurePath("a/clip"), ("map", "mask", "cutout", "overlay")
    assert frame_output_paths(out, clip, kinds, Layout.MIRROR, 1) == {
        "map": out / "a/clip/000001.png", "mask": out / "a/clip/000001_mask.png",
        "cutout": out / "a/clip/000001_cutout.png", "overlay": out / "a/clip/000001_overlay.png"}
    assert frame_output_paths(out, clip, kinds[:2], Layout.BY_KIND, 1_234_567) == {
        "map": out / "maps/a/clip/1234567.png", "mask": out / "masks/a/clip/1234567.png"}
    assert frame_output_paths(out, clip, ["map"], "mirror", 999_999)["map"].name == "999999.png"
    assert clip_folders(out, clip, kinds[:2]) == {"map": out / "a/clip", "mask": out / "a/clip"}
    assert clip_folders(out, clip, kinds[:2], Layout.BY_KIND) == {
        "map": out / "maps/a/clip", "mask": out / "masks/a/clip"}
    with pytest.raises(ValueError, match="start at 1"):
        frame_output_paths(out, clip, kinds, Layout.MIRROR, 0)


def test_a_hard_link_is_the_same_file(run_cli, tmp_path):
    """Two names of one file (a hard link): processed once, the second name recorded as the same file."""
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "a.png", (40, 30))
    os.link(src / "a.png", src / "b.png")
    proc = run_cli(str(src), "-o", str(out), "--keep-background", "--json")
    assert proc.returncode == 0, proc.stderr
    got = {Path(r["input"]).name: (r["status"], r["reason"]) for r in records(proc.stdout)}
    assert got == {"a.png": ("ok", None), "b.png": ("skipped", f"same file as {src / 'a.png'}")}
    assert sorted(files_under(out)) == ["a.png"]


def test_json_on_a_standard_output_that_is_not_utf8_escapes_every_non_ascii_character(run_process, tmp_path):
    image = make_image(tmp_path / "in" / "キャラ é.png", (40, 30))
    proc = run_process(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--keep-background", "--json",
                       env={"PYTHONIOENCODING": "latin-1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.isascii() and "\\u30ad\\u30e3\\u30e9 \\u00e9.png" in proc.stdout, proc.stdout
    [record] = records(proc.stdout)
    assert record["input"] == str(image) and record["outputs"]["map"] == str(tmp_path / "out" / "キャラ é.png")


def test_outputs_on_the_review_page_or_the_manifest_are_refused_before_anything_runs(recorded_run, tmp_path):
    """The files the run keeps in OUT are part of the plan: an input folder, a clip's frame folder or a clip named
    like the page, its thumbnails' folder or the manifest is refused, naming both sides."""
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "index.html" / "a.png", (40, 30))
    animated_gif(src / "index.html.gif")
    make_video(src / "animeface-seg-manifest.jsonl.mp4")
    make_image(src / "fine.png", (30, 40), seed=1)
    before = files_under(tmp_path)
    result, calls = recorded_run(str(src), "-o", str(out), "--review", "--keep-background")
    assert result.exit_code == 2, result.output
    assert (f"{out / 'index.html' / 'a.png'}: the map of {src / 'index.html' / 'a.png'}, inside {out / 'index.html'}, "
            "where the review page (--review) goes") in result.stderr
    assert f"{out / 'index.html'}: the frames of {src / 'index.html.gif'}, but the review page (--review) goes there" \
        in result.stderr
    assert (f"{out / 'animeface-seg-manifest.jsonl'}: the frames of {src / 'animeface-seg-manifest.jsonl.mp4'}, "
            "but the manifest of OUT goes there") in result.stderr
    assert "drop --review" in result.stderr and "fine" not in result.stderr
    assert calls == [] and files_under(tmp_path) == before and not out.exists()
    # Without --review the page's names are free; the manifest's never are.
    plan = make_plan([str(src / "index.html"), str(src / "index.html.gif")], OutputSpec(out, ("map",)))
    assert len(plan.jobs) == 2
    with pytest.raises(PlanError, match="the manifest of OUT goes there"):
        make_plan([str(src / "animeface-seg-manifest.jsonl.mp4")], OutputSpec(out, ("map",)))


def test_run_files_are_compared_as_the_output_file_system_compares_names(tmp_path):
    out = tmp_path / "out"
    jobs = [Job(tmp_path / "INDEX.HTML.gif", PurePath("INDEX.HTML"), kind=ANIMATION),
            Job(tmp_path / "x.png", PurePath("Animeface-Seg-Manifest.JSONL/x"))]
    folding = Plan(jobs, OutputSpec(out, ("map",), review=True), names=NameRule(folds_case=True))
    assert [text for text, _ in check(folding)] == [
        f"{out / 'INDEX.HTML'}: the frames of {tmp_path / 'INDEX.HTML.gif'}, but the review page (--review) goes there",
        (f"{out / 'Animeface-Seg-Manifest.JSONL' / 'x.png'}: the map of {tmp_path / 'x.png'}, inside "
         f"{out / MANIFEST_NAME}, where the manifest of OUT goes")]
    assert check(replace(folding, names=NameRule())) == []


def test_a_file_dropped_into_a_watched_folder_never_takes_the_review_page(tmp_path):
    """The watch claims each new file's outputs by the plan's rule, the run's own files included."""
    pytest.importorskip("watchfiles")
    import queue
    import threading

    from animeface_seg.batch.kinds import select
    from animeface_seg.integrations.watch import DropFolders

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    drop = DropFolders([str(src)], OutputSpec(out, select(), review=True), settle=0.2)
    drop.start()
    drop.plan([], checked=lambda job: True)
    got: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [got.put(job) for job in drop.jobs()], daemon=True)
    reader.start()
    try:
        make_image(src / "index.html" / "a.png", (30, 30))
        job = got.get(timeout=30)
        assert job.source == src / "index.html" / "a.png"
        assert f"{out / 'index.html' / 'a.png'}: the map of {job.source}, inside {out / 'index.html'}, where the " \
               "review page (--review) goes" in job.error
    finally:
        drop.stop()
        reader.join(timeout=30)


def test_output_spec_gives_a_clip_frames_videos_or_both_as_encode_says():
    """One spec answers where each output of a job goes: a still's files whatever ``encode`` says; a clip's frame
    folders, its videos (``<kind>_video``) or both, and each frame's files only where frames are written."""
    out, kinds = Path("out"), ("map", "mask")
    clip, still = Job(Path("in/c.gif"), PurePath("a/c"), kind=ANIMATION), Job(Path("in/s.png"), PurePath("s"))
    frames, video, both = (OutputSpec(out, kinds, encode=encode) for encode in ("frames", "video", "both"))
    assert frames.outputs(clip) == {"map": out / "a/c", "mask": out / "a/c"}
    assert video.outputs(clip) == {"map_video": out / "a/c.mkv", "mask_video": out / "a/c_mask.mkv"}
    assert both.outputs(clip) == {**frames.outputs(clip), **video.outputs(clip)}
    assert video.frame_outputs(clip, 7) == {} and frames.videos(clip) == {}
    assert both.frame_outputs(clip, 7) == {"map": out / "a/c/000007.png",
                                           "mask": out / "a/c/000007_mask.png"}
    for spec in (frames, video, both):
        assert spec.outputs(still) == {"map": out / "s.png", "mask": out / "s_mask.png"}
    by_kind = OutputSpec(out, kinds, "by-kind", encode="both")
    assert by_kind.frame_folders(clip) == {"map": out / "maps/a/c", "mask": out / "masks/a/c"}
    assert by_kind.videos(clip)["mask"] == out / "masks/a/c.mkv"
