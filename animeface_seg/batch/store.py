"""Where outputs are kept: what the shared stages ask of local folders or object storage.

The stages (``stages.py``) only check outputs, open them to verify them (``--skip-existing``: a whole
PNG carrying the run's record, ``signature.stale_reason``) and write an input's set all or nothing;
``LocalStore`` does that on the local file system, the Ray engine's ``Storage`` for object storage too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import BinaryIO, Protocol

from animeface_seg.batch.tempfiles import Writer, write_set


class OutputStore(Protocol):
    """What the stages need of the place outputs go."""

    def is_file(self, location: PurePath) -> bool:
        """Whether a file (or object) is there."""

    def open(self, location: PurePath) -> BinaryIO:
        """A file (or object) opened for reading, seekable, for use in a ``with``; raises ``OSError``."""

    def write_set(self, files: Mapping[PurePath, Writer]) -> None:
        """Write every file, all or nothing (on a failure, which is raised, none is left)."""


class LocalStore:
    """Outputs on the local file system (``tempfiles.write_set``: temporary names, then renames)."""

    def is_file(self, location: PurePath) -> bool:
        return Path(location).is_file()

    def open(self, location: PurePath) -> BinaryIO:
        return open(location, "rb", buffering=0)  # unbuffered: the PNG check reads a few bytes at far offsets

    def write_set(self, files: Mapping[PurePath, Writer]) -> None:
        write_set({Path(path): write for path, write in files.items()})


LOCAL = LocalStore()
