"""The output plan of a run: every output path known and checked before any network loads.

The rule: no input may lie inside OUT (outputs written there could replace it; walking a folder
never enters OUT, so OUT may sit inside an input folder, never the other way round). No output may
be the same path as another output of any kind, sit where a folder must go for another output, sit
where a folder already is, lie below an existing file, or be the same file as an input. A clip (a
video, an animated image; ``recognise``) owns its frame folder: no other output, and no other
clip's folder, may lie in it, be it, or hold it. The files the run keeps in OUT itself (the
manifest; with ``--review`` the page and its thumbnails' folder, ``claims.run_files``) are planned too: no
output may be one of them or lie below one. Output names are compared the way OUT's file system
compares them: exactly where it tells letter case and Unicode spellings apart, case-folded and
NFC-normalised where it does not (``NameRule.probe`` asks the file system). Inputs are compared by
identity (device and inode), which needs no name rule. A conflict stops the run before anything is
written. The claims themselves are ``claims.py``, the name rule ``name_rule.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from animeface_seg.batch.claims import HINT_FOLDER, HINT_INSIDE_OUT, OutputClaims
from animeface_seg.batch import inputs
from animeface_seg.batch.discovery import InputError, Job, discover, folder_identity, identity_of
from animeface_seg.batch.display import shown
from animeface_seg.batch.name_rule import NameRule
from animeface_seg.batch.spec import OutputSpec
from animeface_seg.engine.errors import ImageDecodeError

#: How many conflicts a message lists before summarising the rest.
_MAX_LISTED = 10


@dataclass(frozen=True)
class Plan:
    """The checked plan: every job, and the output spec saying where its outputs go."""

    jobs: list[Job]
    spec: OutputSpec
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


def make_plan(inputs: Sequence[str], spec: OutputSpec, *, recursive: bool = True, stdin: TextIO | None = None,
              null: bool = False, root: Path | None = None, allow_empty: bool = False) -> Plan:
    """Discover the inputs and check every output path of ``spec`` against the rule; raise ``PlanError`` on conflicts.

    ``allow_empty`` accepts folders with no image yet (a watched drop folder). Every input's header is read
    (``recognise``): inputs holding many frames become clips, unless ``spec.first_frame`` takes every input as a
    still (its first frame). Clips' encoded videos and the review page, when ``spec`` asks for them, are checked too.
    """
    jobs = discover(inputs, spec.out_dir, recursive=recursive, stdin=stdin, null=null, root=root,
                    allow_empty=allow_empty)
    jobs = recognise(jobs, not spec.first_frame)
    plan = Plan(jobs, spec, NameRule.probe(spec.out_dir))
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


def plan_remote(jobs: list[Job], spec: OutputSpec) -> Plan:
    """A plan for jobs found in object storage: outputs checked against each other, names compared
    exactly (object keys are case-sensitive); there is no local disk to check them against, and no header
    is read before the cluster starts, so the jobs' kinds come from their names (``recognise_names``)."""
    plan = Plan(jobs, spec)
    conflicts = _planned_outputs(plan).conflicts
    if conflicts:
        raise PlanError(conflicts)
    return plan


def check(plan: Plan) -> list[tuple[str, str]]:
    """Every conflict of the plan as (line naming both sides, hint)."""
    out_dir = plan.spec.out_dir
    conflicts = _inputs_inside_out(plan.jobs, out_dir)
    try:
        os.stat(out_dir)
    except NotADirectoryError:
        return conflicts + [(f"the output folder {shown(out_dir)} lies below a file", HINT_FOLDER)]
    except OSError:
        pass
    planned = _planned_outputs(plan)
    return conflicts + planned.conflicts + planned.on_disk_all({job.identity for job in plan.jobs
                                                                if job.identity is not None})


def _planned_outputs(plan: Plan) -> OutputClaims:
    outputs = OutputClaims(plan.spec, plan.names)
    for job in plan.jobs:
        if job.runnable:
            outputs.claim(job)
    return outputs


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
                              "written there could replace it", HINT_INSIDE_OUT))
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
