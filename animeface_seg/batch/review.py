"""``--review``: ``OUT/index.html``, one self-contained page to check every input of OUT at a glance.

The page lists every record of OUT's manifest (this run's and earlier runs'): thumbnails of the
source, the overlay (else the map) and the mask (a clip's: of its first frame, linked to its frame
folder or video), the class fractions and mask coverage, and each failure with its reason. It loads nothing from the network: styles and script are inline, the
thumbnails are small files in ``OUT/.animeface-seg-review/`` (``thumbnails.py``), so it works
opened from disk, offline. Every item is in the HTML itself, so scripts can read it without a
browser: ``data-status`` (``ok``, ``skipped``, ``error``), ``data-output`` (the map's path
relative to OUT, for inputs that have one), ``data-input``, ``data-coverage`` and
``data-fractions`` (in the order of the page's ``data-classes``). The inline script sorts, filters
and pages the items (its state is kept in the address's ``#`` part, where a value no control
offers falls back to the default) and shows one page at a
time, so images load only for the items shown and 10,000 inputs open fast. File names are
escaped for HTML; bytes that are not valid in the file system's encoding appear as U+FFFD in
attributes and as ``\\xNN`` in the text shown, while links carry the exact bytes.
"""

from __future__ import annotations

import html
import os
import re
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePath

from animeface_seg.batch.display import shown
from animeface_seg.batch.manifest import Warn, load
from animeface_seg.batch.kinds import KINDS
from animeface_seg.batch.naming import FRAME_DIGITS
from animeface_seg.batch.tempfiles import write_set
from animeface_seg.batch.thumbnails import REVIEW_FOLDER, thumbnail
from animeface_seg.engine.palette import CLASS_COLORS, CLASS_NAMES

PAGE_NAME = "index.html"
#: Marks a page as this tool's, so ``--review`` replaces it and never a page of the user's.
GENERATOR = '<meta name="generator" content="animeface-seg review">'

_SURROGATES = re.compile("[\ud800-\udfff]")
_THUMB_KINDS = (("source", None), ("overlay", "map"), ("mask", None))
_PLACEHOLDER = re.compile(r"\{(generator|title|summary|classes|colours|class_options|items)\}")


def review_problem(out_dir: PurePath) -> str | None:
    """Why ``--review`` cannot write its page in ``out_dir`` (said before anything runs), else ``None``."""
    if not isinstance(out_dir, Path):
        return (f"--review writes a page in a local OUT, not in {out_dir}: read "
                "animeface-seg-manifest.jsonl there instead")
    thumbs = out_dir / REVIEW_FOLDER
    if (thumbs.exists() or thumbs.is_symlink()) and not thumbs.is_dir():
        return f"{shown(thumbs)} is not a folder, but the review page keeps its thumbnails there: move it away"
    page = out_dir / PAGE_NAME
    if not page.exists() and not page.is_symlink():
        return None
    try:
        with open(page, "rb") as stream:
            ours = GENERATOR.encode() in stream.read(4096)
    except OSError:
        ours = False
    if not ours:
        return f"{shown(page)} exists and was not written by animeface-seg: move it away, or drop --review"
    return None


def write_review(out_dir: Path, warn: Warn | None = None, workers: int | None = None) -> str:
    """Make the thumbnails and write ``OUT/index.html`` atomically; return a line saying where it is."""
    records = list(load(out_dir, warn=warn).values())
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        items = list(pool.map(lambda record: _item(record, out_dir), records))
    counts = Counter(record.get("status") for record in records)
    page = out_dir / PAGE_NAME
    text = _page(out_dir, items, counts).encode("utf-8")
    write_set({page: lambda stream: stream.write(text)})
    return (f"review page: {shown(page)} ({len(records)} input(s): {counts['ok']} ok, {counts['skipped']} skipped, "
            f"{counts['error']} failed)")


def _attr(text: str) -> str:
    """``text`` as a double-quoted attribute value: markup escaped, line breaks as references."""
    text = html.escape(_SURROGATES.sub("\ufffd", text), quote=True)
    return text.replace("\r", "&#13;").replace("\n", "&#10;").replace("\t", "&#9;")


def _href(path: str, out_dir: Path) -> str:
    """A link to a local file: relative to OUT when below it, else a ``file:`` URL; exact bytes, percent-encoded."""
    relative = os.path.relpath(path, out_dir)
    if relative.split(os.sep)[0] != os.pardir:
        return urllib.parse.quote(os.fsencode(relative.replace(os.sep, "/")))
    return Path(path).as_uri()


