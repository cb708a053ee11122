"""animeface-seg: batch anime face-part segmentation and character masks.

The Python API mirrors the command line::

    from animeface_seg import Segmentor
    seg = Segmentor(weights_dir="weights/")
    result = seg(["a.png", "b.jpg"])[0]   # .colors, .classes, .mask
"""

from animeface_seg.segmentor import Segmentation, Segmentor

__version__ = "0.1.0"

__all__ = ["Segmentation", "Segmentor", "__version__"]
