"""The user's model outside fastgru: the same random input, run through the framework that wrote the file
(`convert` prints the difference, `bench` times it), and through the float64 reference.

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
``reference``           float64: `fastgru.reference` for every GRU, the model's other layers in numpy in float64
======================  =========================================================================================

Every peer returns its outputs as a list of arrays in the fastgru model's own output convention: a GRU's
``[output, h_n]``, a Keras model's output (or list of outputs), an ONNX model's ``[Y, Y_h]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import warnings
from typing import Callable

import numpy as np

from fastgru.cli.source import CommandError, Source, missing_package, one_line


class PeerUnavailable(Exception):
    """A peer that cannot run here (not installed, not applicable to this model, or failed to load the file);
    the message says why."""


@dataclasses.dataclass
class Inputs:
    """A random input for the model, and how each peer takes it."""

    args: tuple  # the fastgru model is called as model(*args)
    shape: str  # for people: "B=2, T=16, 5 features"
    note: str | None = None  # e.g. the file fixes the shape
    onnx: "OnnxGraph | None" = None  # an .onnx file's GRU node(s), cut out of its graph


@dataclasses.dataclass
class Peer:
    name: str
    version: str
    what: str  # what runs, for the report
    output: Callable[[], list]  # one call: the outputs as numpy arrays
    run: Callable[[int], None]  # n calls, timed by `fastgru bench`


def does_not_run(source: Source, inputs: "Inputs", error: Exception) -> CommandError:
    """The error for a model that refuses the random input (a Keras model whose Flatten fixes T, ...)."""
    return CommandError(f"{source.path}: the model does not run on the input ({inputs.shape}): {one_line(error, '')} "
                        f"(--batch and --seq-len set the input's shape)")


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


def is_gru(model) -> bool:
    from fastgru import GRU

    return isinstance(model, GRU)


# --------------------------------------------------------------------------------------------- inputs


def make_inputs(source: Source, model, batch: int, seq_len: int, seed: int = 0) -> Inputs:
    """A random input of ``batch`` sequences of ``seq_len`` steps for ``model``; for a Keras model that
    starts with Masking or Embedding(mask_zero=True), the second sequence ends in padding (its last third
    masked), so that masks are part of what is compared."""
    rng = np.random.default_rng(seed)
    if is_gru(model):
        spec = model.spec
        shape = (batch, seq_len, spec.input_size) if spec.batch_first else (seq_len, batch, spec.input_size)
        x = rng.standard_normal(shape).astype(model.dtype)
        return Inputs((x,), f"B={batch}, T={seq_len}, {spec.input_size} features")
    if model.convention == "onnx":
        return OnnxGraph.inputs(source, model, batch, seq_len, rng)
    from fastgru.layers import Embedding, Masking

    first = model.layers[0]
    padded = batch > 1 and (isinstance(first, Masking) or (isinstance(first, Embedding) and first.mask_zero))
    if isinstance(first, Embedding):
        x = rng.integers(1, first.embeddings.shape[0], size=(batch, seq_len))
        if padded:
            x[1, seq_len - seq_len // 3:] = 0
        return Inputs((x,), f"B={batch}, T={seq_len} token ids" + (", row 1 padded" if padded else ""))
    features = next(layer.input_features for layer in model.layers if layer.input_features is not None)
    x = rng.standard_normal((batch, seq_len, features)).astype(model.dtype)
    if padded:
        x[1, seq_len - seq_len // 3:] = first.mask_value
    return Inputs((x,), f"B={batch}, T={seq_len}, {features} features" + (", row 1 padded" if padded else ""))


class OnnxGraph:
    """The GRU node(s) a `fastgru.Model` of an ``.onnx`` file runs, cut out of the file's graph with the ops
    between them (``torch.onnx.export`` puts a Squeeze or a Transpose and Reshape between layers), from the
    first node's ``X`` (and any ``sequence_lens`` / ``initial_h`` that are graph inputs) to the last node's
    ``Y`` and every node's ``Y_h``."""

    def __init__(self, source: Source, model):
        import onnx
        import onnx.utils

        proto = onnx.load(source.path)
        grus = [node for node in proto.graph.node if node.op_type == "GRU"]
        wanted = [n.strip() for n in source.layer.split(",")] if source.layer else None
        self.nodes = grus if wanted is None else [next(node for node in grus if name in (node.name, *node.output))
                                                  for name in wanted]
        graph_inputs = {value.name for value in proto.graph.input} - {init.name for init in proto.graph.initializer}
        self.x_name = self.nodes[0].input[0]
        self.extra = {}  # graph inputs the nodes read: name -> "sequence_lens" | ("initial_h", node index)
        for index, node in enumerate(self.nodes):
            for slot, role in ((4, "sequence_lens"), (5, "initial_h")):
                if len(node.input) > slot and node.input[slot] in graph_inputs:
                    self.extra[node.input[slot]] = role if role == "sequence_lens" else (role, index)
        self.y_h = all(len(node.output) > 1 and node.output[1] for node in self.nodes)
        self.output_names = [self.nodes[-1].output[0]] + ([node.output[1] for node in self.nodes] if self.y_h else [])
        inferred = onnx.shape_inference.infer_shapes(proto)
        extracted = onnx.utils.Extractor(inferred).extract_model([self.x_name, *self.extra], self.output_names)
        self.model_bytes = extracted.SerializeToString()
        x_value = next(value for value in extracted.graph.input if value.name == self.x_name)
        self.x_dims = [d.dim_value if d.HasField("dim_value") else None for d in x_value.type.tensor_type.shape.dim]
        self.spec = model.gru.spec
        self.feed: dict = {}

    @classmethod
    def inputs(cls, source, model, batch, seq_len, rng) -> Inputs:
        spec = model.gru.spec
        order = ("B", "T") if spec.batch_first else ("T", "B")
        wanted = {"B": batch, "T": seq_len}
        try:
            graph = cls(source, model)
        except Exception as error:  # noqa: BLE001 - then the GRU's input is made up from its layout alone
            graph, dims, note = None, None, f"onnxruntime cannot run the GRU node(s) alone ({one_line(error, '')})"
        else:
            dims, note = graph.x_dims, None
        if dims and len(dims) == 3 and any(d is not None for d in dims[:2]):
            fixed = {axis: dim for axis, dim in zip(order, dims[:2]) if dim is not None and dim != wanted[axis]}
            wanted.update({axis: dim for axis, dim in zip(order, dims[:2]) if dim is not None})
            if fixed:
                note = "the file fixes " + " and ".join(f"{axis}={dim}" for axis, dim in fixed.items())
        b, t = wanted["B"], wanted["T"]
        shape = (b, t, spec.input_size) if spec.batch_first else (t, b, spec.input_size)
        x = rng.standard_normal(shape).astype(model.dtype)
        lengths = initial_h = None
        if graph is not None:
            graph.feed[graph.x_name] = x
            directions, hidden = spec.num_directions, spec.hidden_size
            per_node = [np.zeros((directions, b, hidden), model.dtype) for _ in graph.nodes]
            for name, role in graph.extra.items():
                if role == "sequence_lens":
                    lengths = graph.feed[name] = rng.integers(1, t + 1, size=b).astype(np.int32)
                    continue
                per_node[role[1]] = (0.5 * rng.standard_normal((directions, b, hidden))).astype(model.dtype)
                graph.feed[name] = per_node[role[1]].transpose(1, 0, 2).copy() if spec.batch_first else per_node[role[1]]
                initial_h = np.concatenate(per_node)
            if initial_h is not None and spec.batch_first:
                initial_h = initial_h.transpose(1, 0, 2).copy()
        text = f"X {'(B, T, I)' if spec.batch_first else '(T, B, I)'} with B={b}, T={t}, I={spec.input_size}"
        return Inputs((x, lengths, initial_h), text, note, graph)

    def results(self, values: list) -> list:
        """ONNX Runtime's outputs as the fastgru model's ``[Y, Y_h]`` (every node's Y_h, stacked)."""
        if not self.y_h:
            return [values[0]]
        return [values[0], np.concatenate(values[1:], axis=1 if self.spec.batch_first else 0)]


