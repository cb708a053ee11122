"""ComfyUI node pack: ``AnimeFaceSegPreprocessor`` and ``AnimeFaceClassMask``.

Only for ComfyUI to import (never by ``import animeface_seg``).

Importing it changes nothing; the ``models/animeface_seg/`` folder is registered with ComfyUI's
``folder_paths`` on the node's first execution. A pip user's loader folder,
``ComfyUI/custom_nodes/animeface_seg_loader/__init__.py``, is one line::

    from animeface_seg.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
"""

from animeface_seg.integrations.comfyui.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
