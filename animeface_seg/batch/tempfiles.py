"""Writing a set of files all or nothing, through temporary files that say whether their writer lives.

Each file is written under a hidden temporary name in its own folder
(``.<name>.animeface-seg-<random>.tmp``) and renamed into place only once every file of the set
is written, so an input's outputs appear together or not at all, and a killed run never leaves a
half-written file that ``--skip-existing`` would trust. The writer holds an exclusive lock
(``flock``) on each temporary file until it is renamed: a later run removes a temporary file only
when nobody holds that lock any more, which is true of a live run in another PID namespace, a
container or (through the NFS lock manager) on another host too, where a process id says nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from animeface_seg.batch.folders import make_folders

try:
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted there, which protects it the same way
    fcntl = None  # type: ignore[assignment]

#: Temporary files of this tool (this version's random tags, and the ``<pid>-<thread>`` tags of 0.2).
TEMP_PATTERN = re.compile(r"^\..*\.animeface-seg-[0-9a-z]+(-[0-9]+)?\.tmp$", re.DOTALL)
#: A temporary file younger than this is never taken for stale (its writer may not hold the lock yet).
STALE_AFTER = 10.0
#: Longest file name most file systems accept, in bytes (temporary names are kept within it).
NAME_MAX = 255

Writer = Callable[[BinaryIO], None]
"""Writes one file's content to an open binary stream."""


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``, within ``NAME_MAX`` bytes whatever ``path``'s name is."""
    suffix = f".animeface-seg-{secrets.token_hex(6)}.tmp"
    name = path.name
    if len(os.fsencode(f".{name}{suffix}")) > NAME_MAX:
        name = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    return path.with_name(f".{name}{suffix}")


@contextmanager
def locked_temp(path: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A new temporary file for ``path``, locked for as long as the block runs; removed if still there."""
    make_folders(path.parent)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with os.fdopen(fd, "wb", closefd=False) as stream:
            yield tmp, stream
    finally:
        try:
            tmp.unlink(missing_ok=True)
        finally:
            os.close(fd)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """OS errors raised while ``path``'s file is written or renamed name ``path``, the name the user knows
    (a failed write names no file, a failed rename the temporary one)."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or exc.filename == str(path):
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _second_name(path: Path) -> Path | None:
    """A hard link to the file ``path`` holds before it is replaced, so a failed set can put it back;
    None when nothing (or a folder) is there, or the file system makes no such link."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            return None
        backup = temp_path(path)
        os.link(path, backup, follow_symlinks=False)
    except OSError:
        return None
    return backup


def _put_back(path: Path, backup: Path | None) -> None:
    """Undo one rename of a failed set: the file that was at ``path`` is there again (none if none was; none
    either if its second name is gone, taken by another run's clean-up: the new file never stays)."""
    if backup is not None:
        try:
            os.replace(backup, path)
            return
        except OSError:
            pass
    try:
        path.unlink()
    except OSError:
        pass


def _drop(backup: Path | None) -> None:
    """Remove a second name no longer needed (the set is in place, or its file was never replaced); one left
    behind is an unlocked temporary file, which the next run removes."""
    if backup is not None:
        try:
            backup.unlink(missing_ok=True)
        except OSError:
            pass


def write_set(files: Mapping[Path, Writer]) -> None:
    """Write every file of ``files`` (path -> writer), then rename them all into place.

    On any failure (an exception in a writer, a full disk, a name too long, a rename refused)
    nothing of the set is left and what was there before is back: temporary files are removed,
    and each file already renamed into place is removed, or replaced again by the file it replaced
    (kept under a second name, a hard link, until the whole set is in place; a file system without
    hard links loses that file).
    """
    placed: list[tuple[Path, Path | None]] = []
    try:
        with ExitStack() as stack:
            staged = []
            for path, write in files.items():
                with _naming(path):
                    tmp, stream = stack.enter_context(locked_temp(path))
                    write(stream)
                    stream.flush()
                staged.append((tmp, path))
            for tmp, path in staged:
                backup = _second_name(path)
                try:
                    with _naming(path):
                        os.replace(tmp, path)
                except BaseException:
                    _drop(backup)
                    raise
                placed.append((path, backup))
    except BaseException:
        for path, backup in reversed(placed):
            _put_back(path, backup)
        raise
    for _, backup in placed:
        _drop(backup)


def _held(path: str) -> bool:
    """Whether a live process holds the lock of a temporary file (on Windows: has it open)."""
    if fcntl is None:
        return False  # the unlink that follows fails while the file is open
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # gone or unreadable: leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def remove_stale_temp_files(out_dir: Path) -> list[Path]:
    """Delete this tool's temporary files under ``out_dir`` that no live writer holds; return them.

    A process killed outright (SIGKILL, power loss) cannot clean up after itself; this does it on
    the next run. Files a live run is writing (in any process, container or host) are left alone.
    """
    removed: list[Path] = []
    folders = [out_dir]
    now = time.time()
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                    continue
                if not TEMP_PATTERN.match(entry.name) or now - entry.stat(follow_symlinks=False).st_mtime < STALE_AFTER:
                    continue
            except OSError:
                continue
            if not _held(entry.path):
                try:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
                except OSError:
                    pass
    return removed
