"""Process-wide settings that only the command's entry point makes, never the library.

The command owns its process, so it may: keep freed memory in glibc (``allocator.py``), let
the engine's own per-file pixel limit (``--max-pixels``) govern instead of Pillow's global
one, silence Pillow's warnings about large images, which that limit already handles, and
turn SIGTERM (what ``timeout``, systemd, Kubernetes and batch schedulers send) into the same
orderly stop as Ctrl-C, raised once however many signals follow.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import signal
import sys
import warnings
from collections.abc import Iterator

from animeface_seg.cli.allocator import keep_freed_memory


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: every path that handles Ctrl-C handles this too (finish writes, summary)."""


class _Signals:
    """Ctrl-C and SIGTERM stop the run once: the first raises (at once, or when a deferred step
    ends); later ones are ignored, so the orderly stop (finishing writes, reporting) is never cut short."""

    installed = False
    stopping = False
    held = 0
    pending: KeyboardInterrupt | None = None

    @classmethod
    def handle(cls, signum: int, frame: object) -> None:
        if cls.stopping:
            return
        cls.stopping = True
        exc = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if cls.held:
            cls.pending = exc
            return
        raise exc


def install_signal_handlers() -> None:
    """SIGTERM and Ctrl-C raise ``Terminated`` / ``KeyboardInterrupt`` once (call from the entry point)."""
    _Signals.installed = True
    signal.signal(signal.SIGTERM, _Signals.handle)
    signal.signal(signal.SIGINT, _Signals.handle)


def _let_pending_signals_through() -> None:
    """A Python-level call: CPython runs the handlers of signals already received on entering it."""


def ignore_stop_signals_while_exiting() -> None:
    """After a stop, keep ignoring Ctrl-C and SIGTERM through the interpreter's exit.

    While it exits, CPython resets its signal handlers to the default action, so a signal arriving
    then (a scheduler repeating SIGTERM) would kill the finished stop and replace its exit code.
    """
    if not _Signals.stopping or not hasattr(signal, "pthread_sigmask"):
        return
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    _let_pending_signals_through()  # our handler ignores them: the stop is under way
    for signum in stop:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop)  # any held back now reach the OS's "ignore"


def reclaim_signal_handlers() -> None:
    """Take SIGTERM and Ctrl-C back from a library that set its own handlers while starting (Ray's core
    worker aborts the whole process on SIGTERM); only in a process whose entry point installed ours."""
    if _Signals.installed and not _Signals.stopping:
        install_signal_handlers()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Run a short step whole: a stop signal arriving inside is raised when the block ends.

    Only effective once ``install_signal_handlers`` ran (the command's own process).
    """
    _Signals.held += 1
    try:
        yield
    finally:
        _Signals.held -= 1
        if not _Signals.held and _Signals.pending is not None:
            exc, _Signals.pending = _Signals.pending, None
            raise exc


class _LoadedWhole(importlib.abc.Loader):
    """A package's own loader, its module run with stop signals deferred (``signals_deferred``)."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with signals_deferred():
            self.loader.exec_module(module)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)  # get_source, resource readers...: the package's own loader answers


class _ImportedWhole(importlib.abc.MetaPathFinder):
    """Finds the named top-level packages as usual and has them loaded whole: a Ctrl-C in the middle of
    ``import torch`` would leave a half-initialised extension behind that can crash the interpreter's
    exit, so the signal is raised once the import is complete, wherever the package is first imported
    (torch is imported lazily, only by runs that need it)."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _LoadedWhole(spec.loader)
        return spec


def import_whole(*names: str) -> None:
    """Have the top-level packages ``names`` imported with stop signals deferred (see ``_ImportedWhole``)."""
    if not any(isinstance(finder, _ImportedWhole) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ImportedWhole(frozenset(names)))


def configure_process() -> None:
    """Apply the command's process-wide settings (call once, from the entry point)."""
    from PIL import Image

    keep_freed_memory()
    Image.MAX_IMAGE_PIXELS = None
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    # The first ONNX export notes that the UNet's instance norms use per-image statistics: that is how the
    # network computes them (no running statistics), so the export is right and the note is noise here.
    warnings.filterwarnings("ignore", message="ONNX export mode is set to TrainingMode.EVAL", category=UserWarning)
    install_signal_handlers()
    import_whole("torch")
