"""The user's model outside fastgru: the same random input (`fastgru.cli.inputs`), run through the framework
that wrote the file (`convert` prints the difference, `bench` times it); the float64 reference that every
engine is compared with is `fastgru.cli.reference_peer`.

======================  =========================================================================================
peer                    what runs
======================  =========================================================================================
``torch``               ``torch.nn.GRU`` built from the file's spec, with the file's weights (a state dict holds
                        no architecture; a bare `fastgru.GRU` with PyTorch's cell has one), under inference_mode
``onnxruntime``         an ``.onnx`` file: the file's own GRU node(s), and the ops between them, cut out of its
                        graph with ``onnx.utils.Extractor`` (what a `fastgru.Model` of the file runs); a bare GRU:
                        the ``torch.nn.GRU`` above, exported on the fly with ``torch.onnx.export``
``keras``               ``keras.saving.load_model(file)`` (``KERAS_BACKEND=torch`` unless set), called eagerly under
                        ``torch.no_grad()``; with ``--layer``, that layer of the loaded model
======================  =========================================================================================

Every peer returns its outputs as a list of arrays in the fastgru model's own output convention: a GRU's
``[output, h_n]``, a Keras model's output (or list of outputs), an ONNX model's ``[Y, Y_h]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import warnings
from typing import Callable

import numpy as np

from fastgru.cli.inputs import Inputs, is_gru
from fastgru.cli.source import Source, missing_package, one_line


class PeerUnavailable(Exception):
    """A peer that cannot run here (not installed, not applicable to this model, or failed to load the file);
    the message says why."""


@dataclasses.dataclass
class Peer:
    name: str
    version: str
    what: str  # what runs, for the report
    output: Callable[[], list]  # one call: the outputs as numpy arrays
    run: Callable[[int], None]  # n calls, timed by `fastgru bench`


def outputs(value) -> list:
    """A model's result as a list of numpy arrays (fastgru's output conventions)."""
    if isinstance(value, (tuple, list)):
        return [np.asarray(item) for item in value]
    return [np.asarray(value)]


def max_diff(actual: list, expected: list) -> float:
    """The largest absolute difference over every output; NaN where exactly the same entries are NaN in
    both is no difference (Keras writes NaN where a masked row divides by zero), elsewhere it is inf."""
    if len(actual) != len(expected) or any(a.shape != e.shape for a, e in zip(actual, expected)):
        raise ValueError(f"the outputs differ in shape: {[a.shape for a in actual]} vs {[e.shape for e in expected]}")
    worst = 0.0
    for a, e in zip(actual, expected):
        a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
        both = np.isnan(a) & np.isnan(e)
        if (np.isnan(a) ^ np.isnan(e)).any():
            return float("inf")
        worst = max(worst, float(np.abs(a[~both] - e[~both]).max(initial=0.0)))
    return worst



# ---------------------------------------------------------------------------------------- frameworks


def source_framework(source: Source, model) -> str:
    """The peer that stands for the framework that wrote the file ("reference" for numpy and fastgru files)."""
    return {"torch": "torch", "safetensors": "torch", "keras": "keras", "h5": "keras",
            "onnx": "onnxruntime"}.get(source.kind, "reference")


def applicable(source: Source, model) -> dict[str, str | None]:
    """For each framework peer: None where it applies to this model, else why not."""
    cell = _torch_cell(model)
    return {
        "torch": cell,
        "onnxruntime": None if source.kind == "onnx" else cell or (
            None if model.dtype == np.float32 else "ONNX Runtime's GRU runs float32, this model is float64"),
        "keras": None if source.kind in ("keras", "h5") else "keras runs the Keras files (.keras, .h5) it reads",
    }


def _torch_cell(model) -> str | None:
    if not is_gru(model):
        return (f"torch.nn.GRU runs bare GRUs; this file holds a fastgru.Model with {model.convention}'s "
                f"conventions")
    spec = model.spec
    if not spec.reset_after or spec.gate_activation != "sigmoid" or spec.clip is not None:
        return "torch.nn.GRU has only the linear-before-reset cell with sigmoid gates and no clip"
    return None


def build_peer(name: str, source: Source, model, inputs: Inputs, threads: int) -> Peer:
    """The framework peer ``name`` ("torch", "onnxruntime", "keras") on ``inputs``; `PeerUnavailable`
    where it cannot run here."""
    why = applicable(source, model)[name]
    if why is not None:
        raise PeerUnavailable(why)
    try:
        if name == "torch":
            return _torch_peer(model, inputs, threads)
        if name == "keras":
            return _keras_peer(source, inputs, threads)
        if source.kind == "onnx":
            return _onnx_file_peer(inputs, threads)
        return _onnx_export_peer(model, inputs, threads)
    except ImportError as error:
        raise PeerUnavailable(missing_package(error, f"comparing with {name}")) from None
    except PeerUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - a framework that cannot run the model is reported, not fatal
        raise PeerUnavailable(f"{name} could not run the model ({type(error).__name__}: {one_line(error, '')})") \
            from None


def _torch_module(model):
    import torch

    spec = model.spec
    module = torch.nn.GRU(spec.input_size, spec.hidden_size, spec.num_layers, bias=spec.bias,
                          batch_first=spec.batch_first, bidirectional=spec.bidirectional,
                          dtype=torch.float64 if spec.dtype == "float64" else torch.float32)
    module.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in model.weights.items()})
    return module.eval()


def _learned_h0(model, x):
    """The learned initial state as the explicit h0 a framework needs (None without one)."""
    if model.initial_state is None:
        return None
    batch = x.shape[0 if model.spec.batch_first else 1]
    return np.ascontiguousarray(np.repeat(model.initial_state[:, None], batch, axis=1))


def _torch_peer(model, inputs, threads) -> Peer:
    import torch

    from fastgru.benchmark.frameworks import pin_torch_threads

    pin_torch_threads(threads)
    module = _torch_module(model)
    x = torch.from_numpy(inputs.args[0])
    h0 = _learned_h0(model, inputs.args[0])
    args = (x,) if h0 is None else (x, torch.from_numpy(h0))

    def run(n: int) -> None:
        with torch.inference_mode():
            for _ in range(n):
                module(*args)

    def output() -> list:
        with torch.inference_mode():
            return [t.numpy().copy() for t in module(*args)]

    return Peer("torch", torch.__version__, "torch.nn.GRU with the file's weights, under torch.inference_mode()",
                output, run)


def _session_peer(session, feed, results, version, what) -> Peer:
    def run(n: int) -> None:
        for _ in range(n):
            session.run(None, feed)

    return Peer("onnxruntime", version, what, lambda: results(session.run(None, feed)), run)


def _onnx_file_peer(inputs, threads) -> Peer:
    import onnxruntime

    from fastgru.benchmark.frameworks import ort_session

    graph = inputs.onnx
    if graph is None:
        raise PeerUnavailable(inputs.note or "the GRU node(s) could not be cut out of the graph")
    names = ", ".join(node.name or node.output[0] for node in graph.nodes)
    return _session_peer(ort_session(graph.model_bytes, threads), graph.feed, graph.results, onnxruntime.__version__,
                         f"the file's GRU node(s) {names} alone (onnx.utils.Extractor), session.run per call")


def _onnx_export_peer(model, inputs, threads) -> Peer:
    import onnxruntime
    import torch

    from fastgru.benchmark.frameworks import ort_session

    module = _torch_module(model)
    x = inputs.args[0]
    h0 = _learned_h0(model, x)
    example = (torch.from_numpy(x),) if h0 is None else (torch.from_numpy(x), torch.from_numpy(h0))
    names = ["x"] if h0 is None else ["x", "h0"]
    model_bytes, exporter = _export(module, example, names)
    feed = dict(zip(names, (x,) if h0 is None else (x, h0)))
    return _session_peer(ort_session(model_bytes, threads), feed, list, onnxruntime.__version__,
                         f"torch.nn.GRU exported by torch.onnx.export ({exporter}), session.run per call")


def _export(module, example, names) -> tuple[bytes, str]:
    """The ONNX bytes of ``module`` on ``example`` (fixed shapes), quietly: torch's default exporter
    (torch.export-based), else the TorchScript one (torch without onnxscript)."""
    import io

    import torch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(module, example, None, input_names=names, output_names=["y", "h_n"],
                                        verbose=False)
            return program.model_proto.SerializeToString(), "torch.export-based exporter"
        except Exception as error:  # noqa: BLE001 - e.g. onnxscript missing: the TorchScript exporter needs none
            first = one_line(error, "")
        buffer = io.BytesIO()
        try:
            torch.onnx.export(module, example, buffer, input_names=names, output_names=["y", "h_n"], dynamo=False)
        except Exception as error:  # noqa: BLE001
            raise PeerUnavailable(f"torch.onnx.export failed ({first}; TorchScript exporter: "
                                  f"{one_line(error, '')})") from None
        return buffer.getvalue(), "TorchScript exporter"


def _keras_peer(source: Source, inputs, threads) -> Peer:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    try:
        loaded = keras.saving.load_model(source.path, compile=False)
    except Exception as error:  # noqa: BLE001 - weights-only files, custom objects, tf.keras 2 configs, ...
        raise PeerUnavailable(f"keras could not load the file ({one_line(error, source.path)})") from None
    target = loaded.get_layer(source.layer) if source.layer else loaded
    backend = keras.backend.backend()
    x = inputs.args[0]
    if backend == "torch":
        import torch

        from fastgru.benchmark.frameworks import pin_torch_threads

        pin_torch_threads(threads)  # Keras on torch computes on torch's threads
        x, quiet = torch.from_numpy(x), torch.no_grad
    else:
        quiet = contextlib.nullcontext

    def call():
        return target(x, training=False)

    def run(n: int) -> None:
        with quiet():
            for _ in range(n):
                call()

    def output() -> list:
        with quiet():
            result = call()
        return [keras.ops.convert_to_numpy(item) for item in (result if isinstance(result, (list, tuple)) else
                                                               [result])]

    what = (f"keras.saving.load_model, {'layer ' + repr(source.layer) if source.layer else 'the model'} "
            f"called eagerly (KERAS_BACKEND={backend})")
    return Peer("keras", keras.__version__, what, output, run)