def _item(record: dict, out_dir: Path) -> str:
    """One input's element (thumbnails made or reused here)."""
    name = record["input"]
    status = str(record.get("status"))
    outputs = record.get("outputs") or {}
    local = "://" not in name
    attributes = [f'class="item" data-status="{_attr(status)}" data-input="{_attr(name)}"']
    if "map" in outputs:
        map_path = os.path.relpath(outputs["map"], out_dir).replace(os.sep, "/")
        attributes.append(f'data-output="{_attr(map_path)}"')
    if isinstance(record.get("mask_coverage"), (int, float)):
        attributes.append(f'data-coverage="{record["mask_coverage"]:.9g}"')
    fractions = record.get("class_fractions")
    if isinstance(fractions, dict):
        values = " ".join(f"{float(fractions.get(name, 0.0)):.9g}" for name in CLASS_NAMES)
        attributes.append(f'data-fractions="{values}"')
    pictures = []
    if status != "error":
        files = _shown_files(name if local else None, outputs, clip=record.get("frames") is not None)
        for kind, fallback in _THUMB_KINDS:
            kind = kind if kind in files or not fallback else fallback
            pictures.append(_picture(kind, *files.get(kind, (None, None)), out_dir))
    parts = [f"<article {' '.join(attributes)}>", f'<h2 class="name">{html.escape(shown(name))}</h2>']
    if pictures:
        parts.append(f'<div class="thumbs">{"".join(pictures)}</div>')
    if status == "error":
        parts.append(f'<p class="error">{html.escape(shown(str(record.get("error") or "failed")))}</p>')
    else:
        coverage = record.get("mask_coverage")
        if isinstance(coverage, (int, float)):
            parts.append(f'<p class="coverage">mask coverage {100 * coverage:.1f}%</p>')
        if isinstance(fractions, dict):
            parts.append('<div class="bar"></div><dl class="fractions"></dl>')
    if record.get("reason"):
        parts.append(f'<p class="reason">{html.escape(shown(str(record["reason"])))}</p>')
    parts.append("</article>")
    return "".join(parts)


def _shown_files(source: str | None, outputs: dict[str, str], clip: bool) -> dict[str, tuple[str | None, str]]:
    """Per kind, the file its thumbnail shows and the file or folder it links to: a still's own file; a clip's
    first frame in its frame folder (else its video, ``--encode video``), linked to the folder or the video."""
    files = {"source": (source, source)} if source else {}
    for kind, path in outputs.items():
        if kind.endswith("_video"):
            files.setdefault(kind[:-len("_video")], (path, path))
        elif clip and os.path.isdir(path):
            shared = sum(other == path for other in outputs.values()) > 1
            files[kind] = (_first_frame(path, KINDS[kind].suffix if shared and kind in KINDS else ""), path)
        else:
            files[kind] = (path, path)
    return files


def _first_frame(folder: str, suffix: str) -> str | None:
    """The lowest-numbered frame file of one kind in a clip's frame folder (``000001{suffix}.png``), if any."""
    pattern = re.compile(rf"[0-9]{{{FRAME_DIGITS},}}{re.escape(suffix)}\.png")
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries if pattern.fullmatch(entry.name)]
    except OSError:
        return None
    return os.path.join(folder, min(names, key=lambda name: (len(name), name))) if names else None


def _picture(kind: str, path: str | None, link: str | None, out_dir: Path) -> str:
    """A thumbnail of ``path`` linked to ``link`` (its full-size file, a clip's folder or video), or a placeholder
    saying there is none."""
    exact = kind in KINDS and KINDS[kind].exact_colours
    small = thumbnail(Path(path), out_dir, exact_colours=exact) if path else None
    if small is None or link is None:
        return f'<figure class="none"><span>no {kind}</span><figcaption>{kind}</figcaption></figure>'
    return (f'<figure><a href="{_attr(_href(link, out_dir))}"><img loading="lazy" decoding="async" alt="{kind}" '
            f'src="{small}"></a><figcaption>{kind}</figcaption></figure>')


