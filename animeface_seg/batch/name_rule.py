"""How OUT's file system compares names: whether it folds letter case and Unicode spellings, and how long a
name it holds; found by asking it (``NameRule.probe``), so the plan compares output names as it will."""

from __future__ import annotations

import os
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path


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
