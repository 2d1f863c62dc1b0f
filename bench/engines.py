"""One adapter per engine. Adding an engine is adding a class and a line in ``ENGINES``.

Every adapter gets the same ``torch.nn.GRU`` (float32, one layer, I = H) and the same input
``x`` (T, B, I) and initial state ``h0`` (1, B, H), and returns a ``Built`` with

- ``run(n)``: n calls, exactly as a user would make them (state in, output and state out), and
- ``output()``: the output sequence (T', B, H) as numpy, compared with float64 PyTorch.

Peers are measured through their ordinary public call path, per call, with their own per-call
overheads included: that is what a user of them pays.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from typing import Callable, Iterator

import numpy as np

from fastgru.benchmark.frameworks import ort_session
from shapes import Shape


@dataclasses.dataclass
class Built:
    run: Callable[[int], None]
    output: Callable[[], np.ndarray]
    notes: list[str] = dataclasses.field(default_factory=list)  # API gaps met while building


class Engine:
    name = "?"
    peer = True  # False for fastgru's own engines: "best peer" is the fastest engine with peer=True
    precision = "float32"

    def probe(self) -> str:
        """Imports the engine; returns its version or raises (the harness reports why)."""
        raise NotImplementedError

    def supports(self, shape: Shape) -> bool:
        return shape.group != "int8-large" or self.precision == "int8"

    def not_applicable(self) -> str | None:
        """Why this engine has no place on this CPU (it then appears nowhere in the report), or None."""
        return None

    def build(self, module, shape: Shape, x: np.ndarray, h0: np.ndarray, threads: int) -> Built:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------- torch


class Torch(Engine):
    name = "torch"

    def probe(self) -> str:
        import torch

        return torch.__version__

    def _module(self, module):
        return module

    def build(self, module, shape, x, h0, threads):
        import torch

        model = self._module(module)
        x_t, h0_t = torch.from_numpy(x), torch.from_numpy(h0)

        def run(n: int) -> None:
            with torch.inference_mode():
                for _ in range(n):
                    model(x_t, h0_t)

        def output() -> np.ndarray:
            with torch.inference_mode():
                return model(x_t, h0_t)[0].numpy().copy()

        return Built(run, output)


class TorchInt8(Torch):
    """PyTorch's dynamic int8 GRU (int8 weights, activations quantized per call): the int8 peer."""

    name = "torch-int8"
    precision = "int8"

    def _module(self, module):
        import warnings

        import torch
        import torch.ao.nn.quantized.dynamic as nnqd

        # quantize_dynamic swaps children only: a bare nn.GRU as the root comes back unchanged (and
        # silently float32), so the GRU goes in as the child of a holder module.
        holder = torch.nn.Module()
        holder.gru = copy.deepcopy(module)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            quantized = torch.ao.quantization.quantize_dynamic(holder, {torch.nn.GRU}, dtype=torch.qint8).gru
        if not isinstance(quantized, nnqd.GRU):
            raise RuntimeError(f"quantize_dynamic returned {type(quantized).__name__}, not a dynamic int8 GRU")
        return quantized


# ---------------------------------------------------------------------------------------- fastgru


def _fastgru_model(module, threads: int, notes: list[str]):
    import fastgru

    if hasattr(fastgru.GRU, "from_torch"):
        model = fastgru.GRU.from_torch(module)
    else:
        notes.append("GRU.from_torch missing: used GRU.from_arrays(state_dict)")
        model = fastgru.GRU.from_arrays({k: v.detach().numpy() for k, v in module.state_dict().items()})
    try:
        model.num_threads = threads
    except (AttributeError, TypeError, ValueError) as exc:
        notes.append(f"setting gru.num_threads failed ({type(exc).__name__}: {exc})")
    return model


class Fastgru(Engine):
    """``gru(x, h0)``: one call per sequence (for T=1, one call per step, like the peers)."""

    name = "fastgru"
    peer = False

    def probe(self) -> str:
        import fastgru

        fastgru.GRU(2, 3)
        return str(getattr(fastgru, "__version__", "unknown"))

    def _model(self, module, threads, notes):
        return _fastgru_model(module, threads, notes)

    def build(self, module, shape, x, h0, threads):
        notes: list[str] = []
        model = self._model(module, threads, notes)
        kwargs = {"num_threads": threads}
        try:
            model(x, h0, **kwargs)
        except TypeError as exc:
            if "num_threads" not in str(exc):
                raise
            notes.append("gru(x, h0, num_threads=...) not accepted: ran with the model's setting")
            kwargs = {}

        def run(n: int) -> None:
            for _ in range(n):
                model(x, h0, **kwargs)

        def output() -> np.ndarray:
            return np.asarray(model(x, h0, **kwargs)[0])

        return Built(run, output, notes)


