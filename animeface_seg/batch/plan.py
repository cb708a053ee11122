"""The output plan of a run: every output path known and checked before any network loads.

The rule: no input may lie inside OUT (outputs written there could replace it; walking a folder
never enters OUT, so OUT may sit inside an input folder, never the other way round). No output may
be the same path as another output of any kind, sit where a folder must go for another output, sit
where a folder already is, lie below an existing file, or be the same file as an input. A clip (a
video, an animated image; ``recognise``) owns its frame folder: no other output, and no other
clip's folder, may lie in it, be it, or hold it. The files the run keeps in OUT itself (the
manifest; with ``--review`` the page and its thumbnails' folder, ``run_files``) are planned too: no
output may be one of them or lie below one. Output names are compared the way OUT's file system
compares them: exactly where it tells letter case and Unicode spellings apart, case-folded and
NFC-normalised where it does not (``NameRule.probe`` asks the file system). Inputs are compared by
identity (device and inode), which needs no name rule. A conflict stops the run before anything is
written.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from animeface_seg.batch import inputs
from animeface_seg.batch.discovery import InputError, Job, discover, folder_identity, identity_of
from animeface_seg.batch.display import shown
from animeface_seg.batch.manifest import MANIFEST_NAME
from animeface_seg.batch.naming import Layout, OutputKind, clip_video_paths
from animeface_seg.batch.thumbnails import REVIEW_FOLDER
from animeface_seg.engine.errors import ImageDecodeError

#: How many conflicts a message lists before summarising the rest.
_MAX_LISTED = 10

_HINT_INSIDE_OUT = ("choose an output folder outside the inputs (OUT may lie inside an input folder, "
                    "but no input may lie inside OUT)")
_HINT_KINDS = ("--layout by-kind writes each kind into its own tree (OUT/maps, OUT/masks, ...), so names "
               "such as x.png and x_mask.png no longer meet")
_HINT_SAME = ("rename one file of each group; inputs from different folders keep apart when you pass their "
              "common parent folder (or name it with --root), or run them into different output folders")
_HINT_FOLDER = "rename the file or the folder in the way, or choose another output folder"
_HINT_LONG = "shorten the input's name (or its folder's), or use --layout by-kind, which adds no suffix"
_HINT_FOLDING = "this file system does not tell names apart that differ only in letter case or Unicode spelling"
_HINT_RUN_FILES = ("rename the input (or its folder), or choose another output folder (or, for the review page's "
                   "files, drop --review)")


@dataclass(frozen=True)
class NameRule:
    """How OUT's file system compares names (whether it folds letter case and Unicode spellings),
    and the longest name it holds, in bytes."""

    folds_case: bool = False
    folds_unicode: bool = False
    name_max: int = 255

    def key(self, name: str) -> str:
        """``name`` as the file system tells it apart: unchanged, or case-folded and NFC-normalised."""
        if self.folds_unicode or self.folds_case:
            name = unicodedata.normalize("NFC", name)
        if self.folds_case:
            name = unicodedata.normalize("NFC", name.casefold())
        return name

    def too_long(self, name: str) -> bool:
        """Whether the file system cannot hold a file of this name."""
        return len(os.fsencode(name)) > self.name_max

    @classmethod
    def probe(cls, out_dir: Path) -> NameRule:
        """Ask OUT's file system (or its nearest existing parent's) how it compares names and how long they may be.

        A temporary file whose name holds an upper-case letter and a composed ``é`` (as UTF-8 bytes, so
        any file-system encoding works) is created and looked up under its case-swapped and its
        decomposed (NFD) spelling, then removed. Where no file can be created, the platform's usual
        rule is assumed (folding on macOS and Windows).
        """
        folder = Path(os.path.abspath(out_dir))
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
        name_max = _name_max(folder)
        try:
            handle, name = tempfile.mkstemp(prefix=b".animeface-seg-probe-A\xc3\xa9-", dir=os.fsencode(folder))
        except OSError:
            return cls(sys.platform in ("darwin", "win32"), sys.platform == "darwin", name_max)
        os.close(handle)
        try:
            head, tail = os.path.split(name)
            decomposed = tail.replace(b"\xc3\xa9", b"e\xcc\x81")
            return cls(_same(name, os.path.join(head, tail.swapcase())), _same(name, os.path.join(head, decomposed)),
                       name_max)
        finally:
            os.unlink(name)


def _name_max(folder: Path) -> int:
    """The longest file name the file system at ``folder`` holds, in bytes (255 where it does not say)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _same(path: bytes, other: bytes) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


