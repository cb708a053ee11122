"""The cache folder's files, trusted only once checked: written whole, sealed, verified before use.

Every artefact (the ONNX export, the graph ONNX Runtime optimised) is written to a temporary
file and renamed into place, then sealed by a record beside it (``<name>.json``, written last)
holding its size and SHA-256. Before use the file must match its record; a file that does not
(cut short, overwritten, its record unreadable) is reported once and rebuilt. Hashing a 180 MB
export takes about 0.15 s, so digests are memoised in ``digests/`` by the file's identity (path,
device, inode, size, modification and change times): a file written to in any way gets a new
change time and is read in full again. A cache that cannot be written is reported once and the
run goes on without it.

Cache folder: ``$ANIMEFACE_SEG_CACHE``, else ``$XDG_CACHE_HOME/animeface-seg``, else
``~/.cache/animeface-seg``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

#: Environment variable naming the cache folder.
CACHE_ENV = "ANIMEFACE_SEG_CACHE"
_CHUNK = 8 * 2**20
_HEX64 = re.compile(r"[0-9a-f]{64}")


class CacheWarning(UserWarning):
    """A cached file was damaged and is rebuilt, or the cache cannot be written (the run goes on)."""


def cache_dir() -> Path:
    """The cache folder (see the module's docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "animeface-seg"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed onto ``path`` when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(name)
        os.replace(name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def record_path(path: Path) -> Path:
    """Where the record sealing ``path`` lives."""
    return path.with_suffix(".json")


def sha256_of(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Cache:
    """The cache as one construction of a segmentor sees it: checks, seals, memoised digests, and
    warnings (``CacheWarning``), at most one saying the cache cannot be written."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = cache_dir() if root is None else Path(root)
        self.writable = True

    def warn(self, message: str) -> None:
        """Report one event (a rebuilt file, an unusable cache) as a ``CacheWarning``."""
        warnings.warn(message, CacheWarning, stacklevel=3)

    def unwritable(self, where: Path, exc: OSError | str) -> None:
        """The cache cannot be written: say so the first time, and write nothing more this run."""
        if self.writable:
            reason = exc if isinstance(exc, str) else (exc.strerror or str(exc))
            self.warn(f"cannot write the cache in {where} ({reason}); this run goes on without saving to it "
                      f"(a slower start). Point ${CACHE_ENV} at a writable folder.")
        self.writable = False

    def damaged(self, path: Path, reason: str) -> None:
        """A cached file failed its check: say which, and that it is rebuilt."""
        self.warn(f"the cached file {path} was damaged ({reason}); rebuilt")

    def probe(self, folder: Path) -> bool:
        """Whether files can be created in ``folder`` (made if missing); warns once when not."""
        if not self.writable:
            return False
        probe = self._temporary(folder / "probe")
        if probe is not None:
            os.unlink(probe)
        return self.writable

    def _memo(self, path: Path) -> tuple[Path, str]:
        """Where the digest of ``path`` as it is now is memoised, and the identity recorded in the memo."""
        st = path.stat()
        identity = f"{path}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"
        return self.root / "digests" / hashlib.sha256(identity.encode()).hexdigest()[:32], identity

    def digest(self, path: Path) -> str:
        """SHA-256 of ``path``, memoised by the file's identity (read in full only when it changed)."""
        path = Path(path).resolve()
        memo, identity = self._memo(path)
        try:
            text = memo.read_text()
        except OSError:  # none (or none readable): made, where the cache can be written
            text = None
        found = None if text is None else _memo_value(text, identity)
        if found:
            return found
        if text is not None:
            self.damaged(memo, "an unreadable digest memo")
        value = sha256_of(path)
        self.remember(path, value)
        return value

    def remember(self, path: Path, value: str) -> None:
        """Memoise ``value`` as the digest of ``path`` as it is now."""
        memo, identity = self._memo(Path(path).resolve())
        self.write_text(memo, json.dumps({"file": identity, "sha256": value}))

    def write_text(self, path: Path, text: str) -> bool:
        """Write a small file whole (temporary file, renamed); False, after one warning, where it cannot."""
        if not self.writable:
            return False
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
        except OSError as exc:
            self.unwritable(path.parent, exc)
        return self.writable

    def check(self, path: Path) -> dict | None:
        """The record of ``path`` when the file is whole (its size and digest as recorded), else None:
        nothing cached yet, or damaged (reported; the caller rebuilds it)."""
        with _locked(path.parent, exclusive=False):
            return self._check(path)

    def _check(self, path: Path) -> dict | None:
        try:
            text = record_path(path).read_text()
        except OSError:  # none (or none readable): not cached
            return None
        try:
            info = json.loads(text)
            size, sha256 = info["size"], info["sha256"]
        except (ValueError, KeyError, TypeError):
            self.damaged(record_path(path), "its record is unreadable")
            return None
        try:
            actual = path.stat().st_size
        except OSError as exc:
            self.damaged(path, exc.strerror or str(exc))
            return None
        if actual != size:
            self.damaged(path, f"{actual} bytes where {size} were written")
        elif self.digest(path) != sha256:
            self.damaged(path, "its SHA-256 differs from the one recorded when it was written")
        else:
            return info
        return None

    @contextlib.contextmanager
    def sealing(self, path: Path, info: dict) -> Iterator[Path | None]:
        """A temporary path beside ``path`` for the caller to write whole; when the block ends without
        error it is renamed onto ``path`` and sealed by its record (``info``, size, digest), written
        last. None, after one warning, where the cache cannot be written (so is a failed write)."""
        tmp = self._temporary(path) if self.writable else None
        try:
            yield tmp
            if tmp is not None:
                value, size = sha256_of(tmp), tmp.stat().st_size
                with _locked(path.parent, exclusive=True):  # a file and its record are placed as a pair
                    os.replace(tmp, path)
                    sealed = self.write_text(record_path(path), json.dumps({**info, "size": size, "sha256": value}))
                if sealed:
                    self.remember(path, value)
        except OSError as exc:
            self.unwritable(path.parent, exc)
        finally:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _temporary(self, path: Path) -> Path | None:
        """A new empty file beside ``path``; None, after one warning, where none can be made."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            self.unwritable(path.parent, exc)
            return None
        os.close(fd)
        return Path(name)


@contextlib.contextmanager
def _locked(folder: Path, exclusive: bool) -> Iterator[None]:
    """The folder's lock: held exclusively while a file and its record are replaced, shared while a pair
    is checked (two processes writing one file at once may write different bytes: ONNX Runtime's
    optimised graph is not byte for byte the same each time). No lock where none can be opened (a
    read-only cache nobody writes)."""
    try:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT if exclusive else os.O_RDONLY, 0o644)
    except OSError:
        fd = None
    try:
        if fd is not None and fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _memo_value(text: str, identity: str) -> str | None:
    """The digest a memo holds when it is whole and about the file ``identity``, else None."""
    try:
        found = json.loads(text)
        value = found["sha256"]
        return value if found["file"] == identity and isinstance(value, str) and _HEX64.fullmatch(value) else None
    except (ValueError, KeyError, TypeError):
        return None
