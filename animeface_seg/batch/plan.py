"""The output plan of a run: every output path known and checked before any network loads.

The rule: no input may lie inside OUT (outputs written there could replace it; walking a folder
never enters OUT, so OUT may sit inside an input folder, never the other way round). No output
may be the same path as another output of any kind, sit where a folder must go for another
output, sit where a folder already is, lie below an existing file, or be the same file as an
input. A clip (a video, an animated image; ``mark_clips``) owns its frame folder: no other output,
and no other clip's folder, may lie in it, be it, or hold it. Output names are compared the way OUT's file system compares them: exactly where it
tells letter case and Unicode spellings apart, case-folded and NFC-normalised where it does not
(``NameRule.probe`` asks the file system). Inputs are compared by identity (device and inode),
which needs no name rule. A conflict stops the run before anything is written.
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

from animeface_seg.batch.discovery import InputError, Job, discover, folder_identity, identity_of
from animeface_seg.batch.display import shown
from animeface_seg.batch.naming import Layout, OutputKind
from animeface_seg.engine.frames import is_multi_frame

#: How many conflicts a message lists before summarising the rest.
_MAX_LISTED = 10

_HINT_INSIDE_OUT = ("choose an output folder outside the inputs (OUT may lie inside an input folder, "
                    "but no input may lie inside OUT)")
_HINT_KINDS = ("--layout by-kind writes each kind into its own tree (OUT/maps, OUT/masks, ...), so names "
               "such as x.png and x_mask.png no longer meet")
_HINT_SAME = ("rename one file of each group; inputs from different folders keep apart when you pass their "
              "common parent folder (or name it with --root), or run them into different output folders")
_HINT_FOLDER = "rename the file or the folder in the way, or choose another output folder"
_HINT_FOLDING = "this file system does not tell names apart that differ only in letter case or Unicode spelling"


@dataclass(frozen=True)
class NameRule:
    """How OUT's file system compares names: whether it folds letter case and Unicode spellings."""

    folds_case: bool = False
    folds_unicode: bool = False

    def key(self, name: str) -> str:
        """``name`` as the file system tells it apart: unchanged, or case-folded and NFC-normalised."""
        if self.folds_unicode or self.folds_case:
            name = unicodedata.normalize("NFC", name)
        if self.folds_case:
            name = unicodedata.normalize("NFC", name.casefold())
        return name

    @classmethod
    def probe(cls, out_dir: Path) -> NameRule:
        """Ask OUT's file system (or its nearest existing parent's) how it compares names.

        A temporary file whose name holds an upper-case letter and a composed ``é`` is created and
        looked up under its case-swapped and its decomposed (NFD) spelling, then removed. Where no
        file can be created, the platform's usual rule is assumed (folding on macOS and Windows).
        """
        folder = Path(os.path.abspath(out_dir))
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
        try:
            handle, name = tempfile.mkstemp(prefix=".animeface-seg-probe-A\u00e9-", dir=folder)
        except OSError:
            return cls(sys.platform in ("darwin", "win32"), sys.platform == "darwin")
        os.close(handle)
        try:
            probe = Path(name)
            return cls(_same(probe, probe.with_name(probe.name.swapcase())),
                       _same(probe, probe.with_name(unicodedata.normalize("NFD", probe.name))))
        finally:
            os.unlink(name)


def _same(path: Path, other: Path) -> bool:
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
              null: bool = False, root: Path | None = None, allow_empty: bool = False, clips: bool = True) -> Plan:
    """Discover the inputs and check every output path against the rule; raise ``PlanError`` on conflicts.

    ``allow_empty`` accepts folders with no image yet (a watched drop folder). With ``clips``, inputs
    holding many frames become clips (``mark_clips``); without, every input is a still (its first frame).
    """
    jobs = discover(inputs, out_dir, recursive=recursive, stdin=stdin, null=null, root=root,
                    allow_empty=allow_empty)
    if clips:
        jobs = mark_clips(jobs)
    plan = Plan(jobs, out_dir, tuple(kinds), Layout(layout), NameRule.probe(out_dir))
    conflicts = check(plan)
    if conflicts:
        raise PlanError(conflicts)
    return plan


def mark_clips(jobs: Sequence[Job]) -> list[Job]:
    """``jobs`` with ``clip`` set on each runnable one whose file holds many frames: videos by their
    extension, GIF/APNG/WebP/TIFF from their headers (``frames.is_multi_frame``); no pixel is decoded."""
    return [replace(job, clip=True) if job.runnable and is_multi_frame(job.source) else job for job in jobs]


def plan_remote(jobs: list[Job], out_dir: Path, kinds: Sequence[OutputKind], *,
                layout: Layout = Layout.MIRROR) -> Plan:
    """A plan for jobs found in object storage: outputs checked against each other, names compared
    exactly (object keys are case-sensitive); there is no local disk to check them against."""
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
        conflicts += _on_disk(path, job, kind, inputs)
    return conflicts


