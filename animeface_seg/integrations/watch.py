"""Watch mode: input folders as a live job source that hands a file over only once it has settled.

``watchfiles`` (inotify on Linux, native backends elsewhere, polling where those fail) reports
changes; a file becomes a ``Job`` once its size and modification time have stayed the same for
the settle time, so a file still being copied or downloaded is never read half-written. The
source is endless until ``stop``; ``batch.pipeline.process`` consumes it like any job list.

Names ignored below a watched folder, besides those a folder walk skips (hidden names, other
extensions; see ``batch.discovery``): any path part that starts with ``~`` or ends with ``~``
or with one of ``TEMPORARY_SUFFIXES`` (partial downloads and editors' temporary files).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path, PurePath

from watchfiles import Change, watch

from animeface_seg.batch.clips import frame_sets
from animeface_seg.batch.discovery import InputError, Job, identity_of, job_under, walk
from animeface_seg.batch.naming import OutputKind
from animeface_seg.batch.display import shown
from animeface_seg.batch.outcome import ALREADY_DONE, Outcome
from animeface_seg.batch.claims import OutputClaims
from animeface_seg.batch.name_rule import NameRule
from animeface_seg.batch.plan import recognise
from animeface_seg.batch.spec import OutputSpec
from animeface_seg.batch.signature import stale_reason

#: Seconds a file's size and modification time must stay unchanged before it is read.
DEFAULT_SETTLE = 1.0

#: Endings (compared lower-cased) of names other programs use while a file is still being written:
#: browsers' partial downloads (``.part``, ``.crdownload``, Safari's ``.download`` folders,
#: Opera's ``.opdownload``), WinSCP's ``.filepart``, and generic temporary files.
TEMPORARY_SUFFIXES: tuple[str, ...] = (
    ".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".opdownload", ".filepart",
)

Stamp = tuple[int, int]
"""A file's (size, modification time in ns): what "unchanged" means."""


def is_temporary(name: str) -> bool:
    """Whether a file or folder name marks something still being written (see ``TEMPORARY_SUFFIXES``)."""
    return name.startswith("~") or name.endswith("~") or name.lower().endswith(TEMPORARY_SUFFIXES)


def _stamp(st: os.stat_result) -> Stamp:
    return st.st_size, st.st_mtime_ns


def up_to_date(outputs: dict[OutputKind, Path], source: Path) -> bool:
    """Whether a job's outputs all exist and none is older than its input."""
    if stale_reason(outputs, None) is not None:
        return False
    try:
        changed = source.stat().st_mtime_ns
        return all(path.stat().st_mtime_ns >= changed for path in outputs.values())
    except OSError:
        return False


def _done(job: Job, spec: OutputSpec, checked: Callable[[Job], bool]) -> bool:
    """Whether every output of ``job`` exists and is newer than it (a clip's: every frame its header counts,
    and its videos), and ``checked`` finds them complete with the run's settings (``--skip-existing``'s rule)."""
    clip = job.kind.streams_frames
    sets = frame_sets(job, spec) if clip else [spec.outputs(job)]
    sets = [files for files in [*(sets or ()), spec.videos(job) if clip and sets else {}] if files]
    return bool(sets) and all(up_to_date(files, job.source) for files in sets) and checked(job)


@dataclass
class _Pending:
    job: Job
    stamp: Stamp
    since: float
    """``time.monotonic()`` when ``stamp`` was first seen."""


