"""The manifest: every input's record kept in OUT, across runs and engines.

``OUT/animeface-seg-manifest.jsonl`` holds one JSON line per input ever reported into OUT: its
``--json`` record, with paths inside OUT stored relative to OUT (so OUT can be moved or copied) and
every other local path made absolute (so the file means the same from any folder); lines of older
versions, whose paths are all absolute, read as they are. A run loads it, and each record it reports
replaces the one of the same input (keyed by the input path) while every other input's record stays;
a ``skipped`` record only fills a gap, as nothing was done for that input and its earlier record
still describes its files. The file is always written whole and atomically (a temporary file in OUT
renamed over it; one put in object storage): when the run ends, however it ends, and meanwhile at
most every ``interval`` seconds after a record arrived. A damaged manifest never stops a run: its
valid lines are kept, the loss is reported once, and the run's write leaves the damage behind (even
a run that adds nothing). Lines are ASCII JSON, so names with undecodable bytes (lone surrogates,
see ``os.fsdecode``) round-trip as ``\\udcXX`` escapes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath

from animeface_seg.batch.display import shown
from animeface_seg.batch.tempfiles import write_set

#: File name of the manifest in OUT (not a PNG, so never taken as an input or planned as an output).
MANIFEST_NAME = "animeface-seg-manifest.jsonl"
#: Seconds between periodic writes in an endless run (``--watch``).
INTERVAL = 5.0

Reader = Callable[[PurePath], bytes]
Writer = Callable[[PurePath, bytes], None]
Warn = Callable[[str], None]


def write_atomic(path: PurePath, data: bytes) -> None:
    """Write ``data`` to the local file ``path`` under a temporary name in its folder, then rename it into place."""
    write_set({Path(path): lambda stream: stream.write(data)})


def _read_local(path: PurePath) -> bytes:
    return Path(path).read_bytes()


def _absolute(name: str) -> str:
    """A local path made absolute; a URI (``s3://...``: a local ``Path`` never holds ``://``) as it is."""
    return name if "://" in name else os.path.abspath(name)


def _paths(record: dict, change: Callable[[str], str]) -> dict:
    """``record`` with ``change`` applied to its input and output paths."""
    outputs = record.get("outputs") or {}
    return {**record, "input": change(record["input"]),
            "outputs": {kind: change(path) for kind, path in outputs.items()}}


def normalized(record: dict) -> dict:
    """``record`` with its input and output paths absolute (see ``_absolute``)."""
    return _paths(record, _absolute)


def _base(folder: PurePath) -> str:
    """``folder`` as the prefix its paths start with: absolute when local, the URI in object storage."""
    text = str(folder)
    return text.rstrip("/") if "://" in text else os.path.abspath(text)


def stored(record: dict, folder: PurePath) -> dict:
    """``record`` (absolute paths) as the manifest in ``folder`` keeps it: paths inside ``folder`` relative to it."""
    prefix = _base(folder).rstrip(os.sep) + os.sep
    return _paths(record, lambda path: path.removeprefix(prefix))


def resolved(record: dict, folder: PurePath) -> dict:
    """A record read from the manifest in ``folder`` with its relative paths (inside ``folder``) made absolute."""
    base = _base(folder)

    def absolute(path: str) -> str:
        return path if "://" in path or os.path.isabs(path) else f"{base.rstrip(os.sep)}{os.sep}{path}"
    return _paths(record, absolute)


def parse(data: bytes) -> tuple[dict[str, dict], int]:
    """The records in a manifest's bytes keyed by input (a later line wins), and how many lines were not records."""
    records: dict[str, dict] = {}
    bad = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:  # not UTF-8, or not JSON
            bad += 1
            continue
        if not (isinstance(record, dict) and isinstance(record.get("input"), str)
                and isinstance(record.get("outputs", {}), dict)):
            bad += 1
            continue
        records.pop(record["input"], None)
        records[record["input"]] = record
    return records, bad


def load(folder: PurePath, read: Reader = _read_local, warn: Warn | None = None) -> dict[str, dict]:
    """The records of the manifest in ``folder`` keyed by input ({} when there is none), paths absolute;
    damage goes to ``warn``."""
    return _load(folder, read, warn)[0]


def _load(folder: PurePath, read: Reader, warn: Warn | None) -> tuple[dict[str, dict], int]:
    """``load``'s records, and how many damaged lines were dropped from the file."""
    path = folder / MANIFEST_NAME
    try:
        data = read(path)
    except FileNotFoundError:
        return {}, 0
    except OSError as exc:
        if warn is not None:
            warn(f"cannot read {shown(path)} ({exc.strerror or exc}); its earlier records are not kept")
        return {}, 0
    records, bad = parse(data)
    if bad and warn is not None:
        warn(f"{shown(path)}: {bad} damaged line(s) dropped, {len(records)} record(s) kept")
    records = [resolved(record, folder) for record in records.values()]
    return {record["input"]: record for record in records}, bad


class Manifest:
    """The manifest of one run's OUT: ``add`` each record, ``close`` at the end (also a context manager).

    ``read`` and ``write`` reach the file (local by default; the Ray engine passes its object
    storage's), ``warn`` hears about damage and failed writes (once each); ``every`` turns on
    the periodic writing of records that arrived.
    """

    def __init__(self, folder: PurePath, *, read: Reader = _read_local, write: Writer = write_atomic,
                 warn: Warn | None = None) -> None:
        self.path = folder / MANIFEST_NAME
        self.interval: float | None = None
        self._write = write
        self._warn = warn
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._write_failed = False
        self._last_write = time.monotonic()
        self.folder = folder
        self.records, damaged = _load(folder, read, warn)
        self._dirty = bool(damaged)  # the next write leaves the damaged lines behind

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, record: dict) -> None:
        """Keep ``record`` (a ``--json`` record) as its input's entry; schedule a write when periodic."""
        record = normalized(record)
        key = record["input"]
        with self._lock:
            if record["status"] == "skipped" and key in self.records:
                return
            self.records.pop(key, None)
            self.records[key] = record
            self._dirty = True
            self._schedule()

    def every(self, interval: float | None) -> None:
        """From now on write records that arrived at most every ``interval`` seconds (``None``: only at the end)."""
        with self._lock:
            self.interval = interval
            self._schedule()

    def _schedule(self) -> None:
        """Start the timer of the next periodic write, if one is due and none is pending (lock held)."""
        if self.interval is not None and self._dirty and self._timer is None:
            delay = max(0.0, self._last_write + self.interval - time.monotonic())
            self._timer = threading.Timer(delay, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self) -> None:
        """Write the manifest now if any record arrived since the last write."""
        with self._lock:
            self._timer = None
            if not self._dirty:
                return
            data = "".join(json.dumps(stored(record, self.folder), ensure_ascii=True) + "\n"
                           for record in self.records.values())
            try:
                self._write(self.path, data.encode("ascii"))
            except OSError as exc:
                if self._warn is not None and not self._write_failed:
                    self._warn(f"cannot write {shown(self.path)}: {exc.strerror or exc}")
                self._write_failed = True
                return
            finally:
                self._last_write = time.monotonic()
            self._dirty = False

    def close(self) -> None:
        """Stop the periodic writing and write what is left."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()


@contextmanager
def kept(manifest: Manifest | None, periodic: bool = False) -> Iterator[None]:
    """The span of a run's work: with ``periodic`` (an endless run) records that arrived are written
    at most every ``INTERVAL`` seconds; at the end, however it ends, the manifest is written whole."""
    if manifest is None:
        yield
        return
    if periodic:
        manifest.every(INTERVAL)
    try:
        yield
    finally:
        manifest.close()
