"""Which files to process, and each one's place under OUT (``Job.relative``; ``OutputSpec`` names its files).

INPUT arguments (files, folders, ``-`` for a list of paths on stdin) become ``Job``s, exactly one
per name: to process, to skip with a reason (the same file or folder reached by another name), or
failed with an error. A folder's images are mirrored under OUT; a file named directly lands at
``OUT/<stem>``, or at its place below ``root`` when one is given. Folders are walked without
recursion, each real folder once (so symlink loops end), and symbolic links are taken only after
every real entry, so an alias never takes the place of the file or folder it points to. The output
folder is never entered. Problems with the inputs as a whole raise ``InputError``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import BinaryIO, TextIO

from animeface_seg.batch.display import shown
from animeface_seg.batch.inputs import STILL, InputKind
from animeface_seg.batch.inputs import extensions as input_extensions

#: How many names an error message lists before summarising the rest.
_MAX_LISTED = 10

Identity = tuple[int, int]
"""``(st_dev, st_ino)``: the same file or folder, whatever name reached it."""


@dataclass(frozen=True)
class Job:
    """One input name: the path to open, its place under OUT (no extension), and why it fails or is skipped."""

    source: Path
    relative: PurePath
    error: str | None = None
    skip_reason: str | None = None
    identity: Identity | None = field(default=None, compare=False)
    """The file's ``(st_dev, st_ino)`` when it exists, to recognise it under other names."""
    kind: InputKind = STILL
    """What the input is (``batch/inputs``: a still, an animation, a video, ...), which every stage asks; the
    plan sets it from the file's header (``plan.recognise``), discovery never opens a file."""

    @property
    def runnable(self) -> bool:
        """Whether the job is to be processed (neither failed nor skipped already)."""
        return self.error is None and self.skip_reason is None


class InputError(Exception):
    """The inputs are unusable as a whole (nothing to process, clashing outputs); the message is for users."""


def read_path_list(stream: TextIO | BinaryIO, null: bool = False) -> list[str]:
    """Paths listed on ``stream`` (INPUT ``-``): one per line, or NUL-separated with ``null`` (``find -print0``).

    Bytes are read as they are and decoded like the file system's own names (``os.fsdecode``), so
    any name round-trips. Line lists skip blank lines and drop line endings; other spaces are kept,
    as names may start or end with them. NUL lists keep every byte and skip only empty entries.
    """
    source = getattr(stream, "buffer", stream)
    raw = source.read()
    if isinstance(raw, bytes):
        names = [os.fsdecode(part) for part in raw.split(b"\0" if null else b"\n")]
    else:
        names = raw.split("\0" if null else "\n")
    if null:
        return [name for name in names if name]
    return [name for name in (line.rstrip("\r") for line in names) if name.strip()]


def discover(inputs: Sequence[str], out_dir: Path, *, recursive: bool = True, stdin: TextIO | None = None,
             null: bool = False, root: Path | None = None, allow_empty: bool = False) -> list[Job]:
    """Expand INPUT arguments into jobs, one per name, in a stable order.

    Arguments keep their order, a folder's contents are sorted by name, symbolic links come last;
    ``-`` reads paths from ``stdin`` (NUL-separated with ``null``). With ``root``, files and folders
    named directly are placed under OUT by their path below ``root``, as a run over ``root`` would.
    """
    if any(arg == "" for arg in inputs):
        raise InputError("an INPUT argument is empty; name a file or folder (use . for the current folder)")
    args = _expand_stdin(inputs, stdin, null)
    walk = _Walk(out_dir, recursive, root)
    for arg in args:
        walk.argument(Path(arg))
    walk.follow_links()
    if not walk.jobs and not allow_empty:
        raise InputError(_nothing_found(inputs, args, out_dir, recursive))
    return walk.jobs


def job_under(root: Path, relative: PurePath) -> Job | None:
    """The job a walk of folder ``root`` makes for the file at ``relative`` below it; None if the walk skips the name.

    For sources that learn of files one at a time (a watched folder), so they follow the walk's rules.
    """
    if any(part.startswith(".") for part in relative.parts) or not _is_input_name(relative.name):
        return None
    return Job(root / relative, relative.parent / PurePath(relative.name).stem)


