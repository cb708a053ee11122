"""The ONNX export of both networks (batch norms folded), made once and cached on disk.

The file is named by a digest of what decides its contents: the weights (SHA-256 of each
checkpoint file, or of the tensors of modules passed in), the exporter (torch's version, the
opset) and ``EXPORT_VERSION`` of the graph code. Its metadata (the weights' fingerprints, for
the outputs' records) sits beside it in a small JSON file. Both are written to a temporary file
in the same folder and renamed into place, so a reader never sees half a file and two processes
exporting at once each finish with a whole, identical file. Finding a cached export needs
neither torch nor the checkpoints loaded (versions are read from package metadata).

Cache folder: ``$ANIMEFACE_SEG_CACHE``, else ``$XDG_CACHE_HOME/animeface-seg``, else
``~/.cache/animeface-seg``; exports go to its ``onnx/`` subfolder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from animeface_seg.engine.errors import EngineError

if TYPE_CHECKING:
    from torch import nn

    from animeface_seg.engine.models.stacked import StackedNetworks

#: Environment variable naming the cache folder.
CACHE_ENV = "ANIMEFACE_SEG_CACHE"
#: Raise when ``StackedNetworks`` or the export settings change what an export computes.
EXPORT_VERSION = 1
OPSET = 17
_CHUNK = 8 * 2**20


def cache_dir() -> Path:
    """The cache folder (see the module's docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "animeface-seg"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed onto ``path`` when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(name)
        os.replace(name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered in the cache by path, size and modification time
    (a checkpoint is read in full only the first time it is seen)."""
    path = Path(path).resolve()
    stat = path.stat()
    seen = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = cache_dir() / "digests" / seen
    with contextlib.suppress(OSError):
        return memo.read_text().strip()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    with contextlib.suppress(OSError), atomic_path(memo) as tmp:
        tmp.write_text(digest.hexdigest())
    return digest.hexdigest()


def module_digest(module: nn.Module) -> str:
    """SHA-256 of a module's tensors: every name, shape, dtype and value."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class CacheError(EngineError):
    """The export could not be written to the cache folder."""


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
    """A cached export: the ONNX file and the fingerprints of the weights it holds."""

    path: Path
    fingerprints: dict[str, str | None]

    @property
    def remove_background(self) -> bool:
        return self.fingerprints.get("abg") is not None


def cached(key: ExportKey) -> Export | None:
    """The export for ``key`` when it is in the cache, else None."""
    try:
        info = json.loads(key.path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return Export(key.path, info["fingerprints"]) if key.path.is_file() else None


def export(key: ExportKey, build: Callable[[], StackedNetworks], fingerprints: dict[str, str | None]) -> Export:
    """Export the networks ``build`` returns (folded, in eval mode) under ``key``, unless already cached."""
    found = cached(key)
    if found is not None:
        return found
    import torch

    stacked = build().eval()
    outputs = ["classes"] if stacked.isnet is None else ["classes", "mask"]
    axes = {"pixels": {0: "batch", 2: "height", 3: "width"}}
    axes.update({name: {0: "batch", 1: "height", 2: "width"} for name in outputs})
    example = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    try:
        with atomic_path(key.path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps({"fingerprints": fingerprints, "export_version": EXPORT_VERSION}))
        with atomic_path(key.path) as tmp:  # its DeprecationWarning is hidden by Python's default filters
            torch.onnx.export(stacked, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=["pixels"], output_names=outputs, dynamic_axes=axes)
    except OSError as exc:
        raise CacheError(f"cannot write the networks' ONNX export to {key.path.parent}: {exc.strerror or exc}. "
                         f"Point ${CACHE_ENV} at a writable folder, or run the networks in torch.",
                         setting="cache") from None
    return Export(key.path, fingerprints)
