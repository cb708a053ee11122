"""What an output was made with, recorded in the PNG itself, so a resume trusts only matching outputs.

Every PNG a run writes carries a text chunk ``animeface-seg`` holding a JSON object: the
output format version, the size mode, whether the background was kept (``KEEP_BACKGROUND_KEY``), the precision, a
fingerprint of each network's weights and the output layout. ``--skip-existing`` skips an
input only when all its outputs exist, are whole PNGs (``pngcheck``: the chunks walk to an IEND
that ends the file) and carry the run's own record; otherwise it is processed again, and
``stale_reason`` says why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import BinaryIO

from PIL.PngImagePlugin import PngInfo

from animeface_seg.batch.naming import Layout
from animeface_seg.batch.pngcheck import DamagedPNG, NotPNG, text_chunks
from animeface_seg.batch.store import LOCAL, OutputStore
from animeface_seg.engine.segmentor import Segmentor

#: PNG text chunk key of the record.
KEY = "animeface-seg"
#: Version of the output files' format; raise it when the same settings would give different files.
FORMAT_VERSION = 1
#: The record's key for the background choice: stored as "the background was kept" (``not remove_background``),
#: as every output and manifest written so far holds it; renaming or flipping it would make every resume redo all.
KEEP_BACKGROUND_KEY = "keep_background"


@dataclass(frozen=True)
class Signature:
    """The settings and weights that decide an output's pixels."""

    size: str
    remove_background: bool
    precision: str
    unet: str
    abg: str | None
    layout: str = "mirror"
    format: int = FORMAT_VERSION

    @classmethod
    def of(cls, segmentor: Segmentor, layout: str = "mirror") -> Signature:
        """The signature of what ``segmentor`` writes with this output ``layout``."""
        return cls(
            size=segmentor.output_size,
            remove_background=segmentor.remove_background,
            precision=segmentor.precision,
            unet=segmentor.fingerprints["unet"],
            abg=segmentor.fingerprints["abg"],
            layout=Layout(layout).value,  # the name, as the record stores it and messages quote it
        )

    def record(self) -> dict:
        """The record as stored (and compared), its keys in this order: the fields, with the background choice
        under ``KEEP_BACKGROUND_KEY``."""
        record = {}
        for name, value in asdict(self).items():
            if name == "remove_background":
                name, value = KEEP_BACKGROUND_KEY, not value
            record[name] = value
        return record

    def to_text(self) -> str:
        """The JSON text stored in each output."""
        return json.dumps(self.record(), sort_keys=True)

    def png_info(self) -> PngInfo:
        """The text chunk to save with each output PNG."""
        info = PngInfo()
        info.add_text(KEY, self.to_text())
        return info


def read(stream: BinaryIO) -> dict | None:
    """The record of the whole output PNG in a seekable ``stream``, or None when it holds none (or is no PNG).

    Raises ``DamagedPNG`` when the file is not a whole PNG, ``OSError`` when it cannot be read.
    """
    try:
        text = text_chunks(stream).get(KEY)
    except NotPNG:
        return None
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def differences(found: dict, expected: dict) -> str:
    """The settings in which a record ``found`` differs from ``expected``, in words (PNG outputs and videos)."""
    names = {"unet": "UNet weights", "abg": "mask weights", "format": "output format version"}
    parts = []
    for key, value in expected.items():
        if found.get(key) != value:
            parts.append(f"{names.get(key, key)} {found.get(key)!r} (now {value!r})"
                         if key not in ("unet", "abg") else f"other {names[key]}")
    return ", ".join(parts)


def stale_reason(outputs: Mapping[object, PurePath], expected: Signature | None,
                 store: OutputStore = LOCAL) -> str | None:
    """Why the outputs of a job must be made again, or None when they all exist in ``store``, are whole
    PNGs and carry ``expected`` as their record. With ``expected`` None only existence is checked.
    """
    for path in outputs.values():
        if not store.is_file(path):
            return f"{path.name} is missing"
    if expected is None:
        return None
    wanted = expected.record()
    for path in outputs.values():
        try:
            with store.open(path) as stream:
                found = read(stream)
        except DamagedPNG as exc:
            return f"{path.name} {exc} (left unfinished or damaged)"
        except OSError as exc:
            return f"{path.name} cannot be read ({exc.strerror or exc})"
        if found is None:
            return f"{path.name} has no animeface-seg record (made by an older version or another tool)"
        if found != wanted:
            return f"{path.name} was made with other settings: {differences(found, wanted)}"
    return None
