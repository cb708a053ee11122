"""The ONNX Runtime runtime: the cached export in one CPU inference session, fp32.

Optimising the graph (fusions, constant folding, the blocked NCHWc layout) takes most of a
session's start; the optimised graph is therefore saved beside the export the first time and
loaded as it is afterwards. It holds kernels chosen for this CPU, so its name carries ONNX
Runtime's version and a digest of the CPU's model and feature flags.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
from pathlib import Path

import numpy as np

from animeface_seg.engine.runtimes.export import Export, atomic_path


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
    #: Takes and returns numpy arrays on the host (no torch): see ``runtimes/__init__.py``.
    host = True

    def __init__(self, export: Export) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = available_cpus()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Memory patterns are planned per input shape; over folders of mixed sizes, planning them cost
        # more than they saved (8 mixed shapes: 5.7 s against 6.0 s; one repeated shape: no difference).
        options.enable_mem_pattern = False
        options.log_severity_level = 3  # the warning that a saved optimised graph is hardware-specific: known
        saved = optimized_path(export, ort.__version__)
        if saved is not None and saved.is_file():
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            self._session = self._open(ort, saved, options)
        else:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            with contextlib.ExitStack() as stack:
                if saved is not None:
                    with contextlib.suppress(OSError):
                        options.optimized_model_filepath = str(stack.enter_context(atomic_path(saved)))
                self._session = self._open(ort, export.path, options)
        self.fingerprints = export.fingerprints
        self.remove_background = export.remove_background

    @staticmethod
    def _open(ort, path: Path, options):
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self._session.run(None, {"pixels": np.ascontiguousarray(pixels)})
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)
