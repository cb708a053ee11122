"""What the user asked one run for, decided from the command's options before anything heavy loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from animeface_seg.batch.naming import Layout, OutputKind


@dataclass(frozen=True)
class RunRequest:
    """A run's inputs, OUT, what to write and how; ``mode`` says which runner takes it."""

    inputs: list[str]
    output: Path
    """OUT: a local folder, or (``--engine ray``) an object-storage location (a ``StoragePath``)."""
    kinds: tuple[OutputKind, ...]
    mode: str = "local"
    """``local``, ``watch`` or ``ray``."""
    keep_background: bool = False
    size: str = "original"
    cutout: bool = False
    overlay: bool = False
    class_masks: tuple[str, ...] = ()
    skip_existing: bool = False
    recursive: bool = True
    device: str = "auto"
    precision: str = "auto"
    runtime: str = "auto"
    batch_size: int | None = None
    workers: int | None = None
    unet: Path | None = None
    abg: Path | None = None
    weights_dir: Path | None = None
    max_pixels: int | None = None
    quiet: bool = False
    json_lines: bool = False
    layout: Layout = Layout.MIRROR
    root: Path | None = None
    null: bool = False
    settle: float | None = None
    memory_budget: int | None = None
    review: bool = False
    """Write OUT/index.html at the end (``batch/review.py``)."""
    frame_step: int = 1
    first_frame: bool = False
    """Take videos and animated images as one picture (their first frame) instead of clips."""
    encode: str = "frames"
    """What a clip gives: ``frames``, ``video`` or ``both`` (``RunSettings.encode``)."""
    ray_options: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> dict[str, Any]:
        """``Segmentor.from_pretrained`` arguments (the device is each runner's)."""
        return dict(unet=self.unet, abg=self.abg, weights_dir=self.weights_dir,
                    remove_background=not self.keep_background, precision=self.precision, runtime=self.runtime,
                    output_size=self.size)
