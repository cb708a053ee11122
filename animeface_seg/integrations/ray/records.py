"""The small record each input sends back from a Ray actor, and the ``Outcome`` it becomes on the driver.

A record is JSON text (one string column whatever the fields hold, so Ray's blocks never
need a schema): the status, error, reason, statistics and which output kinds the outcome
lists (none for an error), keyed by the job's index in the run.
"""

from __future__ import annotations

import json
from pathlib import PurePath

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.naming import OutputKind
from animeface_seg.batch.outcome import Outcome

_FIELDS = ("status", "error", "error_setting", "reason", "original_size", "processed_size", "class_fractions",
           "mask_coverage")


def encode(outcome: Outcome) -> str:
    """An outcome's status, error, statistics and listed output kinds as JSON (the driver knows the job)."""
    return json.dumps({"kinds": [str(kind) for kind in outcome.outputs],
                       **{name: getattr(outcome, name) for name in _FIELDS}})


def decode(record: str, job: Job, outputs: dict[OutputKind, PurePath]) -> Outcome:
    """The driver's ``Outcome`` for ``job`` (whose outputs, as the driver names them, are ``outputs``)."""
    fields = json.loads(record)
    for name in ("original_size", "processed_size", "class_fractions"):
        if fields[name] is not None:
            fields[name] = tuple(fields[name])
    kinds = set(fields.pop("kinds"))
    listed = {kind: path for kind, path in outputs.items() if str(kind) in kinds}
    return Outcome(job, outputs=listed, **fields)
