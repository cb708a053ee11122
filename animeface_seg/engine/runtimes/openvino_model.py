"""The OpenVINO runtime: the cached export compiled for the CPU, f32 unless bf16 is asked for.

The compiled model is cached by OpenVINO in the cache folder's ``openvino/`` (its own key covers
its version, the CPU and these settings; OpenVINO compiles again over a blob it cannot load, and
skips writing one it cannot write). Where that folder cannot be written, OpenVINO runs without it
(one warning, from ``cache_files``). The inference precision is always set explicitly: left alone, OpenVINO computes in bf16 on CPUs
with AMX, which would change results without being asked (see docs/benchmarks.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from animeface_seg.engine.runtimes.cached_export import CachedExport, cpu_only
from animeface_seg.engine.runtimes.onnxruntime_session import available_cpus
from animeface_seg.engine.runtimes.registry import Runtime, Target

if TYPE_CHECKING:
    import numpy as np

    from animeface_seg.engine.runtimes.cache_files import Cache
    from animeface_seg.engine.runtimes.export import Export

_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


class OpenVinoNetworks:
    """One compiled model and one infer request, tuned for latency on the available CPUs."""

    name = "openvino"
    #: It runs its own graph, not torch modules.
    unet = isnet = None

    def __init__(self, export: Export, precision: str = "fp32", cache: Cache | None = None) -> None:
        import openvino as ov

        from animeface_seg.engine.runtimes.cache_files import Cache

        cache = cache or Cache()
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": _PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": available_cpus()}
        blobs = cache.root / "openvino"
        if cache.probe(blobs):  # compiled blobs, keyed by OpenVINO itself (version, CPU, settings)
            config["CACHE_DIR"] = str(blobs)
        model = str(export.path) if export.model is None else core.read_model(export.model)
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self.fingerprints = export.fingerprints
        self.remove_background = export.remove_background

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import numpy as np

        results = self._request.infer({0: np.ascontiguousarray(pixels)})
        outputs = [results[port] for port in self._compiled.outputs]
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)


def _refuse(device_type: str, precision: str, place: bool, native_bf16: bool) -> str | None:
    """The CPU only; bf16 only where the CPU computes it natively."""
    refusal = cpu_only("openvino", device_type, place)
    if refusal is None and precision == "bf16" and not native_bf16:
        return ("runtime openvino computes bf16 only on CPUs with native bf16 (AVX512-BF16 or AMX), which this one "
                "lacks; use torch (emulated) or fp32.")
    return refusal


def _open(export: Export, target: Target, cache: Cache) -> OpenVinoNetworks:
    return OpenVinoNetworks(export, target.precision, cache)


RUNTIME = Runtime(name="openvino", builder=CachedExport(_open), side="host", fold=True, auto_rank=1, refuse=_refuse,
                  summary="openvino: CPU only, fp32, or bf16 where the CPU has native bf16; the same cached export.",
                  package="openvino", install="pip install 'animeface-seg[openvino]'")
