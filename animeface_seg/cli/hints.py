"""The command's own words for engine settings: which flag changes what an error is about."""

from __future__ import annotations

from animeface_seg.engine.runtimes.registry import names as runtime_names

_WEIGHTS = "a folder holding both files with --weights-dir DIR or $ANIMEFACE_SEG_WEIGHTS"

#: Engine setting (``EngineError.setting``) -> how to change it on the command line.
FLAG_HINTS: dict[str, str] = {
    "max_pixels": "raise the limit with --max-pixels N",
    "memory_budget": "change it with --memory-budget SIZE, e.g. 8G, or 0 for no limit",
    "device": "choose another with --device auto|cpu|cuda|cuda:N",
    "precision": "choose another with --precision auto|fp32|fp16|bf16",
    "encode": "write its frames as PNGs with --encode frames",
    "runtime": f"choose another with --runtime {'|'.join(runtime_names())}",
    "cache": "--runtime torch needs no export",
    "unet": f"give the file with --unet PATH, or {_WEIGHTS}",
    "abg": f"give the file with --abg PATH, or {_WEIGHTS}",
    "weights_dir": "check --weights-dir DIR or $ANIMEFACE_SEG_WEIGHTS",
    "ray_address": "set it with --ray-address ADDR or $RAY_ADDRESS",
}


def with_hint(message: str | None, setting: str | None) -> str | None:
    """``message`` followed by the flag that governs ``setting``, when there is one."""
    if message is None or setting not in FLAG_HINTS:
        return message
    return f"{message.rstrip('.')} ({FLAG_HINTS[setting]})"
