"""The ONNX Runtime runtime: the cached export in one CPU inference session, fp32."""

from __future__ import annotations

import os

import torch

from animeface_seg.engine.runtimes.export import Export


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's share), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OnnxRuntimeNetworks:
    """One ``InferenceSession`` with every graph optimisation on, one intra-op thread per available CPU
    and none between operators (the graph is a chain: parallel operators only compete for the cores)."""

    name = "onnxruntime"

    def __init__(self, export: Export) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = available_cpus()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(str(export.path), options, providers=["CPUExecutionProvider"])
        self.fingerprints = export.fingerprints
        self.remove_background = export.remove_background

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        outputs = self._session.run(None, {"pixels": pixels.cpu().numpy()})
        return torch.from_numpy(outputs[0]), (torch.from_numpy(outputs[1]) if len(outputs) > 1 else None)
