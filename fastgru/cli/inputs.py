"""The random input the command runs a model on, and how each peer takes it (`make_inputs`): a GRU's x, a
Keras model's x or token ids (with a padded row where the model masks), an ONNX model's ``X`` with any
``sequence_lens`` / ``initial_h`` its graph takes as inputs (`OnnxGraph`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from fastgru.cli.source import CommandError, Source, one_line


@dataclasses.dataclass
class Inputs:
    """A random input for the model, and how each peer takes it."""

    args: tuple  # the fastgru model is called as model(*args)
    shape: str  # for people: "B=2, T=16, 5 features"
    note: str | None = None  # e.g. the file fixes the shape
    onnx: OnnxGraph | None = None  # an .onnx file's GRU node(s), cut out of its graph


def does_not_run(source: Source, inputs: Inputs, error: Exception) -> CommandError:
    """The error for a model that refuses the random input (a Keras model whose Flatten fixes T, ...)."""
    return CommandError(f"{source.path}: the model does not run on the input ({inputs.shape}): {one_line(error, '')} "
                        f"(--batch and --seq-len set the input's shape)")


def is_gru(model) -> bool:
    """Whether ``model`` is a bare `fastgru.GRU` (else a `fastgru.Model`)."""
    from fastgru import GRU

    return isinstance(model, GRU)


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