@dataclass(frozen=True)
class Plan:
    """The checked plan: every job, and where its outputs go."""

    jobs: list[Job]
    out_dir: Path
    kinds: tuple[OutputKind, ...]
    layout: Layout = Layout.MIRROR
    names: NameRule = NameRule()
    videos: bool = False
    """Whether clips are also encoded as videos (their files are planned too)."""
    review: bool = False
    """Whether the run writes the review page (its files are planned too)."""


class PlanError(InputError):
    """The plan has conflicts; ``conflicts`` lists them, the message names both sides of each and the ways out."""

    def __init__(self, conflicts: Sequence[tuple[str, str]]) -> None:
        self.conflicts = [text for text, _ in conflicts]
        lines = [f"  {text}" for text in self.conflicts[:_MAX_LISTED]]
        if len(self.conflicts) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.conflicts) - _MAX_LISTED} more")
        hints = list(dict.fromkeys(hint for _, hint in conflicts))
        super().__init__("the output plan has conflicts, so nothing was written:\n" + "\n".join(lines)
                         + "".join(f"\n{hint}" for hint in hints))


def make_plan(inputs: Sequence[str], out_dir: Path, kinds: Sequence[OutputKind], *,
              layout: Layout = Layout.MIRROR, recursive: bool = True, stdin: TextIO | None = None,
              null: bool = False, root: Path | None = None, allow_empty: bool = False, clips: bool = True,
              videos: bool = False, review: bool = False) -> Plan:
    """Discover the inputs and check every output path against the rule; raise ``PlanError`` on conflicts.

    ``allow_empty`` accepts folders with no image yet (a watched drop folder). Every input's header is read
    (``recognise``): with ``clips``, inputs holding many frames become clips; without, every input is a still
    (its first frame). ``videos``: clips are also encoded as videos, whose files are checked too; ``review``: so
    is the review page.
    """
    jobs = discover(inputs, out_dir, recursive=recursive, stdin=stdin, null=null, root=root,
                    allow_empty=allow_empty)
    jobs = recognise(jobs, clips)
    plan = Plan(jobs, out_dir, tuple(kinds), Layout(layout), NameRule.probe(out_dir), videos, review)
    conflicts = check(plan)
    if conflicts:
        raise PlanError(conflicts)
    return plan


def recognise(jobs: Sequence[Job], clips: bool = True) -> list[Job]:
    """``jobs`` with each runnable file's header read once, whatever its name: its ``kind`` (``inputs.recognise``;
    with ``clips``, videos and animations are clips, without, one picture each), or the ``error`` of a file
    that is empty, unreadable or of no kind, so it fails before any network loads. No pixel is decoded."""
    return [_recognised(job, clips) if job.runnable else job for job in jobs]


def _recognised(job: Job, clips: bool) -> Job:
    try:
        kind = inputs.recognise(job.source, clips)
    except ImageDecodeError as exc:
        return replace(job, error=str(exc))
    return job if kind is job.kind else replace(job, kind=kind)


def recognise_names(jobs: Sequence[Job], clips: bool = True) -> list[Job]:
    """``jobs`` found in object storage, each with the kind its name gives (``inputs.by_name``)."""
    return [replace(job, kind=inputs.by_name(str(job.source), clips)) for job in jobs]


def run_files(out_dir: Path, review: bool = False) -> dict[Path, str]:
    """The files the run itself keeps directly in OUT, which no output may take, each with what it is: the manifest,
    and with ``review`` the review page and its thumbnails' folder."""
    files = {out_dir / MANIFEST_NAME: "the manifest of OUT"}
    if review:  # the page's module loads only for runs that write it
        from animeface_seg.batch.review import PAGE_NAME

        files[out_dir / PAGE_NAME] = "the review page (--review)"
        files[out_dir / REVIEW_FOLDER] = "the review page's thumbnails (--review)"
    return files


def plan_remote(jobs: list[Job], out_dir: Path, kinds: Sequence[OutputKind], *,
                layout: Layout = Layout.MIRROR) -> Plan:
    """A plan for jobs found in object storage: outputs checked against each other, names compared
    exactly (object keys are case-sensitive); there is no local disk to check them against, and no header
    is read before the cluster starts, so the jobs' kinds come from their names (``recognise_names``)."""
    plan = Plan(jobs, out_dir, tuple(kinds), Layout(layout))
    conflicts = _planned_outputs(plan).conflicts
    if conflicts:
        raise PlanError(conflicts)
    return plan


