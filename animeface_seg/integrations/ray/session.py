"""What the command asks of the Ray engine: plan the inputs, join the cluster, run, let go."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.outcome import Outcome
from animeface_seg.batch.settings import RunSettings
from animeface_seg.integrations.ray import engine
from animeface_seg.integrations.ray.discovery import discover_anywhere
from animeface_seg.integrations.ray.storage import Location, Storage, s3_endpoint as resolve_endpoint


class RaySession:
    """One ``--engine ray`` run: ``discover``, ``start``, ``process``, ``close``, in that order.

    ``model`` holds the ``Segmentor.from_pretrained`` arguments each actor builds its engine with.
    Raises ``EngineError`` (naming the install command) when Ray Data is not installed.
    """

    def __init__(self, *, model: dict[str, Any], device: str = "auto", address: str | None = None,
                 replicas: int | None = None, gpus_per_replica: float | None = None,
                 s3_endpoint: str | None = None) -> None:
        engine.require_ray()
        self.model = model
        self.options = engine.ClusterOptions(address, replicas, gpus_per_replica, device)
        self.storage = Storage(resolve_endpoint(s3_endpoint))
        self.cluster: engine.Cluster | None = None

    def discover(self, inputs: Sequence[str], out_dir: Location, *, recursive: bool = True,
                 stdin: TextIO | None = None) -> list[Job]:
        """Jobs for local paths and object-storage URIs (see ``discovery.discover_anywhere``)."""
        return discover_anywhere(inputs, out_dir, self.storage, recursive=recursive, stdin=stdin)

    def start(self) -> None:
        """Join (or start) the cluster; Ray's own log lines and progress bars give way to the command's."""
        logging.getLogger("ray").setLevel(logging.WARNING)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        self.cluster = engine.connect(self.options)

    @property
    def device_type(self) -> str:
        """``cuda`` when the actors hold GPUs, else ``cpu`` (decides ``RunSettings`` defaults)."""
        assert self.cluster is not None, "start() first"
        return self.cluster.device_type

    @property
    def description(self) -> str:
        """The cluster and its actors in words, for the command's device line."""
        assert self.cluster is not None, "start() first"
        return self.cluster.description

    def process(self, jobs: Iterable[Job], settings: RunSettings) -> Iterator[Outcome]:
        """Run every job on the cluster, one ``Outcome`` per job as it finishes (like ``pipeline.process``)."""
        assert self.cluster is not None, "start() first"
        model = {**self.model, **{name: _absolute(self.model.get(name)) for name in ("unet", "abg", "weights_dir")}}
        return engine.run(jobs, settings, self.cluster, self.storage, model)

    def close(self) -> None:
        """Stop a Ray instance this session started; a cluster it joined keeps running."""
        if self.cluster is not None:
            engine.close(self.cluster)


def _absolute(path: Path | None) -> str | None:
    """Weight paths as absolute text: workers may not share the command's working folder."""
    return None if path is None else str(Path(path).absolute())