def walk(folder: Path, out_dir: Path, *, recursive: bool = True, relative: PurePath = PurePath()) -> list[Job]:
    """The jobs a walk of ``folder`` makes, their outputs under ``relative`` (for a subfolder of an input folder)."""
    try:
        st = folder.stat()
    except OSError:
        return []
    state = _Walk(out_dir, recursive, None)
    state._walk(folder, relative, st)
    state.follow_links()
    return state.jobs


def identity_of(path: Path) -> Identity | None:
    """``(st_dev, st_ino)`` of what ``path`` names (links followed), or ``None`` if it cannot be reached."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def folder_identity(out_dir: PurePath) -> Identity | None:
    """The identity of OUT, also when it is spelled through a folder that does not exist (``new/../out``);
    ``None`` for an OUT that is not on this machine's file system (object storage)."""
    if not isinstance(out_dir, Path):
        return None
    return identity_of(out_dir) or identity_of(Path(os.path.abspath(out_dir)))


def _expand_stdin(inputs: Sequence[str], stdin: TextIO | None, null: bool) -> list[str]:
    """The arguments with ``-`` replaced by the paths read from stdin (read once if repeated)."""
    args: list[str] = []
    read = False
    for arg in inputs:
        if arg != "-":
            args.append(arg)
        elif not read:
            args.extend(read_path_list(stdin if stdin is not None else sys.stdin, null))
            read = True
    return args


def _is_input_name(name: str) -> bool:
    """Whether a folder walk takes the file: its extension is one of an input kind's (``batch.inputs.extensions``)."""
    return PurePath(name).suffix.lower() in input_extensions()


