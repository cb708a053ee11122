"""The ONNX export of both networks (batch norms folded), made once and cached on disk.

The file is named by a digest of what decides its contents: the weights (SHA-256 of each
checkpoint file, or of the tensors of modules passed in), the exporter (torch's version, the
opset) and ``EXPORT_VERSION`` of the graph code. Its record beside it (``cache_files``: written
last, holding the file's size and SHA-256) also keeps the weights' fingerprints, for the outputs'
records. The export is written to a temporary file in the same folder and renamed into place, so
a reader never sees half a file and two processes exporting at once each finish with a whole,
identical file; one that fails its check is exported again, and where the cache cannot be
written the export is kept in memory for this run. Finding a cached export needs neither torch
nor the checkpoints loaded (versions are read from package metadata).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from animeface_seg.engine.runtimes.cache_files import CACHE_ENV, Cache, cache_dir, record_path

__all__ = ["CACHE_ENV", "EXPORT_VERSION", "OPSET", "Export", "ExportKey", "cache_dir", "cached", "export",
           "file_digest", "module_digest"]

if TYPE_CHECKING:
    from torch import nn

    from animeface_seg.engine.models.stacked import StackedNetworks

#: Raise when ``StackedNetworks`` or the export settings change what an export computes.
EXPORT_VERSION = 2  # 2: sealed by a record written last
OPSET = 17


def file_digest(path: Path, cache: Cache | None = None) -> str:
    """SHA-256 of a file's bytes, memoised in the cache by the file's identity (``Cache.digest``: a
    checkpoint is read in full only the first time it is seen, and again whenever it is written to)."""
    return (cache or Cache()).digest(path)


def module_digest(module: nn.Module) -> str:
    """SHA-256 of a module's tensors: every name, shape, dtype and value."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ExportKey:
    """What an export is made from: each network's weights digest (``abg`` None: background kept)."""

    unet: str
    abg: str | None

    @property
    def path(self) -> Path:
        """Where the export of these weights with this exporter lives in the cache."""
        text = f"{EXPORT_VERSION}|opset {OPSET}|torch {metadata.version('torch')}|{self.unet}|{self.abg}"
        kind = "keep-background" if self.abg is None else "remove-background"
        return cache_dir() / "onnx" / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.onnx"


@dataclass(frozen=True)
class Export:
    """An export: the ONNX file in the cache (or, where the cache cannot be written, its bytes in
    ``model`` for this run) and the fingerprints of the weights it holds."""

    path: Path
    fingerprints: dict[str, str | None]
    model: bytes | None = None

    @property
    def remove_background(self) -> bool:
        return self.fingerprints.get("abg") is not None

    @property
    def source(self) -> str | bytes:
        """What a runtime opens: the file's path, or the bytes kept in memory."""
        return str(self.path) if self.model is None else self.model


def cached(key: ExportKey, cache: Cache | None = None) -> Export | None:
    """The export for ``key`` when it is in the cache and whole, else None (a damaged one is reported)."""
    cache = cache or Cache()
    info = cache.check(key.path)
    if info is None:
        return None
    if not isinstance(info.get("fingerprints"), dict):
        cache.damaged(record_path(key.path), "its record holds no fingerprints")
        return None
    return Export(key.path, info["fingerprints"])


def export(key: ExportKey, build: Callable[[], StackedNetworks], fingerprints: dict[str, str | None],
           cache: Cache | None = None) -> Export:
    """Export the networks ``build`` returns (folded, in eval mode) to the cache under ``key`` (whatever
    is there is replaced: ask ``cached`` first); kept in memory, after one warning, where the cache
    cannot be written."""
    cache = cache or Cache()
    model = _onnx_bytes(build())
    with cache.sealing(key.path, {"fingerprints": fingerprints, "export_version": EXPORT_VERSION}) as tmp:
        if tmp is not None:
            tmp.write_bytes(model)
    return Export(key.path, fingerprints) if cache.writable else Export(key.path, fingerprints, model)


def _onnx_bytes(stacked: StackedNetworks) -> bytes:
    """The ONNX file of ``stacked`` in eval mode: uint8 pixels in, classes (and mask) out, any batch and size."""
    import torch

    stacked = stacked.eval()
    outputs = ["classes"] if stacked.isnet is None else ["classes", "mask"]
    axes = {"pixels": {0: "batch", 2: "height", 3: "width"}}
    axes.update({name: {0: "batch", 1: "height", 2: "width"} for name in outputs})
    example = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    buffer = io.BytesIO()
    # its notes (deprecation, instance norms in training form) are the command's to filter, not the library's
    torch.onnx.export(stacked, (example,), buffer, dynamo=False, opset_version=OPSET,
                      input_names=["pixels"], output_names=outputs, dynamic_axes=axes)
    return buffer.getvalue()