class DropFolders:
    """Input folders being watched: the first scan's jobs, then every file that settles below them.

    Call ``start`` before ``scan`` so that nothing dropped while the first scan is processed is missed;
    ``stop`` (from any thread) ends ``jobs`` within a fraction of a second.
    """

    def __init__(self, inputs: Sequence[str], spec: OutputSpec, *, settle: float = DEFAULT_SETTLE,
                 recursive: bool = True, force_polling: bool | None = None) -> None:
        for arg in inputs:
            if arg == "-" or not Path(arg).is_dir():
                what = "standard input" if arg == "-" else ("a file" if Path(arg).exists() else "not found")
                raise InputError(f"--watch needs folders as INPUT, and {arg} is {what}: "
                                 "pass the folder that files are dropped into")
        self._roots = [(Path(arg), Path(arg).absolute()) for arg in dict.fromkeys(inputs)]
        self._spec = spec
        self._out_dir = spec.out_dir
        self._out_real = spec.out_dir.resolve()
        self._settle = settle
        self._recursive = recursive
        self._force_polling = force_polling
        self._tick = min(0.25, max(0.05, settle / 4))
        self._stop = threading.Event()
        self._changes: Iterator[set[tuple[Change, str]]] | None = None
        self._early: set[tuple[Change, str]] = set()
        self._pending: dict[Path, _Pending] = {}
        self._handed: dict[Path, Stamp | None] = {}
        """Per input (resolved path): the stamp it had when handed over or skipped; None for a reported error."""
        self._root_ids: dict[Path, tuple[int, int] | None] | None = None
        """Each watched folder's identity when last seen (None: missing); set by ``start``."""
        self._names = NameRule.probe(spec.out_dir)
        self._claims: OutputClaims | None = None
        """Every output of every input seen so far, claimed as the up-front plan claims them (set by ``plan``)."""
        self._owners: dict[Path, Job] = {}
        """Resolved input path -> the job whose outputs it claimed."""

    @property
    def settle(self) -> float:
        """Seconds a file must stay unchanged before it is handed over."""
        return self._settle

    @property
    def folders(self) -> list[Path]:
        """The watched folders as given."""
        return [root for root, _ in self._roots]

    def start(self) -> None:
        """Start watching; returns once the watcher is live (its first answer), so later changes are kept."""
        self._root_ids = {absolute: identity_of(absolute) for _, absolute in self._roots}
        try:
            self._early = self._watch()
        except (OSError, RuntimeError) as exc:  # e.g. the inotify watch limit, or a folder removed meanwhile
            raise InputError(f"cannot watch {', '.join(map(str, self.folders))}: {exc} (on a network file system "
                             "or past the system's watch limit, set WATCHFILES_FORCE_POLLING=1)") from None

    def _watch(self) -> set[tuple[Change, str]]:
        """(Re)start the watcher on every watched folder that exists now; its first answer."""
        if self._changes is not None:
            self._changes.close()
        folders = [absolute for absolute, identity in self._root_ids.items() if identity is not None]
        self._changes = None
        if not folders:
            return set()
        ms = int(self._tick * 1000)
        self._changes = watch(*folders, watch_filter=None, debounce=2 * ms, step=min(50, ms), stop_event=self._stop,
                              rust_timeout=ms, yield_on_timeout=True, recursive=self._recursive,
                              force_polling=self._force_polling)
        return next(self._changes)

    def _next_changes(self) -> set[tuple[Change, str]]:
        """The next batch of changes (empty on a tick without any, or while no watched folder exists)."""
        if self._changes is None:
            self._stop.wait(self._tick)
            return set()
        try:
            return next(self._changes)
        except StopIteration:  # stopped
            return set()
        except (OSError, RuntimeError):  # the watcher lost its folder: ``_check_folders`` sees to it
            self._changes = None
            return set()

    def _check_folders(self, now: float, notice: Callable[[str], None] | None) -> None:
        """Notice a watched folder that was removed (and wait for it), or that is back (and watch it again)."""
        changed = []
        for root, absolute in self._roots:
            identity = identity_of(absolute)
            if identity == self._root_ids[absolute]:
                continue
            self._root_ids[absolute] = identity
            changed.append((root, absolute, identity))
            if notice is not None:
                notice(f"watched folder {shown(root)} was removed; waiting for it to come back" if identity is None
                       else f"watched folder {shown(root)} is there again; watching it")
        if not changed:
            return
        try:
            early = self._watch()
        except (OSError, RuntimeError):  # gone again meanwhile: the next check sees it
            self._changes, early = None, set()
        for change, name in early:
            self._note(change, Path(name), now)
        for root, absolute, identity in changed:
            if identity is not None:
                for job in walk(absolute, self._out_dir):
                    self._candidate(Job(root / job.relative.parent / job.source.name, job.relative), now)

    def stop(self) -> None:
        """Make ``jobs`` end at its next wake-up (thread-safe; the pipeline then finishes what it holds)."""
        self._stop.set()

    def plan(self, jobs: Iterable[Job], checked: Callable[[Job], bool]) -> tuple[list[Outcome], list[Job]]:
        """Split the first scan into inputs already done with the run's settings (as skipped outcomes) and work:
        done when their outputs are newer than them and ``checked`` finds them whole with the run's settings.

        A file modified within the settle time, or empty, may still be being written: it is left
        to the watch, which hands it over once it has settled.
        """
        skipped: list[Outcome] = []
        todo: list[Job] = []
        now, wall = time.monotonic(), time.time()
        self._claims = OutputClaims(self._spec, self._names)
        for job in jobs:
            real = job.source.resolve()
            if job.runnable:
                self._claims.claim(job)
                self._owners[real] = job
            try:
                st = job.source.stat()
            except OSError:
                st = None
            if job.error or st is None:  # the pipeline reports it as the normal run does
                todo.append(job)
            elif st.st_size == 0 or wall - st.st_mtime < self._settle:
                self._pending[real] = _Pending(job, _stamp(st), now)
            else:
                self._handed[real] = _stamp(st)
                outputs = self._spec.outputs(job)
                if _done(job, self._spec, checked):
                    skipped.append(Outcome(job, "skipped", outputs, reason=ALREADY_DONE))
                else:
                    todo.append(job)
        return skipped, todo

    def jobs(self, first: Iterable[Job] = (), on_job: Callable[[Job], None] | None = None,
             on_notice: Callable[[str], None] | None = None) -> Iterator[Job]:
        """``first`` (the planned scan), then each file below the folders once it has settled, until ``stop``.

        A file that changes after it was handed over is handed over again. ``on_job`` sees each job as it
        is handed over (from the pipeline's feeding thread); ``on_notice`` is told when a watched folder
        goes away (the watch waits for it) and when it is back (the watch takes it up again).
        """
        if self._root_ids is None:
            raise RuntimeError("DropFolders.start() must be called before jobs()")
        for job in first:
            if on_job is not None:
                on_job(job)
            yield job
        changes = self._early
        while not self._stop.is_set():
            now = time.monotonic()
            for change, name in sorted(changes, key=lambda item: item[1]):
                self._note(change, Path(name), now)
            self._check_folders(now, on_notice)
            for job in self._settled(time.monotonic()):
                if on_job is not None:
                    on_job(job)
                yield job
            changes = self._next_changes()

    # -- events -------------------------------------------------------------------------------
    def _locate(self, path: Path) -> tuple[Path, PurePath] | None:
        """The watched folder (as given) and relative path of a changed path, or None if it is to be ignored."""
        for root, absolute in self._roots:
            if not path.is_relative_to(absolute) or path == absolute:
                continue
            relative = PurePath(path.relative_to(absolute))
            if any(part.startswith(".") or is_temporary(part) for part in relative.parts):
                return None
            if not self._recursive and len(relative.parts) > 1:
                return None
            if path.resolve().is_relative_to(self._out_real):  # our own outputs, when OUT is inside an input
                return None
            return root, relative
        return None

    def _note(self, change: Change, path: Path, now: float) -> None:
        located = self._locate(path)
        if located is None:
            return
        root, relative = located
        source = root / relative
        if change == Change.deleted:  # its outputs stay; a file put back later is processed again
            real = source.resolve()
            for known in [p for p in chain(self._pending, self._handed) if p == real or p.is_relative_to(real)]:
                self._pending.pop(known, None)
                self._handed.pop(known, None)
            return
        if source.is_dir():
            if change == Change.added and self._recursive:  # a new or moved-in folder: its files raise no events
                for job in walk(source, self._out_dir, relative=relative):
                    if not any(is_temporary(part) for part in job.relative.parts):
                        self._candidate(job, now)
            return
        job = job_under(root, relative)
        if job is not None:
            self._candidate(job, now)

    def _candidate(self, job: Job, now: float) -> None:
        """Start (or restart) the settle clock of a file, unless it is unchanged since it was handed over."""
        real = job.source.resolve()
        st = None
        if job.error is None:
            try:
                st = os.stat(job.source)
            except FileNotFoundError:
                self._pending.pop(real, None)
                return
            except OSError as err:
                job = Job(job.source, job.relative, f"cannot read file: {err.strerror or err}")
        if st is not None and not stat.S_ISREG(st.st_mode):
            job = Job(job.source, job.relative, "not a regular file")
        if job.error or st is None:  # reported once, not retried on every event
            if self._handed.get(real, ()) is not None:
                self._handed[real] = None
                self._pending[real] = _Pending(job, (-1, -1), now - self._settle)
            return
        stamp = _stamp(st)
        if self._handed.get(real) == stamp:
            self._pending.pop(real, None)
            return
        pending = self._pending.get(real)
        if pending is None or pending.stamp != stamp:
            self._pending[real] = _Pending(job, stamp, now)

    def _settled(self, now: float) -> Iterator[Job]:
        """Files whose stamp has not changed for the settle time, re-checked on disk right now."""
        for real, pending in list(self._pending.items()):
            if now - pending.since < self._settle:
                continue
            if pending.job.error:
                del self._pending[real]
                yield pending.job
                continue
            try:
                stamp = _stamp(os.stat(pending.job.source))
            except OSError:  # gone (or unreadable: its next event says so)
                del self._pending[real]
                continue
            if stamp != pending.stamp or stamp[0] == 0:  # still being written, or not yet begun
                self._pending[real] = _Pending(pending.job, stamp, now)
                continue
            del self._pending[real]
            self._handed[real] = stamp
            yield self._claimed(recognise([pending.job], not self._spec.first_frame)[0], real)  # settled: its header is whole

    def _claimed(self, job: Job, real: Path) -> Job:
        """The job, or a failing one if its outputs meet those of another input that still exists (any kind,
        names compared as OUT's file system compares them, as the up-front plan does)."""
        claims = self._claims
        if claims is None:
            return job
        previous = self._owners.pop(real, None)
        if previous is not None:
            claims.release(previous)
        for other in claims.claimants(job):
            if not other.source.exists():  # its input is gone: its names are free again
                claims.release(other)
        conflicts = claims.claim(job) + claims.on_disk(job)
        if conflicts:
            claims.release(job)
            text, hint = conflicts[0]
            return Job(job.source, job.relative, f"its outputs would overwrite another input's: {text} ({hint})")
        self._owners[real] = job
        return job
