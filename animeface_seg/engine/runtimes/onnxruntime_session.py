"""The ONNX Runtime runtime: the cached export in one CPU inference session, fp32.

Optimising the graph (fusions, constant folding, the blocked NCHWc layout) takes most of a
session's start; the optimised graph is therefore saved beside the export the first time and
loaded as it is afterwards. It holds kernels chosen for this CPU, so its name carries ONNX
Runtime's version and a digest of the CPU's model and feature flags. Like the export it is sealed
by a record and checked before use (``cache_files``): a damaged one is made again, and where it
cannot be written (read-only folder, full disk) the session runs on the graph it optimised in memory.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from animeface_seg.engine.runtimes.cached_export import CachedExport, cpu_only
from animeface_seg.engine.runtimes.registry import Runtime, Target

if TYPE_CHECKING:
    import numpy as np

    from animeface_seg.engine.runtimes.cache_files import Cache
    from animeface_seg.engine.runtimes.export import Export


def available_cpus() -> int:
    """Threads for the networks: the CPUs this process may run on (its affinity mask, e.g. a container's
    share), at most ``$OMP_NUM_THREADS`` when set (as torch does; Ray sets it to each actor's CPUs)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cpus, int(limit))) if limit.isdigit() and int(limit) > 0 else cpus


def _cpu_key() -> str | None:
    """A digest of this CPU's model and feature flags (Linux), or None where they cannot be read."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    wanted = sorted({line for line in lines if line.startswith(("model name", "flags", "Features"))})
    return hashlib.sha256(f"{platform.machine()}|{wanted}".encode()).hexdigest()[:12] if wanted else None


def optimized_path(export: Export, ort_version: str) -> Path | None:
    """Where the graph optimised for this CPU and ONNX Runtime version is kept (None: not kept)."""
    cpu = _cpu_key()
    return None if cpu is None else export.path.with_name(f"{export.path.stem}.ort-{ort_version}-{cpu}.onnx")


class OnnxRuntimeNetworks:
    """One ``InferenceSession`` with every graph optimisation on, one intra-op thread per available CPU
    and none between operators (the graph is a chain: parallel operators only compete for the cores)."""

    name = "onnxruntime"
    #: It runs its own graph, not torch modules.
    unet = isnet = None

    def __init__(self, export: Export, cache: Cache | None = None) -> None:
        import onnxruntime as ort

        from animeface_seg.engine.runtimes.cache_files import Cache

        cache = cache or Cache()
        options = ort.SessionOptions()
        options.intra_op_num_threads = available_cpus()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Memory patterns are planned per input shape; over folders of mixed sizes, planning them cost
        # more than they saved (8 mixed shapes: 5.7 s against 6.0 s; one repeated shape: no difference).
        options.enable_mem_pattern = False
        # Errors come back as exceptions; ONNX Runtime's own log lines (the warning that a saved optimised
        # graph is hardware-specific, a failed save) would only reach the user's terminal.
        options.log_severity_level = 4
        saved = None if export.model is not None else optimized_path(export, ort.__version__)
        self._session = self._open_saved(ort, saved, options, cache) if saved is not None else None
        if self._session is None:
            self._session = self._optimise(ort, export, saved, options, cache)
        self.fingerprints = export.fingerprints
        self.remove_background = export.remove_background

    @staticmethod
    def _open_saved(ort, saved: Path, options, cache: Cache):
        """A session on the saved optimised graph when it is whole, else None (a damaged one is reported)."""
        if cache.check(saved) is None:
            return None
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(saved), options, providers=["CPUExecutionProvider"])
        except Exception:  # whole as written, yet not loadable here (another build's graph): made again
            cache.damaged(saved, "ONNX Runtime cannot load it")
            return None

    @staticmethod
    def _optimise(ort, export: Export, saved: Path | None, options, cache: Cache):
        """A session optimising the export, saving the optimised graph as ``saved`` where it can; where
        ONNX Runtime fails to write it (a full disk), the session is opened again without saving."""
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if saved is None:
            return ort.InferenceSession(export.source, options, providers=["CPUExecutionProvider"])
        try:
            with cache.sealing(saved, {}) as tmp:
                if tmp is not None:
                    options.optimized_model_filepath = str(tmp)
                session = ort.InferenceSession(export.source, options, providers=["CPUExecutionProvider"])
            return session
        except Exception:
            if not options.optimized_model_filepath:
                raise
            full = shutil.disk_usage(saved.parent).free < Path(export.path).stat().st_size  # the graph's size, about
            cache.unwritable(saved.parent, "No space left on device" if full else "ONNX Runtime could not save its "
                             "optimised graph there")
        options.optimized_model_filepath = ""
        return ort.InferenceSession(export.source, options, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import numpy as np

        outputs = self._session.run(None, {"pixels": np.ascontiguousarray(pixels)})
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)


def _refuse(device_type: str, precision: str, place: bool, native_bf16: bool) -> str | None:
    """The CPU only, fp32 only."""
    if precision == "bf16" and device_type == "cpu" and place:
        return "runtime onnxruntime computes in fp32 only; for bf16 use openvino or torch."
    return cpu_only("onnxruntime", device_type, place)


def _open(export: Export, target: Target, cache: Cache) -> OnnxRuntimeNetworks:
    return OnnxRuntimeNetworks(export, cache)


RUNTIME = Runtime(name="onnxruntime", builder=CachedExport(_open), side="host", fold=True, auto_rank=0, refuse=_refuse,
                  summary="onnxruntime: CPU only, fp32, on an ONNX export cached in $ANIMEFACE_SEG_CACHE "
                  "[default: ~/.cache/animeface-seg].",
                  package="onnxruntime", install="pip install onnxruntime (part of the default install)")