class FastgruStream(Engine):
    """``gru.stream(B, h0).step(x_t)``: the low-latency streaming path; the state lives in the stream,
    so a call is only the step (the peers take the state in and give it back every call)."""

    name = "fastgru-stream"
    peer = False
    probe = Fastgru.probe

    def supports(self, shape):
        return shape.streaming

    def _model(self, module, threads, notes):
        return _fastgru_model(module, threads, notes)

    def build(self, module, shape, x, h0, threads):
        notes: list[str] = []
        model = self._model(module, threads, notes)
        try:
            stream = model.stream(batch_size=shape.batch, h0=h0, num_threads=threads)
            reset = lambda: stream.reset(h0)  # noqa: E731
        except TypeError:
            notes.append("stream(batch_size, h0=, num_threads=) not accepted: used stream(batch_size)")
            if np.any(h0):
                raise ValueError("this stream() takes no h0, and the case's h0 is not zero")
            stream = model.stream(batch_size=shape.batch)
            reset = stream.reset
        x_step = np.ascontiguousarray(x[0])

        def run(n: int) -> None:
            step = stream.step
            for _ in range(n):
                step(x_step)

        def output() -> np.ndarray:
            reset()
            return np.array(stream.step(x_step))[None]  # a copy: step's result is reused

        return Built(run, output, notes)


class FastgruInt8(Fastgru):
    name = "fastgru-int8"
    precision = "int8"

    def probe(self) -> str:
        import fastgru

        if not hasattr(fastgru.GRU, "quantize"):
            raise NotImplementedError("fastgru.GRU.quantize is not implemented yet")
        return Fastgru.probe(self)

    def _model(self, module, threads, notes):
        return _fastgru_model(module, threads, notes).quantize("int8")


class FastgruInt8Narrow(FastgruInt8):
    """int8 with 7-bit weight codes (`quantize("int8", weight_bits=7)`): the narrow products on AVX2 and
    AVX-512F tables, the same as fastgru-int8 on VNNI ones."""

    name = "fastgru-int8-w7"

    def _model(self, module, threads, notes):
        return _fastgru_model(module, threads, notes).quantize("int8", weight_bits=7)


class FastgruInt8Stream(FastgruStream):
    """The streaming path of the int8 model (T=1 rows only)."""

    name = "fastgru-int8-stream"
    precision = "int8"
    probe = FastgruInt8.probe

    def _model(self, module, threads, notes):
        return _fastgru_model(module, threads, notes).quantize("int8")


# ------------------------------------------------------------------------ fastgru's kernel tables
# The one place that knows how a benchmark makes fastgru use one kernel table rather than the one it
# picks for its CPU: the process-wide ``fastgru._core.set_backend(isa=...)`` (which takes the names of
# FASTGRU_KERNELS, and restores that variable's table, or the automatic one, when called without
# ``isa``), and ``_core.supported_isas()`` for what the CPU runs. When fastgru grows a per-call or
# per-model choice, only these two functions change.


def kernel_tables() -> list[str]:
    """The kernel tables fastgru runs on this CPU, portable first (e.g. generic, avx2, avx512vl,
    avx512vl_vnni, avx512, avx512_vnni)."""
    from fastgru import _core

    return list(_core.supported_isas())


@contextlib.contextmanager
def forced_kernel_table(table: str) -> Iterator[None]:
    """fastgru runs on ``table`` inside the block and on its default choice again after it.

    Engines are interleaved in one process, so a forcing engine forces around its own build and
    calls only; the switch is process-wide and not thread-safe, which is fine here: the harness
    calls one engine at a time."""
    from fastgru import _core

    _core.set_backend(isa=table)
    try:
        yield
    finally:
        _core.set_backend()


class _OnKernelTable:
    """Mixin: the fastgru engine it precedes, run with fastgru forced onto ``table`` around the
    model's construction (packing may depend on the table) and around every call. Applies only
    where the CPU runs a wider table than ``table``: elsewhere it would be the plain engine again."""

    table = "avx2"

    def not_applicable(self) -> str | None:
        try:
            tables = kernel_tables()
        except (ImportError, AttributeError) as exc:
            return f"fastgru's kernel tables are unknown ({type(exc).__name__}: {exc})"
        if self.table not in tables:
            return f"this CPU does not run fastgru's {self.table} table (it runs {tables})"
        if tables[-1] == self.table:
            return f"{self.table} is already the widest table this CPU runs ({tables}): the plain engine is this one"
        return None

    def build(self, module, shape, x, h0, threads):
        with forced_kernel_table(self.table):
            built = super().build(module, shape, x, h0, threads)

        def run(n: int) -> None:
            with forced_kernel_table(self.table):
                built.run(n)

        def output() -> np.ndarray:
            with forced_kernel_table(self.table):
                return built.output()

        return Built(run, output, built.notes)


class FastgruAvx2(_OnKernelTable, Fastgru):
    name = "fastgru-avx2"


class FastgruAvx2Stream(_OnKernelTable, FastgruStream):
    name = "fastgru-avx2-stream"


class FastgruInt8Avx2(_OnKernelTable, FastgruInt8):
    name = "fastgru-int8-avx2"


