"""Errors the engine raises for people to read, in the words of the problem, not of any front-end.

``setting`` names the engine parameter that governs the problem (``max_pixels``, ``device``,
``unet``, ...), so a front-end can add its own way to change it (a CLI flag, a node input).
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of the engine's user-facing errors."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ImageDecodeError(EngineError):
    """An input could not be turned into an RGB image; the message says why."""


class UnrecognisedImageError(ImageDecodeError):
    """The file is in no image format Pillow knows (it may still be a video)."""


class ImageShapeError(EngineError, ValueError):
    """The image's aspect ratio is too extreme to process at 512 on the short side."""


class DeviceError(EngineError):
    """The requested device or precision cannot be used here; the message says why."""


class WeightsError(EngineError):
    """A checkpoint could not be found, fetched or loaded; the message says which, where and why."""


class ImageInputError(EngineError, ValueError):
    """An image handed to the API is of a kind or shape the engine cannot take; the message says which."""


class SettingError(EngineError, ValueError):
    """A parameter of the API has a value it cannot take; ``setting`` names it."""


class OutOfMemory(EngineError, MemoryError):
    """One image did not fit in memory even alone; ``setting`` is the memory budget that should have refused it."""
