"""``--review``: OUT/index.html rendered in a real headless Chromium (Playwright drives Debian's ``chromium``)."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animeface_seg.batch.manifest import MANIFEST_NAME
from animeface_seg.batch.review import write_review
from animeface_seg.engine.palette import CLASS_NAMES
from conftest import make_image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: A name that HTML, attributes and URLs must all escape.
ODD = 'q"<&>\' x.png'


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the system's, as .ci/run installs it), driven by Playwright."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, page_file: Path, fragment: str = ""):
    """The page opened from disk, with every request it makes and every script error collected."""
    page = browser.new_page(viewport={"width": 1200, "height": 4000})
    page.requests, page.errors = [], []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(page_file.as_uri() + fragment)
    page.wait_for_load_state("load")
    return page


def visible(page) -> list[dict]:
    """The items shown, in page order, with their data attributes."""
    return page.eval_on_selector_all(
        "#items > .item", "items => items.filter(el => el.offsetParent !== null).map(el => ({...el.dataset}))")


@pytest.fixture(scope="module")
def reviewed(run_cli, tmp_path_factory):
    """Two runs into one OUT with --review: three good images and a corrupt file, then one more image."""
    root = tmp_path_factory.mktemp("review")
    first = root / "first"
    for index, (name, size) in enumerate([("a.png", (64, 48)), ("sub/b.jpg", (40, 60)), (ODD, (50, 50))]):
        make_image(first / name, size, seed=index)
    (first / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    make_image(root / "second" / "c.png", (48, 64), seed=7)
    out = root / "out"
    proc = run_cli(str(first), "-o", str(out), "--overlay", "--review")
    assert proc.returncode == 1, proc.stderr
    assert "review page:" in proc.stderr
    thumbs = {path: path.stat().st_mtime_ns for path in (out / ".animeface-seg-review").rglob("*.*")}
    assert len(thumbs) == 3 * 3
    proc = run_cli(str(root / "second" / "c.png"), "-o", str(out), "--overlay", "--review")
    assert proc.returncode == 0, proc.stderr
    assert all(path.stat().st_mtime_ns == made for path, made in thumbs.items())  # reused, not made again
    assert f"review page: {out / 'index.html'} (5 input(s): 4 ok, 0 skipped, 1 failed)" in proc.stderr
    records = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    return out, {record["input"]: record for record in records}, root


def test_one_item_per_input_of_every_run(browser, reviewed):
    out, records, root = reviewed
    page = open_page(browser, out / "index.html")
    items = visible(page)
    assert page.errors == []
    assert sorted(item["input"] for item in items) == sorted(records)
    by_input = {item["input"]: item for item in items}
    broken = by_input[str(root / "first" / "broken.png")]
    assert broken["status"] == "error" and "output" not in broken
    assert [item["input"] for item in items if item["status"] == "error"] == [broken["input"]]
    assert {item["output"] for item in items if "output" in item} == {"a.png", "sub/b.png", ODD, "c.png"}
    for item in items:
        record = records[item["input"]]
        if record["status"] == "ok":
            assert float(item["coverage"]) == pytest.approx(record["mask_coverage"], rel=1e-5)
            assert [float(v) for v in item["fractions"].split()] == pytest.approx(
                [record["class_fractions"][name] for name in CLASS_NAMES], rel=1e-5)
    # The failure says why, and the odd name is shown as text, never as markup.
    error_text = page.text_content(".item[data-status=error] .error")
    assert error_text == records[broken["input"]]["error"]
    assert page.locator(".item .name", has_text=ODD).count() == 1
    page.close()


def test_thumbnails_are_small_local_files_that_load(browser, reviewed):
    out, records, _ = reviewed
    page = open_page(browser, out / "index.html")
    page.wait_for_function("Array.from(document.images).every(img => img.complete)")
    images = page.eval_on_selector_all("img", "imgs => imgs.map(img => [img.getAttribute('src'), img.naturalWidth, "
                                               "img.alt, img.closest('a').getAttribute('href')])")
    assert len(images) == 3 * 4  # source, overlay and mask of each processed input
    for src, width, alt, href in images:
        assert src.startswith(".animeface-seg-review/thumbs/") and width > 0, (src, width)
        with Image.open(out / src) as thumb:
            assert max(thumb.size) <= 160
        assert alt in ("source", "overlay", "mask")
    assert page.locator("img[alt=overlay]").count() == 4
    # Links open the full-size files: outputs relative to OUT, URL-encoded exactly.
    assert "q%22%3C%26%3E%27%20x_overlay.png" in {href for *_, href in images}
    page.close()


def test_no_request_leaves_the_machine(browser, reviewed):
    out, _, _ = reviewed
    page = open_page(browser, out / "index.html")
    page.wait_for_function("Array.from(document.images).every(img => img.complete)")
    assert page.requests and all(url.startswith("file://") for url in page.requests), page.requests
    source = (out / "index.html").read_text()
    assert not re.search(r"""(src|href|action|url)\s*[=(]\s*["']?\s*(https?:)?//""", source, re.IGNORECASE)
    page.close()


def test_sorting_and_filtering_change_order_and_visible_set(browser, reviewed):
    out, records, root = reviewed
    page = open_page(browser, out / "index.html")
    ok = [record for record in records.values() if record["status"] == "ok"]

    page.select_option("#sort", "hair")
    page.select_option("#order", "desc")
    by_hair = sorted(ok, key=lambda record: -record["class_fractions"]["hair"])
    assert [item["input"] for item in visible(page)] == [r["input"] for r in by_hair] + [str(root / "first" / "broken.png")]

    page.select_option("#sort", "coverage")
    page.select_option("#order", "asc")
    by_coverage = [r["input"] for r in sorted(ok, key=lambda record: record["mask_coverage"])]
    assert [item["input"] for item in visible(page)][:4] == by_coverage

    # The state is in the address: the same view comes back on reload.
    assert "sort=coverage" in page.url and "order=asc" in page.url
    again = open_page(browser, out / "index.html", "#" + page.url.split("#", 1)[1])
    assert [item["input"] for item in visible(again)][:4] == by_coverage
    again.close()

    page.select_option("#status", "error")
    assert [item["input"] for item in visible(page)] == [str(root / "first" / "broken.png")]
    page.select_option("#status", "all")

    # Mask coverage at least the median: exactly the inputs at or above it (failures have none).
    median = sorted(record["mask_coverage"] for record in ok)[len(ok) // 2]
    page.select_option("#metric", "coverage")
    page.select_option("#op", "ge")
    page.fill("#value", f"{100 * median - 1e-6:.8f}")
    assert sorted(item["input"] for item in visible(page)) == sorted(
        r["input"] for r in ok if r["mask_coverage"] >= median)

    # A class fraction at most a bound.
    bound = sorted(record["class_fractions"]["face"] for record in ok)[1]
    page.select_option("#metric", "face")
    page.select_option("#op", "le")
    page.fill("#value", f"{100 * bound + 1e-6:.8f}")
    assert sorted(item["input"] for item in visible(page)) == sorted(
        r["input"] for r in ok if r["class_fractions"]["face"] <= bound)
    assert len(visible(page)) == 2
    assert page.errors == []
    page.close()


def test_pages_of_many_inputs(browser, tmp_path):
    """250 records (files long gone): 100 per page, and the pager walks through them."""
    lines = [json.dumps({"input": f"/gone/{index:03d}.png", "status": "error" if index % 5 == 0 else "ok",
                         "outputs": {} if index % 5 == 0 else {"map": f"{tmp_path}/{index:03d}.png"},
                         "error": "file not found" if index % 5 == 0 else None,
                         "class_fractions": None if index % 5 == 0 else dict.fromkeys(CLASS_NAMES, index / 1750),
                         "mask_coverage": None if index % 5 == 0 else index / 250}) for index in range(250)]
    (tmp_path / MANIFEST_NAME).write_text("\n".join(lines) + "\n")
    write_review(tmp_path)
    page = open_page(browser, tmp_path / "index.html")
    assert page.locator("#items > .item").count() == 250  # all in the page, for scripts
    assert [item["input"] for item in visible(page)] == [f"/gone/{index:03d}.png" for index in range(100)]
    page.click("#next")
    page.click("#next")
    assert [item["input"] for item in visible(page)] == [f"/gone/{index:03d}.png" for index in range(200, 250)]
    assert page.text_content("#shown") == "201-250 of 250 shown (page 3 of 3)"
    assert page.locator("img").count() == 0 and page.locator("figure.none").count() == 3 * 200
    page.close()


def test_names_with_any_characters_are_escaped(tmp_path):
    """Quotes, markup, ampersands, line breaks and undecodable bytes never break the page."""
    name = str(tmp_path / "in" / 'a"b<c>&d\ne\rf.png') + "\udcff"
    record = {"input": name, "status": "error", "outputs": {}, "error": "bad <b>file</b> & more"}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(record) + "\n")
    write_review(tmp_path)
    source = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<b>file</b>" not in source and "bad &lt;b&gt;file&lt;/b&gt; &amp; more" in source
    data_input = re.search(r'data-input="([^"]*)"', source).group(1)
    assert html.unescape(data_input) == name.replace("\udcff", "\ufffd")
    assert 'a&quot;b&lt;c&gt;&amp;d&#10;e&#13;f.png\ufffd"' in source
    assert html.escape('a"b<c>&d\\ne\\rf.png\\xff') in source  # the text shown, one inert line


def test_review_refuses_a_page_it_did_not_write_and_object_storage(run_cli, tmp_path):
    make_image(tmp_path / "in" / "a.png", (30, 30))
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("<html>the user's own page</html>")
    proc = run_cli(str(tmp_path / "in"), "-o", str(out), "--review", "--keep-background")
    assert proc.returncode == 2
    assert f"{out / 'index.html'} exists and was not written by animeface-seg" in proc.stderr
    assert (out / "index.html").read_text() == "<html>the user's own page</html>"
    assert not (out / "a.png").exists()
    (out / "index.html").unlink()
    (out / ".animeface-seg-review").write_text("not the thumbnails' folder")
    proc = run_cli(str(tmp_path / "in"), "-o", str(out), "--review", "--keep-background")
    assert proc.returncode == 2 and (f"{out / '.animeface-seg-review'} is not a folder, but the review page keeps "
                                     "its thumbnails there") in proc.stderr
    assert sorted(path.name for path in out.iterdir()) == [".animeface-seg-review"]
    proc = run_cli(str(tmp_path / "in"), "-o", "s3://bucket/out", "--engine", "ray", "--review")
    assert proc.returncode == 2 and "--review writes a page in a local OUT, not in s3://bucket/out" in proc.stderr


@pytest.mark.parametrize("fragment", [
    "#per=0", "#per=abc&page=-1", "#status=%3Cb%3E", "#per=&status=", "#page=1.5&value=abc",
    "#sort=nope&order=sideways&metric=x&op=eq&value=&page=0x1", "#per=1e2&page=1e9",
])
def test_unexpected_values_in_the_address_fall_back_to_the_defaults(browser, reviewed, fragment):
    out, records, _ = reviewed
    page = open_page(browser, out / "index.html", fragment)
    controls = "ids => ids.map(id => document.getElementById(id).value)"
    ids = ["status", "metric", "op", "value", "query", "sort", "order", "per"]
    assert page.evaluate(controls, ids) == ["all", "", "ge", "0", "", "name", "asc", "100"]
    assert page.text_content("#shown") == f"1-{len(records)} of {len(records)} shown (page 1 of 1)"
    assert sorted(item["input"] for item in visible(page)) == sorted(records)
    assert page.errors == []
    page.close()


def test_valid_values_in_the_address_are_kept_beside_unexpected_ones(browser, reviewed):
    out, _, root = reviewed
    page = open_page(browser, out / "index.html", "#per=abc&status=error&page=7")
    assert page.evaluate("() => ['status', 'per'].map(id => document.getElementById(id).value)") == ["error", "100"]
    assert [item["input"] for item in visible(page)] == [str(root / "first" / "broken.png")]
    assert page.text_content("#shown") == "1-1 of 1 shown (page 1 of 1)"
    page.close()


def test_names_with_markup_show_as_text_in_the_browser(browser, run_cli, tmp_path):
    """Inputs named like markup: no element is injected, no handler runs, the text shown is the name."""
    names = ["<img src=x onerror=window.pwned=1>.png", "<b>x</b>.png", "&lt;b&gt;.png"]
    for index, name in enumerate(names):
        make_image(tmp_path / "in" / name, (32, 32), seed=index)
    out = tmp_path / "out"
    assert run_cli(str(tmp_path / "in"), "-o", str(out), "--keep-background", "--review").returncode == 0
    page = open_page(browser, out / "index.html")
    page.wait_for_function("Array.from(document.images).every(img => img.complete)")
    inputs = sorted(str(tmp_path / "in" / name) for name in names)
    shown_names = page.eval_on_selector_all(".item .name", "els => els.map(el => [el.textContent, el.children.length])")
    assert sorted(shown_names) == [[name, 0] for name in inputs]
    assert sorted(item["input"] for item in visible(page)) == inputs
    assert page.locator("b, img[src=x]").count() == 0
    assert page.evaluate("() => window.pwned") is None and page.errors == []
    page.close()


def _clip_files(folder: Path) -> list[np.ndarray]:
    """An animated GIF and an H.264 video of the same two frames (returned), and a still."""
    av = pytest.importorskip("av")
    ramp = np.linspace(0, 60, 64)[None, :, None]  # smooth pictures, far apart: codecs keep them recognisable
    frames = [np.broadcast_to(np.array(colour) + ramp, (48, 64, 3)).astype(np.uint8)
              for colour in ((190, 60, 30), (30, 70, 190))]
    folder.mkdir(parents=True)
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(folder / "anim.gif", save_all=True, append_images=images[1:], duration=100)
    with av.open(str(folder / "movie.mp4"), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    make_image(folder / "still.png", (40, 40), seed=3)
    return frames


def thumbs(page) -> dict[str, dict[str, tuple[str, str]]]:
    """Per input file name, per thumbnail kind: (its thumbnail file, its link), once every image has loaded."""
    page.wait_for_function("Array.from(document.images).every(img => img.complete && img.naturalWidth > 0)")
    found = page.eval_on_selector_all("#items > .item", """items => items.map(el => [el.dataset.input,
        Array.from(el.querySelectorAll('img'), img => [img.alt, img.getAttribute('src'),
                                                       img.closest('a').getAttribute('href')])])""")
    return {Path(name).name: {alt: (src, href) for alt, src, href in images} for name, images in found}


def thumbnail_of(file: Path, extension: str) -> str:
    """The thumbnail's path (relative to OUT) that shows ``file``: thumbnails are named by a digest of its path."""
    digest = hashlib.sha256(os.fsencode(file)).hexdigest()[:32]
    return f".animeface-seg-review/thumbs/{digest[:2]}/{digest}{extension}"


def test_clips_show_their_first_frame_linked_to_their_folder_or_video(browser, run_cli, tmp_path):
    frames = _clip_files(tmp_path / "in")
    frames_out, video_out = tmp_path / "frames", tmp_path / "videos"
    assert run_cli(str(tmp_path / "in"), "-o", str(frames_out), "--overlay", "--review").returncode == 0
    assert run_cli(str(tmp_path / "in"), "-o", str(video_out), "--encode", "video", "--review").returncode == 0
    page = open_page(browser, frames_out / "index.html")
    shown = thumbs(page)
    assert page.locator("figure.none").count() == 0 and page.errors == []
    for clip in ("anim", "movie"):
        assert {kind: href for kind, (_, href) in shown[f"{clip}.{'gif' if clip == 'anim' else 'mp4'}"].items()
                if kind != "source"} == {"overlay": clip, "mask": clip}  # a link to the clip's folder
        for kind, suffix in (("overlay", "_overlay"), ("mask", "_mask")):  # made of the first frame's file
            src = shown[f"{clip}.{'gif' if clip == 'anim' else 'mp4'}"][kind][0]
            assert src == thumbnail_of(frames_out / clip / f"000001{suffix}.png", ".jpg")
    # The video's own first frame, through PyAV (H.264 and JPEG change it a little).
    assert shown["movie.mp4"]["source"][0] == thumbnail_of(tmp_path / "in" / "movie.mp4", ".jpg")
    with Image.open(frames_out / shown["movie.mp4"]["source"][0]) as source:
        errors = [np.abs(np.asarray(source, int) - frame).mean() for frame in frames]
        assert errors[0] < 10 and errors[1] > 60, errors
    page.close()

    page = open_page(browser, video_out / "index.html")
    shown = thumbs(page)
    assert page.locator("figure.none").count() == 0 and page.errors == []
    assert {kind: href for kind, (_, href) in shown["anim.gif"].items() if kind != "source"} == {
        "map": "anim.mkv", "mask": "anim_mask.mkv"}
    # The map's thumbnail is the video's first frame, scaled keeping palette colours: the same pixels as
    # the first frame's map of the run that kept frames.
    with Image.open(video_out / shown["movie.mp4"]["map"][0]) as small, \
            Image.open(frames_out / "movie" / "000001.png") as full:
        full.thumbnail((160, 160), Image.Resampling.NEAREST)
        assert np.array_equal(np.asarray(small.convert("RGB")), np.asarray(full.convert("RGB")))
    page.close()


def test_a_moved_out_keeps_the_thumbnails_of_earlier_runs(browser, run_cli, tmp_path):
    make_image(tmp_path / "in" / "a.png", (40, 30))
    make_image(tmp_path / "in2" / "b.png", (30, 40), seed=1)
    assert run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--overlay", "--review").returncode == 0
    moved = tmp_path / "moved"
    (tmp_path / "out").rename(moved)
    assert run_cli(str(tmp_path / "in2"), "-o", str(moved), "--overlay", "--review").returncode == 0
    page = open_page(browser, moved / "index.html")
    shown = thumbs(page)
    assert page.locator("figure.none").count() == 0 and page.errors == []
    assert {name: sorted(href for kind, (_, href) in kinds.items() if kind != "source")
            for name, kinds in shown.items()} == {"a.png": ["a_mask.png", "a_overlay.png"],
                                                  "b.png": ["b_mask.png", "b_overlay.png"]}
    assert page.eval_on_selector_all("[data-output]", "els => els.map(el => el.dataset.output).sort()") == [
        "a.png", "b.png"]
    page.close()
