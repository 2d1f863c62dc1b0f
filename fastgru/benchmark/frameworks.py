"""How a benchmark gives each framework its thread count: the same settings in ``bench/`` and in
``fastgru bench``. The process-wide pools (OpenMP, OpenBLAS, MKL) are pinned by the worker's
environment before any import (`fastgru.benchmark.workers`); these are the frameworks' own knobs."""

from __future__ import annotations


def pin_torch_threads(num_threads: int) -> None:
    """``torch.set_num_threads(t)`` and one inter-op thread (imports torch)."""
    import torch

    torch.set_num_threads(num_threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already started
        pass


def ort_session(model_bytes: bytes, threads: int):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads, one inter-op thread, sequential
    execution and every graph optimization."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