# ---------------------------------------------------------------------------------------- ONNX


def torch_to_zrh(weights: np.ndarray, hidden: int) -> np.ndarray:
    """Reorders stacked gate rows from PyTorch's (r, z, n) to ONNX/Keras (z, r, h)."""
    r, z, n = weights[:hidden], weights[hidden:2 * hidden], weights[2 * hidden:]
    return np.concatenate([z, r, n], axis=0)


def _torch_arrays(module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().astype(np.float32) for k, v in module.state_dict().items()}


def onnx_gru_model(module, hidden: int) -> bytes:
    """A one-node ONNX graph: GRU(X, W, R, B, sequence_lens="", initial_h) with linear_before_reset=1."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    arrays = _torch_arrays(module)
    w = torch_to_zrh(arrays["weight_ih_l0"], hidden)[None]  # (1, 3H, I)
    r = torch_to_zrh(arrays["weight_hh_l0"], hidden)[None]  # (1, 3H, H)
    b = np.concatenate([torch_to_zrh(arrays["bias_ih_l0"], hidden),
                        torch_to_zrh(arrays["bias_hh_l0"], hidden)])[None]  # (1, 6H): Wb then Rb
    node = helper.make_node("GRU", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"],
                            hidden_size=hidden, linear_before_reset=1)
    graph = helper.make_graph(
        [node], "gru",
        inputs=[helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", w.shape[2]]),
                helper.make_tensor_value_info("initial_h", TensorProto.FLOAT, [1, "B", hidden])],
        outputs=[helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", hidden]),
                 helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "B", hidden])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R"),
                     numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # accepted by every ONNX Runtime from 1.10 on
    onnx.checker.check_model(model)
    return model.SerializeToString()


class OnnxRuntime(Engine):
    name = "onnxruntime"

    def probe(self) -> str:
        import onnx  # noqa: F401 - needed to build the graph
        import onnxruntime

        return onnxruntime.__version__

    def build(self, module, shape, x, h0, threads):
        session = ort_session(onnx_gru_model(module, shape.hidden), threads)
        feed = {"X": x, "initial_h": h0}

        def run(n: int) -> None:
            for _ in range(n):
                session.run(None, feed)

        def output() -> np.ndarray:
            return session.run(None, feed)[0][:, 0]  # Y is (T, D, B, H)

        return Built(run, output)


# ---------------------------------------------------------------------------------------- Keras


class Keras(Engine):
    """Keras 3 ``layers.GRU(reset_after=True)`` on the torch backend, called eagerly under no_grad."""

    name = "keras"

    def probe(self) -> str:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras

        if keras.backend.backend() != "torch":
            raise RuntimeError(f"KERAS_BACKEND is {keras.backend.backend()!r}, this adapter wants 'torch'")
        return keras.__version__

    def build(self, module, shape, x, h0, threads):
        import keras
        import torch

        hidden = shape.hidden
        arrays = _torch_arrays(module)
        layer = keras.layers.GRU(hidden, return_sequences=True, return_state=True, reset_after=True)
        layer.build((shape.batch, shape.seq_len, shape.input_size))
        layer.set_weights([
            torch_to_zrh(arrays["weight_ih_l0"], hidden).T.copy(),  # kernel (I, 3H)
            torch_to_zrh(arrays["weight_hh_l0"], hidden).T.copy(),  # recurrent_kernel (H, 3H)
            np.stack([torch_to_zrh(arrays["bias_ih_l0"], hidden),
                      torch_to_zrh(arrays["bias_hh_l0"], hidden)]),  # bias (2, 3H)
        ])
        x_bt = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))  # Keras is batch-first
        h0_b = torch.from_numpy(np.ascontiguousarray(h0[0]))

        def call():
            return layer(x_bt, initial_state=[h0_b], training=False)

        def run(n: int) -> None:
            with torch.no_grad():
                for _ in range(n):
                    call()

        def output() -> np.ndarray:
            with torch.no_grad():
                sequence = call()[0]
            return keras.ops.convert_to_numpy(sequence).transpose(1, 0, 2)

        return Built(run, output)


ENGINES: dict[str, Engine] = {e.name: e for e in (
    FastgruStream(), Fastgru(), FastgruAvx2Stream(), FastgruAvx2(), Torch(), OnnxRuntime(), Keras(), TorchInt8(),
    FastgruInt8(), FastgruInt8Narrow(), FastgruInt8Stream(), FastgruInt8Avx2())}
# fastgru-avx2* run only where the CPU has a wider kernel table than AVX2 (Engine.not_applicable).
DEFAULT_ENGINES = ["fastgru-stream", "fastgru", "fastgru-avx2-stream", "fastgru-avx2", "torch", "onnxruntime", "keras"]
INT8_ENGINES = ["fastgru-int8-stream", "fastgru-int8", "fastgru-int8-w7", "fastgru-int8-avx2", "torch-int8"]