# ------------------------------------------------------------------------------------------ reference


class ReferenceGRU:
    """Stands in for a `fastgru.GRU` (a layer calls ``gru(x, h0, lengths, mask=)``): `fastgru.reference`
    in float64 on the GRU's weights (for an int8 GRU, the float32 weights it was quantized from)."""

    def __init__(self, gru):
        self.spec = dataclasses.replace(gru.spec, dtype="float64")
        self.weights = {name: np.asarray(value, np.float64) for name, value in gru.weights.items()}
        self.initial_state = gru.initial_state
        self.dtype = np.dtype(np.float64)
        self._check_lengths = gru._check_lengths

    def __call__(self, x, h0=None, lengths=None, *, mask=None, num_threads=None):
        from fastgru import reference

        if h0 is None and self.initial_state is not None:
            batch = np.shape(x)[0 if self.spec.batch_first else 1]
            h0 = np.repeat(np.asarray(self.initial_state, np.float64)[:, None], batch, axis=1)
        if lengths is not None:
            lengths = np.asarray(lengths).astype(np.int64)
        return reference.forward(self.spec, self.weights, x, h0, lengths, mask)


def reference_peer(source: Source, model, inputs: Inputs) -> Peer:
    """The float64 reference: for a GRU, `fastgru.reference` itself; for a Model, a float64 twin of the
    model built from the file's description, each of its GRUs replaced by a `ReferenceGRU`, so that the
    other layers (numpy, the same code as the model's) run in float64 around the reference GRUs."""
    if is_gru(model):
        twin = ReferenceGRU(model)
    else:
        twin = _float64_twin(source)
        for layer in twin.layers:
            if layer.grus:
                layer.gru = ReferenceGRU(layer.gru)  # the twin is ours alone: nothing else holds it
    others = not is_gru(model) and any(not layer.grus for layer in model.layers)
    what = "fastgru.reference (float64)" + (", the other layers in float64 numpy" if others else "")
    args = tuple(np.asarray(a, np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                 for a in inputs.args)
    return Peer("reference", "float64", what, lambda: outputs(twin(*args)), lambda n: None)


def _float64_twin(source: Source):
    """A Model from the file's description with every float array, GRU spec and weight format in float64."""
    from fastgru.io.load import FileDescription, build

    config, arrays, label = source.found.description
    config = json.loads(json.dumps(config))

    def widen(node):
        if isinstance(node, dict):
            if node.get("class") == "GRU" and isinstance(node.get("spec"), dict):
                node["spec"]["dtype"] = node["weight_format"] = "float64"
            for value in node.values():
                widen(value)
        elif isinstance(node, list):
            for value in node:
                widen(value)

    widen(config)
    arrays = {key: np.asarray(value, np.float64) if np.asarray(value).dtype.kind == "f" else value
              for key, value in arrays.items()}
    return build(FileDescription(source.found.kind, (config, arrays, label), source.path))


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
