"""The work done on Ray workers: reading input bytes (tasks) and segmenting and writing (model actors).

Rows carry ``index`` (the job's place in the run), ``source`` and ``outputs`` (locations as
text, outputs in ``RunSettings.kinds`` order). Each stage adds to ``record``: empty while the
input is still to be processed, else the input's JSON record (see ``records.py``).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from animeface_seg.batch.naming import NEEDS_SOURCE, OutputKind
from animeface_seg.batch.settings import RunSettings
from animeface_seg.integrations.ray import records
from animeface_seg.integrations.ray.storage import Location, Storage, parse_location

Batch = dict[str, Any]


def job_locations(row_source: str, row_outputs: str, kinds: tuple[OutputKind, ...]) -> tuple[Location, dict[OutputKind, Location]]:
    """The source and output locations of a row (sent as text)."""
    return parse_location(row_source), dict(zip(kinds, map(parse_location, json.loads(row_outputs))))


def read_inputs(batch: Batch, settings: RunSettings, storage: Storage) -> Batch:
    """Read stage (stateless tasks): each input's bytes, or its record when it needs no work.

    Inputs whose outputs all exist are skipped here (``--skip-existing``), so they are never read.
    """
    from animeface_seg.batch.pipeline import Outcome, failed_outcome

    data: list[bytes] = []
    done: list[str] = []
    for source, outputs in zip(batch["source"], batch["outputs"]):
        location, targets = job_locations(source, outputs, settings.kinds)
        content, record = b"", ""
        try:
            if settings.skip_existing and storage.is_done(targets):
                record = records.encode(Outcome(records.NO_JOB, "skipped"))
            else:
                content = storage.read(location)
        except OSError as exc:
            record = records.encode(failed_outcome(records.NO_JOB, exc))
        data.append(content)
        done.append(record)
    return {**batch, "bytes": np.array(data, dtype=object), "record": np.array(done, dtype=object)}


class SegmentActor:
    """Model actor: one ``Segmentor`` (on the actor's GPU, or CPU), fed batches of input bytes.

    Decodes, segments in batches of one padded shape, writes every output to its mirrored
    location itself (local files atomically, objects in one whole-object put), and returns
    only the records.
    """

    def __init__(self, settings: RunSettings, storage: Storage, model: dict[str, Any]) -> None:
        from animeface_seg.batch.signature import Signature
        from animeface_seg.engine.segmentor import Segmentor

        self.settings = settings
        self.storage = storage
        self.keep_source = any(kind in NEEDS_SOURCE for kind in settings.kinds)
        self.segmentor = Segmentor.from_pretrained(**model)
        # The same settings record as the local engine writes, so either engine can resume the other's run.
        self.png_info = Signature.of(self.segmentor, layout=settings.layout).png_info()

    def __call__(self, batch: Batch) -> Batch:
        from animeface_seg.batch.pipeline import failed_outcome
        from animeface_seg.engine.batcher import ShapeBatcher

        done = list(batch["record"])
        batcher: ShapeBatcher[tuple[int, Any, np.ndarray | None]] = ShapeBatcher(
            self.settings.batch_size, key=lambda item: item[1].padded_shape)
        groups = []
        for i, content in enumerate(batch["bytes"]):
            if done[i]:
                continue
            try:
                image = _decode(content, self.settings.max_pixels)
                item = (i, self.segmentor.prepare(image), image if self.keep_source else None)
            except Exception as exc:  # noqa: BLE001 - any failure of one file is that file's error
                done[i] = records.encode(failed_outcome(records.NO_JOB, exc))
                continue
            groups += batcher.add(item)
        for group in groups + batcher.drain():
            try:
                results = self.segmentor.run([prepared for _, prepared, _ in group])
            except (RuntimeError, ValueError) as exc:
                for i, _, _ in group:
                    done[i] = records.encode(failed_outcome(records.NO_JOB, exc, "segmentation failed: "))
                continue
            for (i, _, source), result in zip(group, results):
                _, outputs = job_locations(batch["source"][i], batch["outputs"][i], self.settings.kinds)
                done[i] = self._store(result, outputs, source)
        return {"index": batch["index"], "record": np.array(done, dtype=object)}

    def _store(self, result, outputs: dict[OutputKind, Location], source: np.ndarray | None) -> str:
        """Write one input's outputs; its record."""
        from animeface_seg.batch.pipeline import Outcome

        try:
            _write(result, outputs, source, self.storage, self.png_info)
        except OSError as exc:
            return records.encode(Outcome(records.NO_JOB, "error", error=f"cannot write output: {exc.strerror or exc}"))
        return records.encode(Outcome(records.NO_JOB, "ok", original_size=result.original_size,
                                      processed_size=result.processed_size,
                                      class_fractions=result.class_fractions, mask_coverage=result.mask_coverage))


def _decode(content: bytes, max_pixels: int | None) -> np.ndarray:
    """Input bytes to an RGB array, with the local engine's checks and messages."""
    from animeface_seg.engine.decode import load_rgb
    from animeface_seg.engine.errors import ImageDecodeError

    if not content:
        raise ImageDecodeError("file is empty (0 bytes)")
    return load_rgb(io.BytesIO(content), max_pixels=max_pixels)


def _write(result, outputs: dict[OutputKind, Location], source: np.ndarray | None, storage: Storage,
           info: Any = None) -> None:
    """Local outputs through ``batch.writers`` (atomic renames); objects rendered to PNG bytes and put whole."""
    from pathlib import Path

    from animeface_seg.batch.writers import PNG_COMPRESS_LEVEL, render, write_outputs

    if all(isinstance(path, Path) for path in outputs.values()):
        write_outputs(result, outputs, source, info)
        return
    for kind, path in outputs.items():
        buffer = io.BytesIO()
        render(result, kind, source).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=info)
        storage.write(path, buffer.getvalue())
