"""The work done on Ray workers: reading input bytes (tasks) and the shared stages (model actors).

Rows carry ``index`` (the job's place in the run), ``source`` and ``relative`` (the job, as
text). Each stage adds to ``record``: empty while the input is still to be processed, else the
input's record (see ``records.py``). The actors take every input through ``batch.stages``, the
local engine's own stages: the same outputs (``OutputSpec.outputs``, so the same layout), the
same resume rule, memory budget (measured on the actor's machine), error records and
all-or-nothing writes.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.inputs import KINDS, STILL
from animeface_seg.batch.settings import RunSettings
from animeface_seg.integrations.ray import records
from animeface_seg.integrations.ray.storage import Storage, parse_location

Batch = dict[str, Any]


def job_row(index: int, job: Job) -> dict[str, Any]:
    """The row that carries ``job`` to the workers (text only, so blocks need no schema; local paths
    absolute, as workers need not share the command's working folder)."""
    source = job.source.absolute() if isinstance(job.source, Path) else job.source
    return {"index": index, "source": str(source), "relative": json.dumps(list(job.relative.parts)),
            "kind": job.kind.name}


def row_job(source: str, relative: str, kind: str = STILL.name) -> Job:
    """The job a row carries."""
    return Job(parse_location(source), PurePath(*json.loads(relative)), kind=KINDS[kind])


def read_inputs(batch: Batch, settings: RunSettings, storage: Storage) -> Batch:
    """Read stage (stateless tasks): each input's bytes, or its record when reading failed.

    With ``--skip-existing`` an input whose outputs all exist is not read here: the actor checks
    their settings record first and reads the input itself only when it must be made again.
    """
    from animeface_seg.batch.outcome import failed_outcome

    data: list[bytes] = []
    read: list[bool] = []
    done: list[str] = []
    for source, relative in zip(batch["source"], batch["relative"]):
        job = row_job(source, relative)
        content, record, wanted = b"", "", True
        try:
            outputs = settings.spec.outputs(job)
            wanted = not (settings.skip_existing and all(map(storage.is_file, outputs.values())))
            if wanted:
                content = storage.read(job.source)
        except OSError as exc:
            record = records.encode(failed_outcome(job, exc, "read"))
        data.append(content)
        read.append(wanted)
        done.append(record)
    return {**batch, "bytes": np.array(data, dtype=object), "read": np.array(read),
            "record": np.array(done, dtype=object)}


class SegmentActor:
    """Model actor: one ``Segmentor`` (on the actor's GPU, or CPU) and the run's ``Stages``.

    Segments in batches of one padded shape, writes every output to its location itself (local
    files through temporary names, objects in whole puts, a set all or nothing), and returns
    only the records.
    """

    def __init__(self, settings: RunSettings, storage: Storage, model: dict[str, Any]) -> None:
        from animeface_seg.batch.stages import Stages
        from animeface_seg.engine.segmentor import Segmentor

        self.storage = storage
        self.stages = Stages(Segmentor.from_pretrained(**model), settings, storage)

    def __call__(self, batch: Batch) -> Batch:
        from animeface_seg.batch.outcome import Outcome
        from animeface_seg.batch.stages import Decoded
        from animeface_seg.engine.batcher import ShapeBatcher

        stages = self.stages
        done = list(batch["record"])
        batcher: ShapeBatcher[tuple[int, Decoded]] = ShapeBatcher(
            stages.settings.batch_size, key=lambda item: item[1].shape, limit=stages.batch_limit)
        groups = []
        for i, content in enumerate(batch["bytes"]):
            if done[i]:
                continue
            work = stages.begin(row_job(batch["source"][i], batch["relative"][i], batch["kind"][i]))
            if isinstance(work, Outcome):
                done[i] = records.encode(work)
                continue
            try:
                if not batch["read"][i]:
                    content = self.storage.read(work.job.source)
                groups += batcher.add((i, stages.decode(work, content)))
            except Exception as exc:  # noqa: BLE001 - any failure of one file is that file's error
                done[i] = records.encode(stages.failed(work, exc, "read"))
        for group in groups + batcher.drain():
            for (i, _), result in zip(group, stages.segment([item for _, item in group])):
                done[i] = records.encode(result if isinstance(result, Outcome) else stages.write(*result))
        return {"index": batch["index"], "record": np.array(done, dtype=object)}