class _Outputs:
    """Output paths keyed as the file system compares them, the folders they need, and clashes between them."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, ...], tuple[Path, Job, OutputKind]] = {}
        self.folders: dict[tuple[str, ...], tuple[Path, Job, OutputKind]] = {}
        self.clips: dict[tuple[str, ...], tuple[Path, Job, OutputKind]] = {}
        """Frame folders of clips, which nothing else may share."""
        self.clear: dict[Path, tuple[Job, OutputKind]] = {}
        self.conflicts: list[tuple[str, str]] = []


def _planned_outputs(plan: Plan) -> _Outputs:
    outputs = _Outputs()
    for job in plan.jobs:
        if not job.runnable:
            continue
        if job.clip:
            folders = job.frame_folders(plan.out_dir, plan.kinds, plan.layout)
            for path, kind in {path: kind for kind, path in reversed(folders.items())}.items():
                _claim_frames(outputs, plan, path, job, kind)
            continue
        for kind, path in job.outputs(plan.out_dir, plan.kinds, plan.layout).items():
            _claim(outputs, plan, path, job, kind)
    return outputs


def _key(plan: Plan, path: Path) -> tuple[str, ...]:
    """``path`` below OUT as the file system tells names apart."""
    return tuple(plan.names.key(part) for part in path.parts[len(plan.out_dir.parts):])


def _clip_above(outputs: _Outputs, key: tuple[str, ...]) -> tuple[Path, Job, OutputKind] | None:
    """The clip whose frame folder holds ``key``, if any."""
    return next((outputs.clips[key[:i]] for i in range(1, len(key)) if key[:i] in outputs.clips), None)


def _claim_frames(outputs: _Outputs, plan: Plan, path: Path, job: Job, kind: OutputKind) -> None:
    """Record a clip's frame folder, or the conflict it makes with an output, folder or clip claimed before."""
    key = _key(plan, path)
    mine = (path, job, kind)
    if key in outputs.files:
        other = outputs.files[key]
        outputs.conflicts.append((f"{shown(path)}: {_what(other)}, but a folder must go there for "
                                  f"{_what(mine)}", _HINT_FOLDER))
    elif key in outputs.clips:
        other = outputs.clips[key]
        hint = _HINT_SAME if other[0] == path else _HINT_FOLDING
        outputs.conflicts.append((f"{shown(path)}: {_what(other)} and {_what(mine)}", hint))
    elif key in outputs.folders or _clip_above(outputs, key):
        other = outputs.folders.get(key) or _clip_above(outputs, key)
        inner, outer = (other, mine) if key in outputs.folders else (mine, other)
        outputs.conflicts.append((_inside(inner, outer), _HINT_SAME))
    else:
        outputs.clips[key] = mine
        _hold_parents(outputs, key, mine)
        outputs.clear[path] = (job, kind)


def _inside(inner: tuple[Path, Job, OutputKind], clip: tuple[Path, Job, OutputKind]) -> str:
    return f"{shown(inner[0])}: {_what(inner)}, inside {shown(clip[0])}, which holds {_what(clip)}"


def _claim(outputs: _Outputs, plan: Plan, path: Path, job: Job, kind: OutputKind) -> None:
    """Record one output, or the conflict it makes with an output or folder claimed before."""
    key = _key(plan, path)
    mine = (path, job, kind)
    if key in outputs.clips:
        outputs.conflicts.append((f"{shown(path)}: {_what(mine)}, but a folder must go there for "
                                  f"{_what(outputs.clips[key])}", _HINT_FOLDER))
        return
    clip = _clip_above(outputs, key)
    if clip:
        outputs.conflicts.append((_inside(mine, clip), _HINT_SAME))
        return
    if key in outputs.files:
        other = outputs.files[key]
        hint = _HINT_KINDS if other[2] != kind else _HINT_SAME
        if other[0] != path:
            hint = _HINT_FOLDING
        outputs.conflicts.append((f"{shown(path)}: {_what(other)} and {_what(mine)}", hint))
        return
    if key in outputs.folders:
        other = outputs.folders[key]
        outputs.conflicts.append((f"{shown(path)}: {_what(mine)}, but a folder must go there for "
                                  f"{_what(other)}", _HINT_FOLDER))
        return
    outputs.files[key] = mine
    _hold_parents(outputs, key, mine)
    outputs.clear[path] = (job, kind)


def _hold_parents(outputs: _Outputs, key: tuple[str, ...], mine: tuple[Path, Job, OutputKind]) -> None:
    """Record the folders above ``key`` as needed by ``mine``, or the conflict with a file claimed there."""
    parent = key[:-1]
    while parent and parent not in outputs.folders:
        outputs.folders[parent] = mine
        if parent in outputs.files:
            other = outputs.files[parent]
            outputs.conflicts.append((f"{shown(other[0])}: {_what(other)}, but a folder must go there for "
                                      f"{_what(mine)}", _HINT_FOLDER))
        parent = parent[:-1]


def _what(claim: tuple[Path, Job, OutputKind]) -> str:
    if claim[1].clip:
        return f"the frames of {shown(claim[1].source)}"
    return f"the {claim[2]} of {shown(claim[1].source)}"


def _on_disk(path: Path, job: Job, kind: OutputKind, inputs: set) -> list[tuple[str, str]]:
    """Conflicts of one output (a clip's frame folder) with what is already on disk: a folder (a file)
    there, a file above, an input."""
    mine = _what((path, job, kind))
    try:
        st = path.stat()
    except NotADirectoryError:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        return [(f"{shown(blocker)} is a file, but a folder must go there for {mine}", _HINT_FOLDER)]
    except OSError:  # not there yet (the usual case), or unreadable: the writer reports that one
        return []
    if job.clip:
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
