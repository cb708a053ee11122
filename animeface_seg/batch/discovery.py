"""Which files to process, and where each one's outputs go under OUT.

INPUT arguments (files, folders, ``-`` for a list of paths on stdin) become ``Job``s; a folder's
layout is mirrored under OUT, one PNG per output kind. Problems with a single input become a
job carrying an error, so it fails alone; problems with the inputs as a whole raise ``InputError``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TextIO

from animeface_seg.batch.naming import OutputKind, output_paths

#: Extensions taken when walking a folder, compared lower-cased; a file named explicitly is taken regardless.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)

#: How many names an error message lists before summarising the rest.
_MAX_LISTED = 10


@dataclass(frozen=True)
class Job:
    """One input: the path to open, its output location relative to OUT (no extension), and a known error."""

    source: Path
    relative: PurePath
    error: str | None = None

    def outputs(self, out_dir: Path, kinds: Sequence[OutputKind]) -> dict[OutputKind, Path]:
        """Output paths for the requested kinds, e.g. ``out/a/b_mask.png`` (see ``naming.py``)."""
        return output_paths(out_dir, self.relative, kinds)


class InputError(Exception):
    """The inputs are unusable as a whole (nothing to process, clashing outputs); the message is for users."""


def read_path_list(stream: TextIO) -> list[str]:
    """Paths listed one per line (INPUT ``-``), without line endings.

    Blank lines are skipped; other spaces are kept, as file names may start or end with them.
    """
    return [name for name in (line.rstrip("\r\n") for line in stream) if name.strip()]


def discover(
    inputs: Sequence[str], out_dir: Path, *, recursive: bool = True, stdin: TextIO | None = None
) -> list[Job]:
    """Expand INPUT arguments into jobs, each file once, in a stable order.

    Arguments keep their order, a folder's contents are sorted by name; ``-`` reads paths from ``stdin``.
    """
    args = _expand_stdin(inputs, stdin)
    out_real = out_dir.resolve()
    jobs: dict[Path, Job] = {}
    for arg in args:
        for real, job in _jobs_for(Path(arg), out_real, recursive):
            jobs.setdefault(real, job)
    if not jobs:
        raise InputError(_nothing_found(inputs, args, out_dir, recursive))
    return list(jobs.values())


def job_under(root: Path, relative: PurePath) -> Job | None:
    """The job a walk of folder ``root`` makes for the file at ``relative`` below it; None if the walk skips the name.

    For sources that learn of files one at a time (a watched folder), so they follow the walk's rules.
    """
    if any(_hidden(part) for part in relative.parts) or not _image_name(relative.name):
        return None
    return Job(root / relative, relative.parent / relative.stem)


def walk(folder: Path, out_dir: Path, *, recursive: bool = True, relative: PurePath = PurePath()) -> Iterator[Job]:
    """The jobs a walk of ``folder`` makes, their outputs under ``relative`` (for a subfolder of an input folder)."""
    for _, job in _walk(folder, relative, out_dir.resolve(), recursive, set()):
        yield job


def collision_key(job: Job) -> str:
    """Jobs with equal keys write the same outputs: names are compared ignoring case, as macOS/Windows do."""
    return job.relative.as_posix().casefold()


def find_collisions(jobs: Sequence[Job]) -> list[list[Job]]:
    """Groups of jobs that would write the same outputs (equal ``collision_key``)."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(collision_key(job), []).append(job)
    return [group for group in groups.values() if len(group) > 1]


