"""The small record each input sends back from a Ray actor, and the ``Outcome`` it becomes on the driver.

A record is JSON text (one string column whatever the fields hold, so Ray's blocks never
need a schema): the status, error and statistics, keyed by the job's index in the run.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.naming import OutputKind
from animeface_seg.batch.pipeline import Outcome
from animeface_seg.integrations.ray.storage import Location

_FIELDS = ("status", "error", "error_setting", "original_size", "processed_size", "class_fractions", "mask_coverage")


def encode(outcome: Outcome) -> str:
    """An outcome's status, error and statistics as JSON (its job and outputs are known to the driver)."""
    return json.dumps({name: getattr(outcome, name) for name in _FIELDS})


#: Stands in for the job in outcomes built on workers, where only the record travels back.
NO_JOB = Job(PurePosixPath(), PurePosixPath())


def decode(record: str, job: Job, outputs: dict[OutputKind, Location]) -> Outcome:
    """The driver's ``Outcome`` for ``job`` from the record its actor sent."""
    fields = json.loads(record)
    for name in ("original_size", "processed_size", "class_fractions"):
        if fields[name] is not None:
            fields[name] = tuple(fields[name])
    return Outcome(job, outputs=outputs, **fields)
