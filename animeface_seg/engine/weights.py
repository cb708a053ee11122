"""Where the two checkpoints come from and how they become networks.

Sources, first match wins: an explicit file path, a directory holding both files (the
``weights_dir`` argument, then any extra candidate files a front-end knows of, then
``$ANIMEFACE_SEG_WEIGHTS``), the Hugging Face cache, and only then a download from the hub.
Every failure is a ``WeightsError`` whose message says which file, where it was looked for,
and why. Checkpoints are read with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache

from animeface_seg.engine.errors import WeightsError

if TYPE_CHECKING:  # torch is imported where a checkpoint is read: finding files needs none of it
    import torch
    from torch import nn

    from animeface_seg.engine.models import ISNet, UNet

#: Environment variable naming a directory that holds both checkpoint files.
WEIGHTS_ENV = "ANIMEFACE_SEG_WEIGHTS"
#: Bytes of each tensor that go into a weights fingerprint (with every name, shape and dtype).
_SAMPLE_BYTES = 64 * 1024


@dataclass(frozen=True)
class WeightSpec:
    """One checkpoint as data: its file name, its hub location, and how its keys map to our module."""

    key: str
    filename: str
    repo_id: str
    subfolder: str | None
    network: str
    """The class in ``animeface_seg.engine.models`` the checkpoint fits."""
    prefix: str = ""
    ignored_prefixes: tuple[str, ...] = ()

    @property
    def hub_path(self) -> str:
        """Path of the file inside the hub repository."""
        return f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename

    @property
    def url(self) -> str:
        """Human-readable address of the file on the hub, for messages."""
        return f"https://huggingface.co/{self.repo_id}/blob/main/{self.hub_path}"


UNET = WeightSpec(
    key="unet",
    filename="UNet.pth",
    repo_id="bdsqlsz/qinglong_controlnet-lllite",
    subfolder="Annotators",
    network="UNet",
)
ABG = WeightSpec(
    key="abg",
    filename="isnetis.ckpt",
    repo_id="skytnt/anime-seg",
    subfolder=None,
    network="ISNet",
    prefix="net.",
    ignored_prefixes=("gt_encoder.",),
)
SPECS: dict[str, WeightSpec] = {UNET.key: UNET, ABG.key: ABG}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _from_hub(spec: WeightSpec, looked: list[str]) -> Path:
    """The cached hub file, downloading it only when it is not in the cache yet."""
    cached = try_to_load_from_cache(spec.repo_id, spec.hub_path)
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached)
    looked.append(f"the Hugging Face cache ({hf_constants.HF_HUB_CACHE})")
    where = "; ".join(looked)
    if hf_constants.HF_HUB_OFFLINE:
        raise WeightsError(
            f"{spec.filename} was not found (looked in: {where}) and HF_HUB_OFFLINE is set, so it cannot "
            f"be downloaded from {spec.repo_id}. Download it from {spec.url}.",
            setting=spec.key,
        )
    try:
        return Path(hf_hub_download(spec.repo_id, spec.filename, subfolder=spec.subfolder))
    except Exception as exc:  # the hub raises many types: network, HTTP, repo and file errors
        raise WeightsError(
            f"{spec.filename} was not found (looked in: {where}) and could not be downloaded from the "
            f"Hugging Face repository {spec.repo_id}: {type(exc).__name__}: {_first_line(exc)}. "
            f"Download it from {spec.url}.",
            setting=spec.key,
        ) from None


def resolve(
    spec: WeightSpec,
    path: str | Path | None = None,
    weights_dir: str | Path | None = None,
    candidates: Iterable[str | Path] = (),
) -> Path:
    """Find the local file for ``spec``.

    Order: ``path``; ``weights_dir`` (which must hold the file); the first existing file of
    ``candidates`` (places a host application keeps weights); ``$ANIMEFACE_SEG_WEIGHTS``; the hub.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsError(f"{spec.filename}: {path} does not exist or is not a file.", setting=spec.key)
        return path
    if weights_dir:
        return _in_directory(spec, Path(weights_dir).expanduser(), "the weights folder", "weights_dir")
    looked = []
    for candidate in candidates:
        candidate = Path(candidate).expanduser()
        if candidate.is_file():
            return candidate
        looked.append(str(candidate))
    env_dir = os.environ.get(WEIGHTS_ENV)
    if env_dir:
        return _in_directory(spec, Path(env_dir).expanduser(), f"${WEIGHTS_ENV}", "weights_dir", looked)
    return _from_hub(spec, looked)


