"""Process-wide settings that only the command's entry point makes, never the library.

The command owns its process, so it may: keep freed memory in glibc (``allocator.py``), let
the engine's own per-file pixel limit (``--max-pixels``) govern instead of Pillow's global
one, silence Pillow's warnings about large images, which that limit already handles, and
turn SIGTERM (what ``timeout``, systemd, Kubernetes and batch schedulers send) into the same
orderly stop as Ctrl-C.
"""

from __future__ import annotations

import signal
import warnings

from animeface_seg.cli.allocator import keep_freed_memory


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: every path that handles Ctrl-C handles this too (finish writes, summary)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def configure_process() -> None:
    """Apply the command's process-wide settings (call once, from the entry point)."""
    from PIL import Image

    keep_freed_memory()
    Image.MAX_IMAGE_PIXELS = None
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    signal.signal(signal.SIGTERM, _raise_terminated)
