"""Process-wide settings that only the command's entry point makes, never the library.

The command owns its process, so it may: keep freed memory in glibc (``allocator.py``), let
the engine's own per-file pixel limit (``--max-pixels``) govern instead of Pillow's global
one, and silence Pillow's warnings about large images, which that limit already handles.
"""

from __future__ import annotations

import warnings

from animeface_seg.cli.allocator import keep_freed_memory


def configure_process() -> None:
    """Apply the command's process-wide settings (call once, from the entry point)."""
    from PIL import Image

    keep_freed_memory()
    Image.MAX_IMAGE_PIXELS = None
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
