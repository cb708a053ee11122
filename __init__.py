"""ComfyUI entry point: ComfyUI imports this file when the repository is in ``ComfyUI/custom_nodes/``.

When ``animeface_seg`` is not installed in ComfyUI's Python, this folder is appended to ``sys.path``
so the package beside this file is used; an installed ``animeface_seg`` is used as it is.
"""

import importlib.util
import os
import sys

if importlib.util.find_spec("animeface_seg") is None:
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from animeface_seg.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