def _in_directory(spec: WeightSpec, directory: Path, origin: str, setting: str, looked: Iterable[str] = ()) -> Path:
    """The file of ``spec`` in ``directory``; errors also name the places ``looked`` at before it."""
    before = "; ".join(looked)
    before = f" (also looked in: {before})" if before else ""
    if not directory.is_dir():
        raise WeightsError(f"{directory} (given as {origin}) is not a directory{before}.", setting=setting)
    candidate = directory / spec.filename
    if not candidate.is_file():
        raise WeightsError(
            f"{spec.filename} not found in {directory} (given as {origin}){before}. Download it from {spec.url} "
            "into that folder.",
            setting=spec.key,
        )
    return candidate


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown} and {len(keys) - n} more" if len(keys) > n else shown


def load_state_dict(spec: WeightSpec, path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely (``weights_only=True``) and map its keys to our module names."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged or foreign files
        # torch's own text may suggest turning weights_only off: never pass that advice on.
        reason = type(exc).__name__ if "weights_only" in str(exc) else _first_line(exc)
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint of tensors for {spec.filename} "
            f"(truncated or corrupt download, or not a checkpoint): {reason}. Delete it and fetch it "
            f"again from {spec.url}.",
            setting=spec.key,
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors, so it is not {spec.filename}.",
                           setting=spec.key)
    mapped = {}
    for name, tensor in state.items():
        if name.startswith(spec.ignored_prefixes):
            continue
        if spec.prefix and name.startswith(spec.prefix):
            name = name[len(spec.prefix):]
        mapped[name] = tensor
    return mapped


def build(spec: WeightSpec, state: Mapping[str, torch.Tensor], origin: str = "the state dict") -> nn.Module:
    """The network of ``spec`` with ``state`` loaded strictly (CPU, eval mode); ``origin`` is for messages."""
    model = getattr(importlib.import_module("animeface_seg.engine.models"), spec.network)()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} keys missing ({_few(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} keys of the wrong shape ({_few(wrong_shape)})")
        raise WeightsError(
            f"{origin} does not fit the {spec.filename} network: {'; '.join(problems)}. Is it the right file? "
            f"The real one is at {spec.url}.",
            setting=spec.key,
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def load(spec: WeightSpec, path: str | Path) -> nn.Module:
    """Build the network of ``spec`` from the checkpoint file at ``path`` (CPU, eval mode)."""
    return build(spec, load_state_dict(spec, Path(path)), str(path))


def load_unet(path: str | Path | None = None, weights_dir: str | Path | None = None) -> UNet:
    """Build the face-part UNet and load ``UNet.pth`` into it (CPU, eval mode)."""
    return load(UNET, resolve(UNET, path, weights_dir))


def load_isnet(path: str | Path | None = None, weights_dir: str | Path | None = None) -> ISNet:
    """Build the ISNet mask network and load ``isnetis.ckpt`` into it (CPU, eval mode)."""
    return load(ABG, resolve(ABG, path, weights_dir))


def weights_fingerprint(module: nn.Module) -> str:
    """A short digest of a network's weights: every tensor's name, shape, dtype and first 64 KB.

    Cheap (no full pass over hundreds of MB) and independent of where the file was found.
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        data = tensor.detach().flatten()[: _SAMPLE_BYTES // max(1, tensor.element_size())]
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(data.to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