def _page(out_dir: Path, items: list[str], counts: Counter) -> str:
    title = html.escape(f"animeface-seg review: {shown(out_dir.resolve().name or out_dir.resolve())}")
    classes = " ".join(CLASS_NAMES)
    colours = ",".join(f'"#{r:02x}{g:02x}{b:02x}"' for r, g, b in CLASS_COLORS)
    options = "".join(f'<option value="{name}">{name}</option>' for name in CLASS_NAMES)
    summary = (f"{len(items)} input(s): {counts['ok']} ok, {counts['skipped']} skipped, "
               f"{counts['error']} failed")
    values = {"generator": GENERATOR, "title": title, "summary": summary, "classes": classes, "colours": colours,
              "class_options": options, "items": "\n".join(items)}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], _TEMPLATE)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{generator}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<script>document.documentElement.className = "js";</script>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #222; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ccc; padding: 8px 16px; z-index: 1; }
h1 { font-size: 18px; margin: 0 0 4px; }
.controls { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; }
.controls label { white-space: nowrap; }
input[type=number] { width: 5em; }
#items { display: grid; grid-template-columns: repeat(auto-fill, minmax(500px, 1fr)); align-items: start; gap: 12px;
  padding: 12px 16px; }
.js #items > .item:not(.shown) { display: none; }
.item { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
.item[data-status=error] { border-color: #d33; background: #fff5f5; }
.item[data-status=skipped] { border-color: #bbb; background: #f8f8f8; }
.name { font-size: 13px; font-weight: 600; margin: 0 0 6px; overflow-wrap: anywhere; }
.thumbs { display: flex; gap: 6px; }
figure { margin: 0; width: 150px; text-align: center; font-size: 11px; color: #666; }
figure img, figure.none span { display: block; width: 150px; height: 150px; object-fit: contain;
  background: repeating-conic-gradient(#eee 0 25%, #fff 0 50%) 0 0 / 16px 16px; }
figure.none span { line-height: 150px; color: #999; }
.error { color: #b00; margin: 4px 0; overflow-wrap: anywhere; }
.reason, .coverage { margin: 4px 0; font-size: 12px; }
.bar { display: flex; height: 10px; border: 1px solid #999; margin: 4px 0; }
.fractions { display: grid; grid-template-columns: repeat(4, auto 1fr); gap: 0 6px; margin: 0; font-size: 12px; }
.fractions dt::before { content: ""; display: inline-block; width: 9px; height: 9px; margin-right: 3px;
  border: 1px solid #888; background: var(--c); }
.fractions dd { margin: 0; }
.pager { display: flex; gap: 8px; align-items: center; padding: 0 16px 12px; }
</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p id="summary">{summary}</p>
<div class="controls">
<label>status <select id="status"><option value="all">all</option><option value="ok">ok</option>
<option value="skipped">skipped</option><option value="error">failed</option></select></label>
<label>show where <select id="metric"><option value="">(any)</option><option value="coverage">mask coverage</option>
{class_options}</select></label>
<select id="op"><option value="ge">&ge;</option><option value="le">&le;</option></select>
<label><input id="value" type="number" min="0" max="100" step="any" value="0"> %</label>
<label>name contains <input id="query" type="search"></label>
<label>sort by <select id="sort"><option value="name">name</option><option value="status">status</option>
<option value="coverage">mask coverage</option>{class_options}</select></label>
<select id="order"><option value="asc">ascending</option><option value="desc">descending</option></select>
<label>per page <select id="per"><option>50</option><option selected>100</option><option>500</option>
<option value="all">all</option></select></label>
</div>
</header>
<nav class="pager"><button id="prev">&larr; previous</button><span id="shown"></span>
<button id="next">next &rarr;</button></nav>
<main id="items" data-classes="{classes}">
{items}
</main>
<script>
"use strict";
(function () {
  const CLASSES = document.getElementById("items").dataset.classes.split(" ");
  const COLOURS = [{colours}];
  const ids = ["status", "metric", "op", "value", "query", "sort", "order", "per"];
  const control = Object.fromEntries(ids.map((id) => [id, document.getElementById(id)]));
  const items = Array.from(document.querySelectorAll("#items > .item"), (el, index) => ({
    el, index, name: el.dataset.input || "", status: el.dataset.status,
    coverage: el.dataset.coverage === undefined ? NaN : Number(el.dataset.coverage),
    fractions: el.dataset.fractions ? el.dataset.fractions.split(" ").map(Number) : null, drawn: false,
  }));
  let page = 0, shown = items;

  function metric(item, name) {
    if (name === "coverage") return item.coverage;
    const at = CLASSES.indexOf(name);
    return at < 0 || !item.fractions ? NaN : item.fractions[at];
  }
  function draw(item) {
    if (item.drawn || !item.fractions) return;
    item.drawn = true;
    const bar = item.el.querySelector(".bar"), list = item.el.querySelector(".fractions");
    item.fractions.forEach((value, at) => {
      const part = document.createElement("span");
      part.style.flex = String(value);
      part.style.background = COLOURS[at];
      part.title = CLASSES[at];
      bar.appendChild(part);
      const term = document.createElement("dt"), data = document.createElement("dd");
      term.textContent = CLASSES[at];
      term.style.setProperty("--c", COLOURS[at]);
      data.textContent = (100 * value).toFixed(1) + "%";
      list.append(term, data);
    });
  }
  const defaults = Object.fromEntries(ids.map((id) => [id, control[id].value]));
  function valid(id, value) {  // a value the control offers (a finite number for the bound, any text to search)
    const el = control[id];
    if (el.tagName === "SELECT") return Array.from(el.options).some((option) => option.value === value);
    return id !== "value" || (value.trim() !== "" && Number.isFinite(Number(value)));
  }
  function readHash() {  // the address may hold anything: what no control offers falls back to its default
    const state = new URLSearchParams(location.hash.slice(1));
    for (const id of ids) {
      const value = state.get(id);
      control[id].value = value !== null && valid(id, value) ? value : defaults[id];
    }
    const number = state.get("page") || "1";
    page = /^[1-9][0-9]{0,8}$/.test(number) ? Number(number) - 1 : 0;
  }
  function writeHash() {
    const state = new URLSearchParams();
    for (const id of ids) state.set(id, control[id].value);
    state.set("page", String(page + 1));
    history.replaceState(null, "", "#" + state.toString());
  }
  function apply() {
    const status = control.status.value, by = control.metric.value, query = control.query.value.toLowerCase();
    const limit = Number(control.value.value) / 100, atLeast = control.op.value === "ge";
    const chosen = items.filter((item) => {
      if (status !== "all" && item.status !== status) return false;
      if (query && !item.name.toLowerCase().includes(query)) return false;
      if (!by) return true;
      const value = metric(item, by);
      return !Number.isNaN(value) && (atLeast ? value >= limit : value <= limit);
    });
    const sort = control.sort.value, sign = control.order.value === "desc" ? -1 : 1;
    const key = sort === "name" ? (item) => item.name : sort === "status" ? (item) => item.status
      : (item) => metric(item, sort);
    chosen.sort((a, b) => {
      const x = key(a), y = key(b);
      const xMissing = typeof x === "number" && Number.isNaN(x), yMissing = typeof y === "number" && Number.isNaN(y);
      if (xMissing || yMissing) return xMissing === yMissing ? a.index - b.index : xMissing ? 1 : -1;
      const order = typeof x === "number" ? x - y : x < y ? -1 : x > y ? 1 : 0;
      return sign * order || a.index - b.index;
    });
    const per = control.per.value === "all" ? Math.max(chosen.length, 1) : Number(control.per.value);
    const pages = Math.max(1, Math.ceil(chosen.length / per));
    page = Math.min(page, pages - 1);
    const visible = chosen.slice(page * per, (page + 1) * per);
    for (const item of shown) item.el.classList.remove("shown");
    document.getElementById("items").prepend(...visible.map((item) => item.el));  // only the shown move
    for (const item of visible) { item.el.classList.add("shown"); draw(item); }
    shown = visible;
    document.getElementById("shown").textContent = chosen.length
      ? `${page * per + 1}-${page * per + visible.length} of ${chosen.length} shown (page ${page + 1} of ${pages})`
      : `none of ${items.length} match`;
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
  }
  function changed() { page = 0; writeHash(); apply(); }
  for (const id of ids) control[id].addEventListener(id === "query" || id === "value" ? "input" : "change", changed);
  document.getElementById("prev").addEventListener("click", () => { page -= 1; writeHash(); apply(); scrollTo(0, 0); });
  document.getElementById("next").addEventListener("click", () => { page += 1; writeHash(); apply(); scrollTo(0, 0); });
  addEventListener("hashchange", () => { readHash(); apply(); });
  readHash();
  apply();
})();
</script>
</body>
</html>
"""
