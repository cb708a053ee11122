"""The streaming batch run: decode, segment and write overlap, with bounded memory.

Decoding and preprocessing run on worker threads, batches of one padded shape run on the
device in the calling thread, and PNG encoding runs on worker threads. Every queue is
bounded, so memory stays flat however many inputs a run has. Each input ends as exactly one
``Outcome``; a bad file fails alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from animeface_seg.decode import ImageDecodeError, load_rgb
from animeface_seg.io import Job
from animeface_seg.preprocess import ImageShapeError
from animeface_seg.segmentor import Prepared, Segmentation, Segmentor
from animeface_seg.writers import write_outputs

Status = Literal["ok", "skipped", "error"]


@dataclass
class RunOptions:
    """What to write and how hard to work."""

    out_dir: Path
    kinds: tuple[str, ...] = ("map", "mask")
    skip_existing: bool = False
    batch_size: int = 1
    workers: int = 2
    max_pixels: int | None = None


@dataclass
class Outcome:
    """What happened to one input."""

    job: Job
    status: Status
    outputs: dict[str, Path] = field(default_factory=dict)
    error: str | None = None
    original_size: tuple[int, int] | None = None
    processed_size: tuple[int, int] | None = None
    class_fractions: tuple[float, ...] | None = None
    mask_coverage: float | None = None


@dataclass
class _Decoded:
    job: Job
    outputs: dict[str, Path]
    prepared: Prepared
    source: np.ndarray | None


def _decode(job: Job, outputs: dict[str, Path], segmentor: Segmentor, keep_source: bool,
            max_pixels: int | None) -> _Decoded:
    image = load_rgb(job.source, max_pixels=max_pixels)
    return _Decoded(job, outputs, segmentor.prepare(image), image if keep_source else None)


def _write(item: _Decoded, result: Segmentation) -> Outcome:
    try:
        write_outputs(result, item.outputs, item.source)
    except OSError as exc:
        return Outcome(item.job, "error", item.outputs, f"cannot write output: {exc.strerror or exc}")
    return Outcome(
        item.job,
        "ok",
        item.outputs,
        original_size=result.original_size,
        processed_size=result.processed_size,
        class_fractions=result.class_fractions,
        mask_coverage=result.mask_coverage,
    )


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, (ImageDecodeError, ImageShapeError)):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def process(
    jobs: Iterable[Job],
    segmentor: Segmentor,
    options: RunOptions,
) -> Iterator[Outcome]:
    """Run every job and yield one ``Outcome`` per job as it finishes.

    Ctrl-C in the calling thread stops taking new inputs: the batch in flight is discarded,
    outputs already being written are finished, then ``KeyboardInterrupt`` is re-raised.
    Nothing partial is left on disk.
    """
    keep_source = any(kind in options.kinds for kind in ("cutout", "overlay"))
    batch_size = max(1, options.batch_size)
    prefetch = max(2 * options.workers, 2 * batch_size)
    write_limit = 2 * options.workers + batch_size
    decoders = ThreadPoolExecutor(options.workers, thread_name_prefix="decode")
    writers = ThreadPoolExecutor(options.workers, thread_name_prefix="write")
    decoding: deque[tuple[Job, dict[str, Path], Future[_Decoded]]] = deque()
    writing: deque[Future[Outcome]] = deque()
    groups: dict[tuple[int, int], list[_Decoded]] = {}
    held = 0
    pending = iter(jobs)
    exhausted = False

    def run_group(shape: tuple[int, int] | None = None) -> Iterator[Outcome]:
        """Run the batch of ``shape``, or of the fullest group when none is given."""
        nonlocal held
        items = groups.pop(shape or max(groups, key=lambda s: len(groups[s])))
        held -= len(items)
        try:
            results = segmentor.run([item.prepared for item in items])
        except (RuntimeError, ValueError) as exc:
            for item in items:
                yield Outcome(item.job, "error", item.outputs, f"segmentation failed: {_error_text(exc)}")
            return
        for item, result in zip(items, results):
            writing.append(writers.submit(_write, item, result))

    def finished_writes(limit: int) -> Iterator[Outcome]:
        while writing and (writing[0].done() or len(writing) > limit):
            yield writing.popleft().result()

    try:
        while True:
            while not exhausted and len(decoding) < prefetch:
                job = next(pending, None)
                if job is None:
                    exhausted = True
                    break
                outputs = job.outputs(options.out_dir, options.kinds)
                if job.error:
                    yield Outcome(job, "error", outputs, job.error)
                elif options.skip_existing and all(path.is_file() for path in outputs.values()):
                    yield Outcome(job, "skipped", outputs)
                else:
                    future = decoders.submit(_decode, job, outputs, segmentor, keep_source, options.max_pixels)
                    decoding.append((job, outputs, future))
            if decoding:
                job, outputs, future = decoding.popleft()
                try:
                    item = future.result()
                except Exception as exc:  # any failure to read one file fails that file alone
                    yield Outcome(job, "error", outputs, _error_text(exc))
                    continue
                groups.setdefault(item.prepared.padded_shape, []).append(item)
                held += 1
                shape = item.prepared.padded_shape
                if len(groups[shape]) >= batch_size:
                    yield from run_group(shape)
                elif held >= 2 * batch_size:
                    yield from run_group()
            elif groups:
                yield from run_group()
            else:
                break
            yield from finished_writes(write_limit)
        yield from finished_writes(0)
    except KeyboardInterrupt:
        for _, _, future in decoding:
            future.cancel()
        for future in writing:
            yield future.result()
        raise
    finally:
        decoders.shutdown(wait=False, cancel_futures=True)
        writers.shutdown(wait=True)

