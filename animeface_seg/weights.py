"""Where the two checkpoints come from and how they are loaded into the networks.

Sources, first match wins: an explicit file path, a directory holding both files
(``--weights-dir`` or ``$ANIMEFACE_SEG_WEIGHTS``), the Hugging Face cache, and only then a
download from the hub. Every failure becomes a ``WeightsError`` whose message says which
file, from where, why, and how to supply it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from torch import nn

from animeface_seg.models import ISNet, UNet

#: Environment variable naming a directory that holds both checkpoint files.
WEIGHTS_ENV = "ANIMEFACE_SEG_WEIGHTS"


@dataclass(frozen=True)
class WeightSpec:
    """One checkpoint: its file name, where it lives on the hub, and how its keys map to our model."""

    key: str
    filename: str
    repo_id: str
    subfolder: str | None
    flag: str
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
    flag="--unet",
)
ABG = WeightSpec(
    key="abg",
    filename="isnetis.ckpt",
    repo_id="skytnt/anime-seg",
    subfolder=None,
    flag="--abg",
    prefix="net.",
    ignored_prefixes=("gt_encoder.",),
)
SPECS: dict[str, WeightSpec] = {UNET.key: UNET, ABG.key: ABG}


class WeightsError(Exception):
    """A checkpoint could not be found, fetched or loaded; the message is meant for the user."""


def _how_to_supply(spec: WeightSpec) -> str:
    return (
        f"Download {spec.filename} from {spec.url} and pass it with {spec.flag} PATH, "
        f"or put it in a folder given by --weights-dir DIR or ${WEIGHTS_ENV}."
    )


def _from_hub(spec: WeightSpec) -> Path:
    """The cached hub file, downloading it only when it is not in the cache yet."""
    cached = try_to_load_from_cache(spec.repo_id, spec.hub_path)
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached)
    if hf_constants.HF_HUB_OFFLINE:
        raise WeightsError(
            f"{spec.filename} is not in the Hugging Face cache ({hf_constants.HF_HUB_CACHE}) and "
            f"HF_HUB_OFFLINE is set, so it cannot be downloaded from {spec.repo_id}. "
            + _how_to_supply(spec)
        )
    try:
        return Path(hf_hub_download(spec.repo_id, spec.filename, subfolder=spec.subfolder))
    except Exception as exc:  # the hub raises many types: network, HTTP, repo and file errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"could not download {spec.filename} from the Hugging Face repository "
            f"{spec.repo_id}: {type(exc).__name__}: {reason}. " + _how_to_supply(spec)
        ) from None


def resolve(spec: WeightSpec, path: str | Path | None = None, weights_dir: str | Path | None = None) -> Path:
    """Find the local file for ``spec``: explicit path, weights directory, env directory, hub."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsError(f"{spec.filename}: {spec.flag} {path} does not exist or is not a file.")
        return path
    for directory, origin in ((weights_dir, "--weights-dir"), (os.environ.get(WEIGHTS_ENV), f"${WEIGHTS_ENV}")):
        if not directory:
            continue
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            raise WeightsError(f"{origin} {directory} is not a directory.")
        candidate = directory / spec.filename
        if not candidate.is_file():
            raise WeightsError(
                f"{spec.filename} not found in {directory} (given by {origin}). " + _how_to_supply(spec)
            )
        return candidate
    return _from_hub(spec)


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown} and {len(keys) - n} more" if len(keys) > n else shown


def load_state_dict(spec: WeightSpec, path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely (``weights_only=True``) and map its keys to our module names."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged or foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint for {spec.filename} "
            f"(truncated or corrupt download?): {reason}. Delete it and fetch it again. "
            + _how_to_supply(spec)
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors, so it is not {spec.filename}.")
    mapped = {}
    for name, tensor in state.items():
        if name.startswith(spec.ignored_prefixes):
            continue
        if spec.prefix and name.startswith(spec.prefix):
            name = name[len(spec.prefix):]
        mapped[name] = tensor
    return mapped


def _load_into(model: nn.Module, spec: WeightSpec, path: Path) -> nn.Module:
    state = load_state_dict(spec, path)
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
            f"{path} does not fit the {spec.filename} network: {'; '.join(problems)}. "
            f"Is it the right file? " + _how_to_supply(spec)
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_unet(path: str | Path | None = None, weights_dir: str | Path | None = None) -> UNet:
    """Build the face-part UNet and load ``UNet.pth`` into it (CPU, eval mode)."""
    return _load_into(UNet(), UNET, resolve(UNET, path, weights_dir))


def load_isnet(path: str | Path | None = None, weights_dir: str | Path | None = None) -> ISNet:
    """Build the ISNet mask network and load ``isnetis.ckpt`` into it (CPU, eval mode)."""
    return _load_into(ISNet(), ABG, resolve(ABG, path, weights_dir))