def check_collisions(jobs: Sequence[Job], out_dir: Path = Path()) -> None:
    """Raise ``InputError`` naming inputs that would overwrite each other's outputs, before any work is done.

    ``out_dir`` only makes the message show full output paths.
    """
    groups = find_collisions(jobs)
    if not groups:
        return
    lines = [
        f"  {group[0].outputs(out_dir, [OutputKind.MAP])[OutputKind.MAP]}: " + ", ".join(str(job.source) for job in group)
        for group in groups[:_MAX_LISTED]
    ]
    if len(groups) > _MAX_LISTED:
        lines.append(f"  ... and {len(groups) - _MAX_LISTED} more")
    raise InputError(
        "these inputs would write the same outputs (names are compared ignoring letter case):\n"
        + "\n".join(lines)
        + "\nrename one file of each group; inputs from different folders can instead be kept apart by"
        " passing their common parent folder, or by running them separately into different output folders"
    )


def _expand_stdin(inputs: Sequence[str], stdin: TextIO | None) -> list[str]:
    """The arguments with ``-`` replaced by the paths read from stdin (read once if repeated)."""
    args: list[str] = []
    read = False
    for arg in inputs:
        if arg != "-":
            args.append(arg)
        elif not read:
            args.extend(read_path_list(stdin if stdin is not None else sys.stdin))
            read = True
    return args


def _jobs_for(path: Path, out_real: Path, recursive: bool) -> Iterator[tuple[Path, Job]]:
    """Jobs for one argument (a folder's images, or the file itself), keyed by resolved path for dedupe."""
    real = path.resolve()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        yield real, Job(path, PurePath(path.stem), "file not found")
        return
    except OSError as err:
        yield real, Job(path, PurePath(path.stem), f"cannot read file: {err.strerror or err}")
        return
    if stat.S_ISDIR(mode):
        yield from _walk(path, PurePath(), out_real, recursive, set())
    elif real.is_relative_to(out_real):
        return  # an earlier output, or a file this run's outputs would overwrite
    elif stat.S_ISREG(mode):
        yield real, Job(path, PurePath(path.stem))
    else:
        yield real, Job(path, PurePath(path.stem), "not a regular file")


def _walk(
    folder: Path, relative: PurePath, out_real: Path, recursive: bool, entered: set[Path]
) -> Iterator[tuple[Path, Job]]:
    """Image files under ``folder`` sorted by name, skipping hidden entries, OUT, and folders already entered.

    Symlinks are followed; ``entered`` holds resolved folders so a symlink loop is walked once.
    """
    real = folder.resolve()
    if real == out_real or real in entered:
        return
    entered.add(real)
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as err:
        name = relative if relative.parts else PurePath(real.name)
        yield real, Job(folder, name, f"cannot read folder: {err.strerror or err}")
        return
    for entry in entries:
        if _hidden(entry.name):
            continue
        path = folder / entry.name
        if entry.is_dir():
            if recursive:
                yield from _walk(path, relative / entry.name, out_real, recursive, entered)
        elif not _image_name(entry.name):
            continue
        elif entry.is_file():
            yield path.resolve() if entry.is_symlink() else real / entry.name, Job(path, relative / path.stem)
        else:  # reported, not silently skipped, and never opened (a FIFO would block)
            reason = "broken symbolic link" if entry.is_symlink() and not path.exists() else "not a regular file"
            yield real / entry.name, Job(path, relative / path.stem, reason)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _image_name(name: str) -> bool:
    return PurePath(name).suffix.lower() in IMAGE_EXTENSIONS


def _nothing_found(inputs: Sequence[str], args: Sequence[str], out_dir: Path, recursive: bool) -> str:
    """The message for an empty job list: what was searched, for what, and what is skipped on purpose."""
    if not args:
        return "no inputs given" + (" (the path list read from stdin was empty)" if "-" in inputs else "")
    searched = ", ".join(args[:_MAX_LISTED])
    if len(args) > _MAX_LISTED:
        searched += f" and {len(args) - _MAX_LISTED} more"
    extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
    depth = "; subfolders were not searched (--no-recursive)" if not recursive else ""
    return (
        f"no images found in: {searched} (looked for {extensions}, in any letter case; hidden files and"
        f" folders, and the output folder {out_dir}, are skipped{depth})"
    )
