"""Where the node pack looks for the two checkpoints inside a ComfyUI installation.

Order, first existing file wins: every ``models/animeface_seg/`` folder ComfyUI knows
(``folder_paths``, so ``extra_model_paths.yaml`` entries count), then the files the ControlNet
auxiliary preprocessors pack keeps (its ckpts folder, under every custom-nodes folder), then
``$ANIMEFACE_SEG_WEIGHTS``, then the Hugging Face cache and download (``engine.weights.resolve``).
The lookup itself takes plain folders so it can be checked without a running ComfyUI.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animeface_seg.engine.weights import WeightSpec

#: ComfyUI model folder name: ``ComfyUI/models/animeface_seg/`` and ``animeface_seg:`` in extra_model_paths.yaml.
MODEL_FOLDER = "animeface_seg"
#: Environment variable the auxiliary preprocessors pack sets to its checkpoint folder when it loads.
AUX_CKPTS_ENV = "AUX_ANNOTATOR_CKPTS_PATH"
#: Where the auxiliary preprocessors pack stores each file, relative to its ckpts folder (by spec key).
AUX_FILES = {
    "unet": Path("bdsqlsz/qinglong_controlnet-lllite/Annotators/UNet.pth"),
    "abg": Path("skytnt/anime-seg/isnetis.ckpt"),
}


def register_model_folder() -> list[str]:
    """Make ``models/animeface_seg/`` known to ComfyUI (after any extra_model_paths.yaml entries, which
    ComfyUI reads at start-up) and return every folder of that name; calling it again changes nothing."""
    import folder_paths

    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))
    return folder_paths.get_folder_paths(MODEL_FOLDER)


def aux_ckpts_dirs(custom_nodes_dirs: Iterable[str | Path], aux_env: str | None = None) -> list[Path]:
    """The auxiliary pack's ckpts folders: the one it announced, then ``<pack>/ckpts`` for every
    folder whose name contains ``controlnet_aux`` in any custom-nodes folder."""
    found = [Path(aux_env)] if aux_env else []
    for root in custom_nodes_dirs:
        root = Path(root)
        if not root.is_dir():
            continue
        for pack in sorted(root.iterdir()):
            if "controlnet_aux" in pack.name.lower() and pack.is_dir():
                found.append(pack / "ckpts")
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def candidates(spec: WeightSpec, model_dirs: Iterable[str | Path], custom_nodes_dirs: Iterable[str | Path],
               aux_env: str | None = None) -> list[Path]:
    """Every file path the node tries for ``spec`` before the environment variable and the hub, in order."""
    files = [Path(d) / spec.filename for d in model_dirs]
    files += [ckpts / AUX_FILES[spec.key] for ckpts in aux_ckpts_dirs(custom_nodes_dirs, aux_env)]
    return files


def find(spec: WeightSpec, model_dirs: Iterable[str | Path], custom_nodes_dirs: Iterable[str | Path],
         aux_env: str | None = None) -> Path:
    """The checkpoint file for ``spec``; a ``WeightsError`` naming every place looked at when there is none."""
    from animeface_seg.engine.weights import resolve

    return resolve(spec, candidates=candidates(spec, model_dirs, custom_nodes_dirs, aux_env))


def find_in_comfyui(spec: WeightSpec) -> Path:
    """``find`` with the folders of the running ComfyUI."""
    import folder_paths

    return find(spec, register_model_folder(), folder_paths.get_folder_paths("custom_nodes"),
                os.environ.get(AUX_CKPTS_ENV))
