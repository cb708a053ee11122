"""Inputs for the Ray engine: local arguments through ``batch.discovery``, object-storage URIs by listing.

A URI naming one object is taken whatever its extension; a prefix is listed (recursively
unless ``--no-recursive``) with the same rules as a local folder: image extensions in any
case, hidden names skipped, OUT skipped, the layout mirrored under OUT.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from typing import TextIO

from animeface_seg.batch.discovery import InputError, Job, discover, read_path_list
from animeface_seg.batch.inputs.still import IMAGE_EXTENSIONS
from animeface_seg.integrations.ray.storage import Location, Storage, StoragePath, is_uri, parse_location


def discover_anywhere(inputs: Sequence[str], out_dir: Location, storage: Storage, *, recursive: bool = True,
                      stdin: TextIO | None = None) -> list[Job]:
    """Jobs for local paths and object-storage URIs (``-`` reads either kind from ``stdin``, one per line).

    Local arguments come first, in the order ``discover`` gives them, then each URI's objects sorted by key.
    """
    args: list[str] = []
    for arg in inputs:
        if arg == "-":
            args.extend(read_path_list(stdin) if stdin is not None else [])
        else:
            args.append(arg)
    local = [arg for arg in args if not is_uri(arg)]
    jobs = discover(local, out_dir, recursive=recursive) if local else []
    seen = {job.source for job in jobs}
    for arg in args:
        if is_uri(arg):
            try:
                root = parse_location(arg)
            except ValueError as exc:
                raise InputError(str(exc)) from None
            for job in _listed(root, out_dir, storage, recursive):
                if job.source not in seen:
                    seen.add(job.source)
                    jobs.append(job)
    if not jobs:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise InputError(f"no images found in: {', '.join(args) or '(no inputs)'} (looked for {extensions}, "
                         f"in any letter case; hidden names and the output location {out_dir} are skipped)")
    return jobs


def _listed(root: StoragePath, out_dir: Location, storage: Storage, recursive: bool) -> Iterator[Job]:
    """The object at ``root``, or the image objects under it, as jobs."""
    from pyarrow import fs

    filesystem = storage.filesystem(root)
    try:
        info = filesystem.get_file_info(root.key)
        if info.type == fs.FileType.File:
            yield Job(root, PurePosixPath(root.stem))
            return
        if info.type == fs.FileType.NotFound:
            yield Job(root, PurePosixPath(root.stem), "not found")
            return
        entries = filesystem.get_file_info(fs.FileSelector(root.key, recursive=recursive))
    except OSError as exc:
        raise InputError(f"cannot list {root}: {exc}") from None
    skip = out_dir if isinstance(out_dir, type(root)) else None
    for entry in sorted(entries, key=lambda entry: entry.path):
        path = type(root)(entry.path)
        relative = path.relative_to(root)
        if (entry.type != fs.FileType.File or path.suffix.lower() not in IMAGE_EXTENSIONS
                or any(part.startswith(".") for part in relative.parts)
                or (skip is not None and path.is_relative_to(skip))):
            continue
        yield Job(path, PurePosixPath(relative.with_suffix("")))
