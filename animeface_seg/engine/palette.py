"""The seven face-part classes and their colours, exactly as the reference preprocessor draws them."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

#: Class names in index order (the UNet's output channel = the class index).
CLASS_NAMES: tuple[str, ...] = ("background", "hair", "eye", "mouth", "face", "skin", "clothes")

#: RGB colour of each class, same order as ``CLASS_NAMES``.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 255, 0),
    (0, 0, 255),
    (255, 0, 0),
    (255, 255, 255),
    (0, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
)

#: Number of classes: the UNet's output channels are sized from the palette, so the two cannot drift.
NUM_CLASSES: int = len(CLASS_NAMES)


def class_index(name: str) -> int:
    """The index of class ``name`` (its value in a class map); ``ValueError`` listing the valid names."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown class {name!r}; the classes are {', '.join(CLASS_NAMES)}") from None


def select_classes(spec: str) -> tuple[str, ...]:
    """Class names from a comma-separated list such as ``"hair,face"``, or ``"all"``, in palette order.

    Letter case and spaces around names are ignored; an unknown or empty name is a ``ValueError``
    that lists the valid ones.
    """
    names = {name.strip().lower() for name in spec.split(",")}
    unknown = sorted(names - {*CLASS_NAMES, "all"})
    if unknown:
        listed = ", ".join(map(repr, unknown))
        raise ValueError(f"unknown class{'es' if len(unknown) > 1 else ''} {listed}; choose from "
                         f"{', '.join(CLASS_NAMES)}, or all")
    return CLASS_NAMES if "all" in names else tuple(name for name in CLASS_NAMES if name in names)


@functools.cache
def palette_array() -> np.ndarray:
    """The palette as a read-only (7, 3) uint8 array, for lookups ``palette[classes]``."""
    import numpy as np  # here, so the names import with the standard library alone (ComfyUI's node listing)

    palette = np.array(CLASS_COLORS, dtype=np.uint8)
    palette.flags.writeable = False
    return palette


#: Pixels per step of ``colorize`` and ``class_counts``: numpy turns uint8 indices into 8-byte ones first,
#: so whole-map lookups of a 36-megapixel map would hold 290 MB of indices; bands hold 8 MB.
_BAND_PIXELS = 1 << 20


def colorize(classes: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 colour map of an (H, W) class map (``palette[classes]``), a band of rows at a time."""
    import numpy as np

    colors = np.empty((*classes.shape, 3), dtype=np.uint8)
    step = max(1, _BAND_PIXELS // max(1, classes.shape[1]))
    for start in range(0, classes.shape[0], step):
        np.take(palette_array(), classes[start:start + step], axis=0, out=colors[start:start + step])
    return colors


def class_counts(classes: np.ndarray) -> np.ndarray:
    """How many pixels of an (H, W) class map hold each class, in ``CLASS_NAMES`` order, a band at a time."""
    import numpy as np

    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    flat = classes.reshape(-1)
    for start in range(0, flat.size, _BAND_PIXELS):
        counts += np.bincount(flat[start:start + _BAND_PIXELS], minlength=NUM_CLASSES)[:NUM_CLASSES]
    return counts


def palette_tensor(device: torch.device | str = "cpu") -> torch.Tensor:
    """The palette as a (7, 3) uint8 tensor, for lookups ``palette[classes]`` on the device."""
    import torch  # here, so the names and colours import without torch (the CLI's fast start)

    return torch.tensor(CLASS_COLORS, dtype=torch.uint8, device=device)