def check(plan: Plan) -> list[tuple[str, str]]:
    """Every conflict of the plan as (line naming both sides, hint)."""
    conflicts = _inputs_inside_out(plan.jobs, plan.out_dir)
    try:
        os.stat(plan.out_dir)
    except NotADirectoryError:
        return conflicts + [(f"the output folder {shown(plan.out_dir)} lies below a file", _HINT_FOLDER)]
    except OSError:
        pass
    planned = _planned_outputs(plan)
    conflicts += planned.conflicts
    inputs = {job.identity for job in plan.jobs if job.identity is not None}
    for path, (job, kind) in planned.clear.items():
        conflicts += _on_disk(path, job, kind, inputs, planned.is_folder(path, job))
    return conflicts


class OutputClaims:
    """Output paths keyed as OUT's file system compares them, the folders they need, clips' frame folders,
    and clashes between them.

    The up-front plan claims every job's outputs at once; a live source (the watch mode) claims each
    new file's outputs as it arrives, against every kind of every earlier output, by the same rule.
    """

    def __init__(self, out_dir: Path, kinds: Sequence[OutputKind], layout: Layout = Layout.MIRROR,
                 names: NameRule = NameRule(), videos: bool = False, review: bool = False) -> None:
        self.out_dir = out_dir
        self.videos = videos
        """Whether clips are also encoded as videos (``--encode``): their video files are claimed too."""
        self.video_files: set[Path] = set()
        self.kinds = tuple(kinds)
        self.layout = Layout(layout)
        self.names = names
        self.files: dict[tuple[str, ...], tuple[Path, Job, OutputKind]] = {}
        self.folders: dict[tuple[str, ...], tuple[Path, Job, OutputKind]] = {}
        self.clips: dict[tuple[str, ...], tuple[Path, Job, OutputKind]] = {}
        """A clip's frame folder per kind: nothing else may go there or below."""
        self.clear: dict[Path, tuple[Job, OutputKind]] = {}
        self.conflicts: list[tuple[str, str]] = []
        self.run_files = {self.names.key(path.name): (path, what)
                          for path, what in run_files(out_dir, review).items()}
        """The files the run keeps directly in OUT (``run_files``) by name: no output may be one or lie below one."""

    def claim(self, job: Job) -> list[tuple[str, str]]:
        """Claim every output of ``job`` (a clip's frame folders); the conflicts it makes (also kept in ``conflicts``)."""
        before = len(self.conflicts)
        if job.kind.streams_frames:
            folders = job.frame_folders(self.out_dir, self.kinds, self.layout)
            for path, kind in {path: kind for kind, path in reversed(folders.items())}.items():
                self._claim_frames(path, job, kind)
            for kind, path in self._videos(job).items():
                self.video_files.add(path)
                self._claim(path, job, kind)
        else:
            for kind, path in job.outputs(self.out_dir, self.kinds, self.layout).items():
                self._claim(path, job, kind)
        return self.conflicts[before:]

    def _videos(self, job: Job) -> dict[OutputKind, Path]:
        return clip_video_paths(self.out_dir, job.relative, self.kinds, self.layout) if self.videos else {}

    def is_folder(self, path: Path, job: Job) -> bool:
        """Whether a claimed ``path`` of ``job`` is a folder (a clip's frames) rather than a file."""
        return job.kind.streams_frames and path not in self.video_files

    def _paths(self, job: Job) -> list[Path]:
        if job.kind.streams_frames:
            return [*job.frame_folders(self.out_dir, self.kinds, self.layout).values(), *self._videos(job).values()]
        return list(job.outputs(self.out_dir, self.kinds, self.layout).values())

    def claimants(self, job: Job) -> set[Job]:
        """The jobs whose claims the outputs of ``job`` would meet: the same names, or a file, folder or clip
        in the way."""
        found = set()
        for path in self._paths(job):
            key = self._key(path)
            for claim in (self.files.get(key), self.folders.get(key), self.clips.get(key), self._clip_above(key),
                          *(self.files.get(key[:end]) for end in range(1, len(key)))):
                if claim is not None:
                    found.add(claim[1])
        return found

    def on_disk(self, job: Job) -> list[tuple[str, str]]:
        """Conflicts of the outputs of ``job`` with what is on disk now (a folder there, a file above)."""
        inputs = {job.identity} if job.identity is not None else set()
        clip = job.kind.streams_frames
        kinds = job.frame_folders if clip else job.outputs
        paths = [*kinds(self.out_dir, self.kinds, self.layout).items(), *(self._videos(job).items() if clip else ())]
        return [conflict for kind, path in paths
                for conflict in _on_disk(path, job, kind, inputs, self.is_folder(path, job))]

    def release(self, job: Job) -> None:
        """Give up every claim of ``job`` (an input that is gone), so another file may take its names."""
        for table in (self.files, self.folders, self.clips):
            for key in [key for key, claim in table.items() if claim[1] == job]:
                del table[key]
        for path in [path for path, claim in self.clear.items() if claim[0] == job]:
            del self.clear[path]

    def _key(self, path: Path) -> tuple[str, ...]:
        """``path`` below OUT as the file system tells names apart."""
        return tuple(self.names.key(part) for part in path.parts[len(self.out_dir.parts):])

    def _too_long(self, path: Path, job: Job, kind: OutputKind) -> bool:
        """Record the conflict of a name the output file system cannot hold, if ``path`` has one."""
        long = [part for part in path.parts[len(self.out_dir.parts):] if self.names.too_long(part)]
        if long:
            self.conflicts.append((f"{shown(path)}: {_what((path, job, kind))} needs the name {shown(long[0])}, "
                                   f"longer than the {self.names.name_max} bytes the output file system holds",
                                   _HINT_LONG))
        return bool(long)

    def _takes_run_file(self, key: tuple[str, ...], path: Path, job: Job, kind: OutputKind) -> bool:
        """Record the conflict of an output (``key``: ``path`` as ``_key`` gives it) that is, or lies below, a file
        the run keeps in OUT, if it is one."""
        taken = self.run_files.get(key[0]) if key else None
        if taken is not None:
            mine = f"{shown(path)}: {_what((path, job, kind))}"
            text = (f"{mine}, but {taken[1]} goes there" if len(key) == 1
                    else f"{mine}, inside {shown(taken[0])}, where {taken[1]} goes")
            self.conflicts.append((text, _HINT_RUN_FILES))
        return taken is not None

    def _clip_above(self, key: tuple[str, ...]) -> tuple[Path, Job, OutputKind] | None:
        """The clip whose frame folder holds ``key``, if any."""
        return next((self.clips[key[:i]] for i in range(1, len(key)) if key[:i] in self.clips), None)

    def _claim_frames(self, path: Path, job: Job, kind: OutputKind) -> None:
        """Record a clip's frame folder, or the conflict it makes with an output, folder or clip claimed before."""
        key = self._key(path)
        if self._too_long(path, job, kind) or self._takes_run_file(key, path, job, kind):
            return
        mine = (path, job, kind)
        if key in self.files:
            other = self.files[key]
            self.conflicts.append(_folder_in_the_way(path, other, mine))
        elif key in self.clips:
            other = self.clips[key]
            hint = _HINT_SAME if other[0] == path else _HINT_FOLDING
            self.conflicts.append((f"{shown(path)}: {_what(other)} and {_what(mine)}", hint))
        elif key in self.folders or self._clip_above(key):
            other = self.folders.get(key) or self._clip_above(key)
            inner, outer = (other, mine) if key in self.folders else (mine, other)
            self.conflicts.append((_inside(inner, outer), _HINT_SAME))
        else:
            self.clips[key] = mine
            self._hold_parents(key, mine)
            self.clear[path] = (job, kind)

    def _claim(self, path: Path, job: Job, kind: OutputKind) -> None:
        """Record one output, or the conflict it makes with an output, folder or clip claimed before."""
        key = self._key(path)
        if self._too_long(path, job, kind) or self._takes_run_file(key, path, job, kind):
            return
        mine = (path, job, kind)
        if key in self.clips:
            self.conflicts.append(_folder_in_the_way(path, mine, self.clips[key]))
            return
        clip = self._clip_above(key)
        if clip:
            self.conflicts.append((_inside(mine, clip), _HINT_SAME))
            return
        if key in self.files:
            other = self.files[key]
            hint = _HINT_KINDS if other[2] != kind else _HINT_SAME
            if other[0] != path:
                hint = _HINT_FOLDING
            self.conflicts.append((f"{shown(path)}: {_what(other)} and {_what(mine)}", hint))
            return
        if key in self.folders:
            other = self.folders[key]
            self.conflicts.append(_folder_in_the_way(path, mine, other))
            return
        self.files[key] = mine
        self._hold_parents(key, mine)
        self.clear[path] = (job, kind)

    def _hold_parents(self, key: tuple[str, ...], mine: tuple[Path, Job, OutputKind]) -> None:
        """Record the folders above ``key`` as needed by ``mine``, or the conflict with a file claimed there."""
        parent = key[:-1]
        while parent and parent not in self.folders:
            self.folders[parent] = mine
            if parent in self.files:
                other = self.files[parent]
                self.conflicts.append(_folder_in_the_way(other[0], other, mine))
            parent = parent[:-1]


