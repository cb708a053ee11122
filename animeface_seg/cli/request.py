"""What the user asked one run for, decided from the command's options (``flags.py``) before anything heavy loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from animeface_seg.batch.settings import RunSettings
from animeface_seg.batch.spec import OutputSpec


@dataclass(frozen=True)
class RunRequest:
    """A run's inputs, its output spec, the segmentor it needs and how hard to work; ``mode`` says which runner
    takes it."""

    inputs: list[str]
    spec: OutputSpec
    mode: str = "local"
    """``local``, ``watch`` or ``ray``."""
    model: dict[str, Any] = field(default_factory=dict)
    """``Segmentor.from_pretrained`` arguments (the device is each runner's)."""
    device: str = "auto"
    recursive: bool = True
    root: Path | None = None
    null: bool = False
    settle: float | None = None
    batch_size: int | None = None
    workers: int | None = None
    skip_existing: bool = False
    max_pixels: int | None = None
    memory_budget: int | None = None
    quiet: bool = False
    json_lines: bool = False
    ray_options: dict[str, Any] = field(default_factory=dict)

    def settings(self, device_type: str) -> RunSettings:
        """The run's settings once the runner knows where the networks run (``cpu`` or ``cuda``)."""
        return RunSettings.decide(self.spec, device_type, batch_size=self.batch_size, workers=self.workers,
                                  skip_existing=self.skip_existing, max_pixels=self.max_pixels,
                                  memory_budget=self.memory_budget)
