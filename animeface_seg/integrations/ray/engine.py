"""``--engine ray``: the planned jobs run on a Ray cluster, the same ``Outcome``s come back.

The driver (the command) plans and reports; Ray Data reads every input's bytes in tasks and
streams them to model actors, one ``Segmentor`` each (a GPU per actor when the cluster has
GPUs, else CPU actors), which write the outputs themselves and return small records. The
records become ``Outcome``s here, as the local engine's ``process`` yields them, and are also
kept in OUT's manifest (``batch/manifest.py``) when the run ends.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.manifest import Manifest
from animeface_seg.batch.naming import OutputKind
from animeface_seg.batch.outcome import Outcome, early_outcome, record
from animeface_seg.batch.settings import RunSettings
from animeface_seg.engine.errors import EngineError
from animeface_seg.integrations.ray import records
from animeface_seg.integrations.ray.address import check_reachable
from animeface_seg.integrations.ray.storage import Location, Storage

INSTALL_HINT = "pip install 'animeface-seg[ray]'"
#: Rows handed to an actor per call, in network batches: more than one batch, so images of one
#: padded shape can be grouped when the shapes are mixed.
BATCHES_PER_CALL = 4


def require_ray() -> None:
    """Raise ``EngineError`` naming the install command when Ray Data is missing."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError(f"--engine ray needs Ray Data, which is not installed: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class ClusterOptions:
    """How the user asked for the cluster: address, replica count, GPUs per replica, device."""

    address: str | None = None
    replicas: int | None = None
    gpus_per_replica: float | None = None
    device: str = "auto"


@dataclass(frozen=True)
class Cluster:
    """The connected cluster and how the model actors are placed on it."""

    address: str
    started: bool
    """Whether this process started the instance (and so shuts it down)."""
    cpus: float
    gpus: float
    replicas: int
    gpus_per_replica: float

    @property
    def device_type(self) -> str:
        """``cuda`` when the actors hold GPUs, else ``cpu``."""
        return "cuda" if self.gpus_per_replica > 0 else "cpu"

    @property
    def description(self) -> str:
        """E.g. ``Ray at 127.0.0.1:6379 (2 CPUs, 0 GPUs): 2 CPU actors``."""
        kind = f"actors with {self.gpus_per_replica:g} GPU each" if self.gpus_per_replica else "CPU actors"
        where = "a local Ray instance" if self.started else f"Ray at {self.address}"
        return f"{where} ({self.cpus:g} CPUs, {self.gpus:g} GPUs): {self.replicas} {kind}"


def connect(options: ClusterOptions) -> Cluster:
    """Join the cluster at ``options.address``, else ``$RAY_ADDRESS``, else start a local instance.

    A Ray session this process already has (a host program's ``ray.init``) is used as it is.
    Defaults use the whole cluster: one actor per GPU, or without GPUs one single-threaded CPU
    actor per CPU. Reading takes no CPU reservation, so it never waits behind the actors.
    """
    require_ray()
    import ray

    started = False
    address = None
    if not ray.is_initialized():
        address = options.address or os.environ.get("RAY_ADDRESS") or "local"
        check_reachable(address, "--ray-address" if options.address else "$RAY_ADDRESS")
        extra: dict[str, Any] = {"include_dashboard": False} if address == "local" else {}
        ray.init(address=address, log_to_driver=False, logging_level="WARNING", **extra)
        started = address == "local"
    if address in (None, "local"):
        address = ray.get_runtime_context().gcs_address
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    wants_gpu = options.device.startswith("cuda") or bool(options.gpus_per_replica)
    if wants_gpu and gpus == 0:
        setting = "device" if options.device.startswith("cuda") else "gpus_per_replica"
        raise EngineError(f"the Ray cluster at {address} has no GPUs", setting=setting)
    per_gpu = 0.0 if options.device == "cpu" or gpus == 0 else (options.gpus_per_replica or 1.0)
    if options.replicas is not None:
        replicas = options.replicas
    elif per_gpu:
        replicas = max(1, math.floor(gpus / per_gpu))
    else:
        replicas = max(1, math.floor(cpus))
    return Cluster(address, started, cpus, gpus, replicas, per_gpu)


def run(jobs: Iterable[Job], settings: RunSettings, cluster: Cluster, storage: Storage,
        model: dict[str, Any]) -> Iterator[Outcome]:
    """Run every job on the cluster and yield one ``Outcome`` per job as its record arrives.

    ``model`` holds ``Segmentor.from_pretrained`` arguments (paths must exist on the workers).
    Jobs that discovery already failed are reported without going to the cluster. The
    manifest is written when the iteration ends, however it ends, once any record came back.
    """
    with Manifest(settings.spec.out_dir, read=storage.read, write=storage.write, warn=_warn) as manifest:
        for outcome in _outcomes(list(jobs), settings, cluster, storage, model):
            manifest.add(record(outcome))
            yield outcome


def _warn(message: str) -> None:
    print(f"animeface-seg: warning: {message}", file=sys.stderr)


def close(cluster: Cluster) -> None:
    """Stop the Ray instance this process started; leave a cluster it joined running."""
    import ray

    if cluster.started:
        ray.shutdown()


def _outcomes(jobs: list[Job], settings: RunSettings, cluster: Cluster, storage: Storage,
              model: dict[str, Any]) -> Iterator[Outcome]:
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    from animeface_seg.integrations.ray.actor import SegmentActor, job_row, read_inputs

    pending: dict[int, tuple[Job, dict[OutputKind, Location]]] = {}
    rows = []
    for index, job in enumerate(jobs):
        outputs = settings.spec.outputs(job)
        early = early_outcome(job)
        if early is not None:
            yield early
            continue
        pending[index] = (job, outputs)
        rows.append(job_row(index, job))
    if not rows:
        return
    if isinstance(settings.spec.out_dir, Path):  # workers need not share the command's working folder
        settings = replace(settings, spec=replace(settings.spec, out_dir=settings.spec.out_dir.absolute()))
    context = DataContext.get_current()
    context.enable_progress_bars = False  # the command's own progress bar counts the records
    call_rows = settings.batch_size * BATCHES_PER_CALL  # one block per actor call: every actor gets work early
    blocks = max(math.ceil(len(rows) / call_rows), min(len(rows), cluster.replicas))
    model = {**model, "device": "cuda" if cluster.gpus_per_replica else "cpu"}
    dataset = (
        ray.data.from_items(rows, override_num_blocks=blocks)
        .map_batches(read_inputs, fn_kwargs={"settings": settings, "storage": storage}, batch_format="numpy",
                     num_cpus=0)  # I/O: must never wait for CPUs the actors hold
        .map_batches(SegmentActor, fn_constructor_kwargs={"settings": settings, "storage": storage, "model": model},
                     batch_size=call_rows, batch_format="numpy",
                     compute=ActorPoolStrategy(size=cluster.replicas), num_gpus=cluster.gpus_per_replica or None,
                     num_cpus=1)
    )
    try:
        for row in dataset.iter_rows():
            job, outputs = pending.pop(int(row["index"]))
            yield records.decode(row["record"], job, outputs)
    except (ray.exceptions.RayError, OSError) as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if len(pending) == len(rows):
            raise EngineError(f"the Ray job failed before any input was done: {reason}") from None
        for job, _ in pending.values():
            yield Outcome(job, "error", {}, f"the Ray job failed: {reason}")