def _planned_outputs(plan: Plan) -> OutputClaims:
    outputs = OutputClaims(plan.out_dir, plan.kinds, plan.layout, plan.names, plan.videos, plan.review)
    for job in plan.jobs:
        if job.runnable:
            outputs.claim(job)
    return outputs


def _folder_in_the_way(at: Path, file: tuple[Path, Job, OutputKind],
                       folder: tuple[Path, Job, OutputKind]) -> tuple[str, str]:
    """The conflict of a claimed file at ``at`` where a folder must go for another claim."""
    return f"{shown(at)}: {_what(file)}, but a folder must go there for {_what(folder)}", _HINT_FOLDER


def _inside(inner: tuple[Path, Job, OutputKind], clip: tuple[Path, Job, OutputKind]) -> str:
    return f"{shown(inner[0])}: {_what(inner)}, inside {shown(clip[0])}, which holds {_what(clip)}"


def _what(claim: tuple[Path, Job, OutputKind]) -> str:
    if claim[1].kind.streams_frames:
        return f"the frames of {shown(claim[1].source)}"
    return f"the {claim[2]} of {shown(claim[1].source)}"


def _on_disk(path: Path, job: Job, kind: OutputKind, inputs: set, folder: bool = False) -> list[tuple[str, str]]:
    """Conflicts of one output (with ``folder``, a clip's frame folder) with what is already on disk: a folder
    (a file) there, a file above, an input."""
    mine = _what((path, job, kind))
    try:
        st = path.stat()
    except NotADirectoryError:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        return [(f"{shown(blocker)} is a file, but a folder must go there for {mine}", _HINT_FOLDER)]
    except OSError:  # not there yet (the usual case), or unreadable: the writer reports that one
        return []
    if folder:
        return [] if stat.S_ISDIR(st.st_mode) else [
            (f"{shown(path)} is a file, but a folder must go there for {mine}", _HINT_FOLDER)]
    if stat.S_ISDIR(st.st_mode):
        return [(f"{shown(path)} is a folder, but {mine} goes there", _HINT_FOLDER)]
    if (st.st_dev, st.st_ino) in inputs:
        return [(f"{shown(path)}: {mine} would overwrite an input (the same file)", _HINT_INSIDE_OUT)]
    return []