class _Walk:
    """The state of one discovery: jobs so far, files and folders already taken, links still to follow."""

    def __init__(self, out_dir: Path, recursive: bool, root: Path | None) -> None:
        self.out_id = folder_identity(out_dir)
        self.recursive = recursive
        self.root = root
        self.jobs: list[Job] = []
        self.files: dict[Identity, Path] = {}
        self.folders: dict[Identity, Path] = {}
        self.links: deque[tuple[Path, PurePath]] = deque()

    # -- names given by the user ------------------------------------------------------------------
    def argument(self, path: Path) -> None:
        """One INPUT (or stdin) name: a file, a folder to walk, or a job carrying why it cannot be used."""
        try:
            st = path.stat()
        except FileNotFoundError:
            self.jobs.append(Job(path, PurePath(path.stem), "file not found"))
            return
        except (OSError, ValueError) as err:
            reason = getattr(err, "strerror", None) or err
            self.jobs.append(Job(path, PurePath(path.stem), f"cannot read file: {reason}"))
            return
        below = self._below_root(path, stat.S_ISDIR(st.st_mode))
        if below is None:
            self.jobs.append(Job(path, PurePath(path.stem), f"not inside --root {shown(self.root or '')}"))
        elif stat.S_ISDIR(st.st_mode):
            self._walk(path, below, st, argument=True)
        elif stat.S_ISREG(st.st_mode):
            self._file(path, below.parent / PurePath(path.name).stem, (st.st_dev, st.st_ino))
        else:
            self.jobs.append(Job(path, PurePath(path.stem), "not a regular file"))

    def _below_root(self, path: Path, folder: bool) -> PurePath | None:
        """Where a named path sits below ``root``, or ``None`` if outside it.

        Without a root a folder's contents are mirrored from its top and a file lands at OUT's top.
        """
        if self.root is None:
            return PurePath() if folder else PurePath(path.name)
        spelled = Path(os.path.abspath(path))
        real = Path(os.path.realpath(path.parent)) / path.name if path.name else Path(os.path.realpath(path))
        for base, candidate in ((Path(os.path.abspath(self.root)), spelled),
                                (Path(os.path.realpath(self.root)), real)):
            try:
                return PurePath(candidate.relative_to(base))
            except ValueError:
                continue
        return None

    # -- folders ----------------------------------------------------------------------------------
    def _walk(self, folder: Path, relative: PurePath, st: os.stat_result, argument: bool = False) -> None:
        """Every image below ``folder``, depth first in name order, with an explicit stack (no recursion)."""
        stack: list[tuple[Path, PurePath, Iterator[os.DirEntry[str]]]] = []
        self._enter(folder, relative, st, stack, argument)
        while stack:
            path, rel, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
            elif not entry.name.startswith("."):
                self._entry(path / entry.name, rel, entry, stack)

    def _enter(self, folder: Path, relative: PurePath, st: os.stat_result,
               stack: list[tuple[Path, PurePath, Iterator[os.DirEntry[str]]]], argument: bool = False) -> None:
        """Push ``folder``'s sorted entries, unless it is OUT (found inside an input) or was walked already."""
        key = (st.st_dev, st.st_ino)
        if key == self.out_id and not argument:
            return
        if key in self.folders:
            self.jobs.append(Job(folder, relative, skip_reason=f"same folder as {self.folders[key]}", identity=key))
            return
        self.folders[key] = folder
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as err:
            name = relative if relative.parts else PurePath(folder.name)
            self.jobs.append(Job(folder, name, f"cannot read folder: {err.strerror or err}", identity=key))
            return
        stack.append((folder, relative, iter(entries)))

    def _entry(self, path: Path, relative: PurePath, entry: os.DirEntry[str],
               stack: list[tuple[Path, PurePath, Iterator[os.DirEntry[str]]]]) -> None:
        """One name inside a folder being walked; links wait in ``links`` until every real entry is taken."""
        try:
            if entry.is_symlink():
                self.links.append((path, relative))
                return
            st = entry.stat(follow_symlinks=False)
        except OSError as err:
            if _is_input_name(entry.name):
                self.jobs.append(Job(path, relative / PurePath(entry.name).stem,
                                     f"cannot read file: {err.strerror or err}"))
            return
        if stat.S_ISDIR(st.st_mode):
            if self.recursive:
                self._enter(path, relative / entry.name, st, stack)
        elif not _is_input_name(entry.name):
            return
        elif stat.S_ISREG(st.st_mode):
            self._file(path, relative / PurePath(entry.name).stem, (st.st_dev, st.st_ino))
        else:  # reported, not silently skipped, and never opened (a FIFO would block)
            self.jobs.append(Job(path, relative / PurePath(entry.name).stem, "not a regular file"))

    def follow_links(self) -> None:
        """Take the symbolic links met while walking, after every real entry of every argument."""
        while self.links:
            path, relative = self.links.popleft()
            stem = relative / PurePath(path.name).stem
            try:
                st = path.stat()
            except OSError as err:
                if _is_input_name(path.name):
                    broken = isinstance(err, FileNotFoundError)
                    self.jobs.append(Job(path, stem, "broken symbolic link" if broken
                                         else f"cannot follow symbolic link: {err.strerror or err}"))
                continue
            if stat.S_ISDIR(st.st_mode):
                if self.recursive:
                    self._walk(path, relative / path.name, st)
            elif not _is_input_name(path.name):
                continue
            elif stat.S_ISREG(st.st_mode):
                self._file(path, stem, (st.st_dev, st.st_ino))
            else:
                self.jobs.append(Job(path, stem, "not a regular file"))

    # -- files ------------------------------------------------------------------------------------
    def _file(self, path: Path, relative: PurePath, key: Identity) -> None:
        """A file to process, or a skip if the same file was already taken under another name."""
        first = self.files.get(key)
        if first is not None:
            self.jobs.append(Job(path, relative, skip_reason=f"same file as {first}", identity=key))
            return
        self.files[key] = path
        self.jobs.append(Job(path, relative, identity=key))


def _nothing_found(inputs: Sequence[str], args: Sequence[str], out_dir: Path, recursive: bool) -> str:
    """The message for an empty job list: what was searched, for what, and what is skipped on purpose."""
    if not args:
        return "no inputs given" + (" (the path list read from stdin was empty)" if "-" in inputs else "")
    searched = ", ".join(shown(arg) for arg in args[:_MAX_LISTED])
    if len(args) > _MAX_LISTED:
        searched += f" and {len(args) - _MAX_LISTED} more"
    extensions = ", ".join(sorted(input_extensions()))
    depth = "; subfolders were not searched (--no-recursive)" if not recursive else ""
    return (
        f"no images found in: {searched} (looked for {extensions}, in any letter case; hidden files and"
        f" folders, and the output folder {shown(out_dir)}, are skipped{depth})"
    )
