"""Output claims: every output path of a run keyed as OUT's file system compares names, and the clashes.

No output may be the same path as another output of any kind, sit where a folder must go for another
output, sit where a folder already is, lie below an existing file, or be the same file as an input. A
clip owns its frame folder: no other output, and no other clip's folder, may lie in it, be it, or hold
it. The files the run keeps in OUT itself (``run_files``) are claimed too. The up-front plan
(``plan.py``) and the watch mode claim through ``OutputClaims``.
"""

from __future__ import annotations

import stat
from pathlib import Path

from animeface_seg.batch.discovery import Identity, Job
from animeface_seg.batch.display import shown
from animeface_seg.batch.manifest import MANIFEST_NAME
from animeface_seg.batch.name_rule import NameRule
from animeface_seg.batch.naming import OutputKind
from animeface_seg.batch.spec import OutputSpec
from animeface_seg.batch.thumbnails import REVIEW_FOLDER

HINT_INSIDE_OUT = ("choose an output folder outside the inputs (OUT may lie inside an input folder, "
                    "but no input may lie inside OUT)")
_HINT_KINDS = ("--layout by-kind writes each kind into its own tree (OUT/maps, OUT/masks, ...), so names "
               "such as x.png and x_mask.png no longer meet")
_HINT_SAME = ("rename one file of each group; inputs from different folders keep apart when you pass their "
              "common parent folder (or name it with --root), or run them into different output folders")
HINT_FOLDER = "rename the file or the folder in the way, or choose another output folder"
_HINT_LONG = "shorten the input's name (or its folder's), or use --layout by-kind, which adds no suffix"
_HINT_FOLDING = "this file system does not tell names apart that differ only in letter case or Unicode spelling"
_HINT_RUN_FILES = ("rename the input (or its folder), or choose another output folder (or, for the review page's "
                   "files, drop --review)")

def run_files(spec: OutputSpec) -> dict[Path, str]:
    """The files the run itself keeps directly in OUT, which no output may take, each with what it is: the manifest,
    and with ``spec.review`` the review page and its thumbnails' folder."""
    files = {spec.out_dir / MANIFEST_NAME: "the manifest of OUT"}
    if spec.review:  # the page's module loads only for runs that write it
        from animeface_seg.batch.review import PAGE_NAME

        files[spec.out_dir / PAGE_NAME] = "the review page (--review)"
        files[spec.out_dir / REVIEW_FOLDER] = "the review page's thumbnails (--review)"
    return files


class OutputClaims:
    """Output paths keyed as OUT's file system compares them, the folders they need, clips' frame folders,
    and clashes between them.

    The up-front plan claims every job's outputs at once; a live source (the watch mode) claims each
    new file's outputs as it arrives, against every kind of every earlier output, by the same rule.
    """

    def __init__(self, spec: OutputSpec, names: NameRule = NameRule()) -> None:
        self.spec = spec
        self.out_dir = spec.out_dir
        self.video_files: set[Path] = set()
        """The claimed paths that are clips' encoded videos (``--encode``): files, beside the frame folders."""
        self.names = names
        self.files: dict[tuple[str, ...], tuple[Path, Job, OutputKind]] = {}
        self.folders: dict[tuple[str, ...], tuple[Path, Job, OutputKind]] = {}
        self.clips: dict[tuple[str, ...], tuple[Path, Job, OutputKind]] = {}
        """A clip's frame folder per kind: nothing else may go there or below."""
        self.clear: dict[Path, tuple[Job, OutputKind]] = {}
        self.conflicts: list[tuple[str, str]] = []
        self.run_files = {self.names.key(path.name): (path, what) for path, what in run_files(spec).items()}
        """The files the run keeps directly in OUT (``run_files``) by name: no output may be one or lie below one."""

    def claim(self, job: Job) -> list[tuple[str, str]]:
        """Claim every output of ``job`` (a clip's frame folders); the conflicts it makes (also kept in ``conflicts``)."""
        before = len(self.conflicts)
        if job.kind.streams_frames:
            folders = self.spec.frame_folders(job)
            for path, kind in {path: kind for kind, path in reversed(folders.items())}.items():
                self._claim_frames(path, job, kind)
            for kind, path in self.spec.videos(job).items():
                self.video_files.add(path)
                self._claim(path, job, kind)
        else:
            for kind, path in self.spec.outputs(job).items():
                self._claim(path, job, kind)
        return self.conflicts[before:]

    def _planned(self, job: Job) -> list[tuple[OutputKind, Path]]:
        """Every path ``job`` claims: a clip's frame folders and videos, a still's files."""
        if job.kind.streams_frames:
            return [*self.spec.frame_folders(job).items(), *self.spec.videos(job).items()]
        return list(self.spec.outputs(job).items())

    def is_folder(self, path: Path, job: Job) -> bool:
        """Whether a claimed ``path`` of ``job`` is a folder (a clip's frames) rather than a file."""
        return job.kind.streams_frames and path not in self.video_files

    def claimants(self, job: Job) -> set[Job]:
        """The jobs whose claims the outputs of ``job`` would meet: the same names, or a file, folder or clip
        in the way."""
        found = set()
        for _, path in self._planned(job):
            key = self._key(path)
            for claim in (self.files.get(key), self.folders.get(key), self.clips.get(key), self._clip_above(key),
                          *(self.files.get(key[:end]) for end in range(1, len(key)))):
                if claim is not None:
                    found.add(claim[1])
        return found

    def on_disk(self, job: Job) -> list[tuple[str, str]]:
        """Conflicts of the outputs of ``job`` with what is on disk now (a folder there, a file above)."""
        inputs = {job.identity} if job.identity is not None else set()
        return [conflict for kind, path in self._planned(job)
                for conflict in _on_disk(path, job, kind, inputs, self.is_folder(path, job))]

    def on_disk_all(self, inputs: set[Identity]) -> list[tuple[str, str]]:
        """Conflicts of every output claimed without a clash with what is on disk now, or with an input in ``inputs``."""
        return [conflict for path, (job, kind) in self.clear.items()
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


def _folder_in_the_way(at: Path, file: tuple[Path, Job, OutputKind],
                       folder: tuple[Path, Job, OutputKind]) -> tuple[str, str]:
    """The conflict of a claimed file at ``at`` where a folder must go for another claim."""
    return f"{shown(at)}: {_what(file)}, but a folder must go there for {_what(folder)}", HINT_FOLDER


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
        return [(f"{shown(blocker)} is a file, but a folder must go there for {mine}", HINT_FOLDER)]
    except OSError:  # not there yet (the usual case), or unreadable: the writer reports that one
        return []
    if folder:
        return [] if stat.S_ISDIR(st.st_mode) else [
            (f"{shown(path)} is a file, but a folder must go there for {mine}", HINT_FOLDER)]
    if stat.S_ISDIR(st.st_mode):
        return [(f"{shown(path)} is a folder, but {mine} goes there", HINT_FOLDER)]
    if (st.st_dev, st.st_ino) in inputs:
        return [(f"{shown(path)}: {mine} would overwrite an input (the same file)", HINT_INSIDE_OUT)]
    return []