def _inputs_inside_out(jobs: Sequence[Job], out_dir: Path) -> list[tuple[str, str]]:
    """Inputs whose real location is OUT or below it, found by identity so any spelling of OUT is caught."""
    out_id = folder_identity(out_dir)
    if out_id is None:
        return []
    inside: dict[str, bool] = {}
    real_folders: dict[Path, Path] = {}
    conflicts = []
    for job in jobs:
        if job.identity is None:
            continue
        if job.source.is_symlink():
            folder = Path(os.path.realpath(job.source)).parent
        else:
            folder = real_folders.get(job.source.parent) or real_folders.setdefault(
                job.source.parent, Path(os.path.realpath(job.source.parent)))
        if job.identity == out_id or _below(folder, out_id, inside):
            conflicts.append((f"{shown(job.source)} is inside the output folder {shown(out_dir)}; outputs "
                              "written there could replace it", _HINT_INSIDE_OUT))
    return conflicts


def _below(folder: Path, target: tuple[int, int], memo: dict[str, bool]) -> bool:
    """Whether ``folder`` (a real path) is ``target`` or lies below it; answers are remembered per folder."""
    visited = []
    answer = False
    text = str(folder)
    while True:
        if text in memo:
            answer = memo[text]
            break
        visited.append(text)
        if identity_of(Path(text)) == target:
            answer = True
            break
        parent = os.path.dirname(text)
        if parent == text:
            break
        text = parent
    for text in visited:
        memo[text] = answer
    return answer
