"""Network definitions: pure ``nn.Module`` classes, no weight loading (see ``weights.py``)."""

from animeface_seg.engine.models.isnet import ISNet
from animeface_seg.engine.models.unet import UNet

__all__ = ["ISNet", "UNet"]
