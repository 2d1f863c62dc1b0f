"""fastgru.Model: a whole model with a framework's calling conventions: the layers before the GRU stack,
the stack, and the heads after it (a Keras model), a Keras GRU layer alone, or an ONNX GRU node chain.

``fastgru.GRU`` is the bare GRU with PyTorch's conventions; a ``Model`` is what a framework's file holds,
called as that framework calls it:

==========  =====================================================  ===========================================
convention  call                                                   returns
==========  =====================================================  ===========================================
keras       ``model(x, mask=None, initial_state=None)``, x batch-  what ``keras_model.predict(x)`` returns
            first (B, T, features), or (B, T) token ids when the   (an array, or a list with ``return_state``
            model starts with an Embedding                         or ``merge_mode=None``)
onnx        ``model(X, sequence_lens=None, initial_h=None)``       ``(Y, Y_h)`` in ONNX's shapes
==========  =====================================================  ===========================================

Both also take ``num_threads=`` (keyword only), the threads of each GRU layer for this call; without it
each GRU follows its own ``num_threads``, then the process's budget (`fastgru.threads`).

Every Model has the same verbs: ``quantize("int8")``, ``stream(batch_size)``, ``save(path)`` (and
``fastgru.load``, pickle, copy: all bit-exact), ``layers``, ``grus``. A Model runs inference only: for
gradients, take its GRU (``model.gru`` / ``model.grus``: full ``forward(..., return_tape=True)`` and
``backward``); the heads have no backward in fastgru. See docs/objects.md.
"""

from __future__ import annotations

import copy
import zlib

import numpy as np

from .layers import Embedding, KerasRecurrent, Layer, OnnxRecurrent, _Recurrent, build_layer, describe_layer
from .runtime import _as_real_array
from .spec import check_weight_bits
from .threads import check_num_threads

CONVENTIONS = {"keras": ("mask", "initial_state"), "onnx": ("sequence_lens", "initial_h")}


class Model:
    """A chain of layers (`fastgru.layers`) called with a framework's conventions (module docstring).

    Build one with :meth:`from_keras`, :meth:`from_onnx` or :func:`fastgru.load`. Immutable, like
    `fastgru.GRU`: any number of threads may call it at once; a stream belongs to one thread.
    """

    def __init__(self, layers, *, convention: str = "keras", name: str = "model"):
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
        self._layers = tuple(layers)
        if not self._layers or not all(isinstance(layer, Layer) for layer in self._layers):
            raise ValueError("a Model needs at least one layer, each a fastgru.layers.Layer")
        if convention == "onnx" and (len(self._layers) != 1 or not isinstance(self._layers[0], OnnxRecurrent)):
            raise ValueError("an ONNX model holds exactly one OnnxRecurrent layer (a chain of GRU nodes)")
        if convention == "keras" and any(isinstance(layer, OnnxRecurrent) for layer in self._layers):
            raise ValueError("an OnnxRecurrent layer belongs to an ONNX model")
        for layer in self._layers[:-1]:  # a list of outputs can only be the model's output
            if isinstance(layer, KerasRecurrent) and (layer.return_state or (
                    layer.gru.spec.bidirectional and layer.merge_mode is None)):
                raise ValueError(f"layer {layer.name!r} returns a list of outputs (return_state or merge_mode=None); "
                                 f"only the last layer of a model may")
        self.convention = convention
        self.name = str(name)
        grus = [gru for layer in self._layers for gru in layer.grus]
        dtypes = {gru.dtype for gru in grus}
        self.dtype = np.dtype(dtypes.pop() if len(dtypes) == 1 else np.float32)

    # ------------------------------------------------------------ construction

    @classmethod
    def from_keras(cls, obj, *, layer=None, keras_version=None, **options) -> "Model":
        """A Keras model, layer or file (``.keras``, legacy ``.h5``, ``.weights.h5``) as a Model that computes
        what ``model.predict`` computes, masks included (fastgru.io.keras).

        ``layer`` picks one GRU/Bidirectional layer by name (its Keras conventions, without the rest of the
        model). ``keras_version`` overrides the version recorded in the file (it decides what defaults and
        ``hard_sigmoid`` mean). Other keyword arguments override GRU options that a weights-only file
        cannot record (``return_sequences``, ``reset_after``, ``recurrent_activation``, ``merge_mode``...).
        """
        from .io.keras import read_keras

        config, arrays, source = read_keras(obj, layer=layer, keras_version=keras_version, **options)
        return cls._from_portable(config, arrays, source)

    @classmethod
    def from_onnx(cls, obj, node_name=None, *, values=None) -> "Model":
        """A GRU node, or a list of chained nodes, of an ONNX ModelProto, file or bytes, called like the node
        (ONNX's shapes, ``sequence_lens``, ``initial_h``); fastgru.io.onnx."""
        from .io.onnx import read_onnx

        config, arrays, source = read_onnx(obj, node_name=node_name, values=values)
        return cls._from_portable(config, arrays, source)

    def _portable(self) -> tuple[dict, dict]:
        """The description fastgru's file stores (`fastgru.io.native`): JSON config and named arrays."""
        layers, arrays = [], {}
        for index, layer in enumerate(self._layers):
            description, layer_arrays = describe_layer(layer)
            layers.append(description)
            arrays.update({f"layers.{index}.{key}": value for key, value in layer_arrays.items()})
        return {"class": "Model", "convention": self.convention, "name": self.name, "layers": layers}, arrays

    @classmethod
    def _from_portable(cls, config: dict, arrays: dict, label: str) -> "Model":
        """The Model a portable description stands for; errors name ``label`` and the layer."""
        unknown = sorted(set(config) - {"class", "convention", "name", "layers"})
        if unknown:
            raise ValueError(f"{label}: the model's description has key(s) {unknown} that this fastgru does not "
                             f"know (a file from a newer fastgru, or damaged)")
        layers = config.get("layers")
        if not isinstance(layers, list) or not layers:
            raise ValueError(f"{label}: a model description needs a non-empty list of layers")
        dtype = _model_dtype(arrays)
        built = []
        for index, description in enumerate(layers):
            prefix = f"layers.{index}."
            layer_arrays = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
            built.append(build_layer(description, layer_arrays, label, dtype))
        unused = [key for key in arrays if not key.startswith("layers.") or
                  not key.split(".")[1].isdigit() or int(key.split(".")[1]) >= len(layers)]
        if unused:
            raise ValueError(f"{label}: tensors {unused[:5]} belong to no layer")
        try:
            return cls(built, convention=config.get("convention", "keras"), name=config.get("name", "model"))
        except ValueError as error:
            raise ValueError(f"{label}: {error}") from None

    # ------------------------------------------------------------ properties

    @property
    def layers(self) -> tuple:
        """The layers, in order (`fastgru.layers`); recurrent ones hold their `fastgru.GRU` in ``.gru``."""
        return self._layers

    @property
    def grus(self) -> tuple:
        """Every `fastgru.GRU` in the model, in order (a chain of Keras GRU layers that feed each other is one
        multi-layer GRU)."""
        return tuple(gru for layer in self._layers for gru in layer.grus)

    @property
    def gru(self):
        """The model's GRU, when it has exactly one (ValueError otherwise: use ``grus``)."""
        grus = self.grus
        if len(grus) != 1:
            names = [layer.name for layer in self._layers if layer.grus]
            raise ValueError(f"model {self.name!r} has {len(grus)} GRUs (layers {names}); use model.grus")
        return grus[0]

    @property
    def num_threads(self) -> int:
        """Threads each GRU of the model uses per call that names none: the GRUs' own ``num_threads``, else
        the thread budget at this moment (`fastgru.threads`: `set_num_threads`, threadpoolctl,
        ``OMP_NUM_THREADS``, physical cores). Setting it sets every GRU's; ``None`` makes them follow the
        budget again. Not saved or pickled, as for a GRU."""
        return max(gru.num_threads for gru in self.grus)

    @num_threads.setter
    def num_threads(self, value) -> None:
        value = None if value is None else check_num_threads(value)
        for gru in self.grus:
            gru.num_threads = value

    @property
    def weight_format(self) -> str:
        """``"int8"`` when :meth:`quantize` made this model, else its dtype."""
        return "int8" if any(gru.weight_format == "int8" for gru in self.grus) else self.dtype.name

    def __repr__(self) -> str:
        width = max(len(layer.name) for layer in self._layers)
        lines = [f"  {layer.name:<{width}}  {layer.describe()}" for layer in self._layers]
        return f"fastgru.Model({self.name!r}, convention={self.convention!r}, layers=[\n" + "\n".join(lines) + "\n])"

    # ------------------------------------------------------------ calls

    def __call__(self, x, *args, num_threads: int | None = None, **kwargs):
        """``model(x, mask=None, initial_state=None)`` for Keras models, ``model(X, sequence_lens=None,
        initial_h=None)`` for ONNX ones (see the module docstring); ``num_threads`` for every GRU layer."""
        if num_threads is not None:
            num_threads = check_num_threads(num_threads)
        names = CONVENTIONS[self.convention]
        if len(args) > len(names):
            raise TypeError(f"a {self.convention} model is called as model(x, {', '.join(names)}); got "
                            f"{1 + len(args)} positional arguments")
        bound = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                signature = ", ".join(f"{n}=None" for n in names)
                raise TypeError(f"a {self.convention} model is called as model(x, {signature}), not with {key}=")
            if key in bound:
                raise TypeError(f"model() got two values for {key}")
            bound[key] = value
        if self.convention == "onnx":
            return self._layers[0].call_onnx(x, bound.get("sequence_lens"), bound.get("initial_h"),
                                             num_threads=num_threads)
        return self._call_keras(x, bound.get("mask"), bound.get("initial_state"), num_threads)

    def _call_keras(self, inputs, mask, initial_state, num_threads):
        first = self._layers[0]
        x = first.ids(inputs) if isinstance(first, Embedding) else _as_real_array(inputs, "inputs", self.dtype)
        if x.ndim < 2:
            raise ValueError(f"inputs must be batch-first (batch, time, ...), got shape {x.shape}")
        if mask is not None:
            mask = np.asarray(mask)
            if not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.integer)):
                raise TypeError(f"mask must be boolean, got dtype {mask.dtype}")
            if mask.shape != x.shape[:2]:
                raise ValueError(f"mask must be (batch, time) = {x.shape[:2]}, got {mask.shape}")
            mask = mask != 0
        recurrent = [layer for layer in self._layers if isinstance(layer, KerasRecurrent)]
        if initial_state is not None and len(recurrent) != 1:
            raise ValueError(f"initial_state goes to the model's GRU layer, and model {self.name!r} has "
                             f"{len(recurrent)} of them")
        output = x
        for layer in self._layers:
            if isinstance(layer, KerasRecurrent):
                state = initial_state if layer is recurrent[0] else None
                output, mask = layer.call(output, mask, state, num_threads=num_threads)
            else:
                output, mask = layer.call(output, mask)
        if isinstance(output, np.ndarray) and np.may_share_memory(output, x):
            output = output.copy()  # outputs never alias the caller's input (a model of identity layers)
        return output

    def backward(self, *args, **kwargs):
        """Not supported on a whole model: a Model runs inference only. For gradients, call
        ``forward(..., return_tape=True)`` and ``backward`` on its GRU (``model.gru`` / ``model.grus``),
        whose shapes and semantics are PyTorch's; the heads (Dense, normalization, ...) have no backward
        in fastgru, so a gradient through the whole model would silently miss their part."""
        raise NotImplementedError("a fastgru.Model runs inference only: call forward(..., return_tape=True) and "
                                  "backward on its GRU (model.gru or model.grus); the heads have no backward")

    def quantize(self, weight_format: str = "int8", *, weight_bits: int = 8) -> "Model":
        """A new Model whose GRUs hold int8 weights of `weight_bits` bits (8 or 7, as
        `fastgru.GRU.quantize`); the heads stay as they are. This model is unchanged."""
        if weight_format != "int8":
            raise ValueError(f"weight_format must be 'int8', got {weight_format!r}")
        weight_bits = check_weight_bits(weight_bits)
        if self.weight_format == "int8":
            raise ValueError("this model's GRUs are already int8")
        return Model([layer.quantized(weight_bits) for layer in self._layers], convention=self.convention,
                     name=self.name)

    def stream(self, batch_size: int = 1, *, num_threads: int | None = None) -> "ModelStream":
        """A stream that runs the whole model one time step at a time (:class:`ModelStream`)."""
        return ModelStream(self, batch_size, num_threads=num_threads)

    # ------------------------------------------------------------ files

    def save(self, path) -> None:
        """Writes fastgru's own file (`fastgru.io.native`): weights and a JSON description of every layer,
        loadable by fastgru.load with numpy alone; bit-exact."""
        from .io.native import save

        save(self, path)

    def __reduce__(self):
        # The same bytes as save() (see fastgru.GRU.__reduce__).
        from .io.native import dumps, loads

        return loads, (dumps(self),)

    # copy.copy and copy.deepcopy share what never changes (the layers' read-only arrays, each GRU's packed
    # weights) instead of rebuilding the model from its bytes as pickle does; each GRU layer gets its own
    # GRU object, so that num_threads set on a copy leaves the original as it was.
    def __copy__(self) -> "Model":
        return self._with_gru_copies(copy.copy)

    def __deepcopy__(self, memo) -> "Model":
        clone = self._with_gru_copies(lambda gru: copy.deepcopy(gru, memo))
        memo[id(self)] = clone
        return clone

    def _with_gru_copies(self, copy_gru) -> "Model":
        layers = []
        for layer in self._layers:
            if isinstance(layer, _Recurrent):
                layer = copy.copy(layer)  # a new layer object (Layer has no __copy__: its attributes, shallow)
                layer.gru = copy_gru(layer.gru)
            layers.append(layer)
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._layers = tuple(layers)
        return clone


def _model_dtype(arrays: dict) -> np.dtype:
    """float64 when the stored weights are float64, else float32 (the dtype heads compute in)."""
    kinds = {np.asarray(value).dtype for value in arrays.values() if np.asarray(value).dtype.kind == "f"}
    return np.dtype(np.float64 if kinds and kinds <= {np.dtype(np.float64)} else np.float32)


class ModelStream:
    """A whole model run one time step at a time: ``step(x_t)`` takes one frame (B, features), or (B,) token
    ids (a frame of (features,) or one id when B = 1), and returns what the model returns for the sequence
    seen so far at its last step: the per-step output of a ``return_sequences`` model, and the output of a
    model that reduces over time (a GRU without ``return_sequences``, pooling) as if the sequence ended here.
    Masks (Masking, Embedding(mask_zero=True)) act as in a call: a masked frame keeps the GRU's state.
    A stream starts from the GRUs' initial states (zeros), and ``reset`` returns there.

    Every buffer is allocated when the stream is made; a step allocates nothing (except the ``sparsemax``
    activation, which sorts). The returned arrays are read-only and overwritten by the next step: copy
    them to keep them. Unidirectional models only (no Bidirectional, no ``go_backwards``, no reverse ONNX
    node), and no layer that needs the whole sequence (Flatten, normalization over time). Not thread-safe:
    one thread per stream.

    A stream pickles with its state, as `fastgru.GRUStream` does: unpickled (or copied), it continues
    where it stopped. The state is what each layer carries from one step to the next (the GRUs' states,
    each row's last unmasked output, pooling sums, counts and maxima).
    """

    def __init__(self, model: Model, batch_size: int = 1, *, num_threads: int | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self._model = model
        self._num_threads = num_threads
        features = next((layer.input_features for layer in model.layers if layer.input_features is not None), None)
        if features is None:
            raise ValueError(f"model {model.name!r}: no layer says how many features a frame has")
        self._ids = features == "ids"
        self._frame = (self.batch_size,) if self._ids else (self.batch_size, features)
        shape, sequence = self._frame, True
        self._steppers = []
        for layer in model.layers:
            stepper = layer.stepper(shape, sequence, model.dtype, num_threads)
            self._steppers.append(stepper)
            shape, sequence = stepper.out_shape, stepper.sequence
        self._steps = [stepper.step for stepper in self._steppers]

    def reset(self) -> None:
        """Back to the start of a sequence: zero states, empty pooling accumulators."""
        for stepper in self._steppers:
            stepper.reset()

    def step(self, x_t):
        """Advances every layer by one time step (see the class docstring)."""
        if self._ids:
            x = np.asarray(x_t)
            if x.shape != self._frame and not (self.batch_size == 1 and x.shape == ()):
                raise ValueError(f"x_t must hold (B,) = {self._frame} token ids, got shape {x.shape}")
            x = x.reshape(self._frame)
        else:
            x = _as_real_array(x_t, "x_t", self._model.dtype)
            if x.shape != self._frame:
                if not (self.batch_size == 1 and x.shape == self._frame[1:]):
                    raise ValueError(f"x_t must have shape (B, features) = {self._frame}"
                                     f"{' or (features,)' if self.batch_size == 1 else ''}, got {x.shape}")
                x = x.reshape(self._frame)
        valid = None
        for step in self._steps:
            x, valid = step(x, valid)
        return x

    # Pickled like a GRUStream (fastgru.model): the model as its portable bytes, the state as little-endian
    # bytes with their CRC-32, so a damaged state raises instead of continuing from other numbers; the
    # thread count is settled again where it is unpickled. Copies keep num_threads; a shallow copy shares
    # the model, a deep copy gets a copy of it that shares its packed weights.
    def _state_arrays(self) -> list[np.ndarray]:
        return [array for stepper in self._steppers for array in stepper.state()]

    def _state_bytes(self) -> bytes:
        return b"".join(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes() for a in self._state_arrays())

    def _set_state_bytes(self, state: bytes) -> None:
        arrays = self._state_arrays()
        expected = sum(array.nbytes for array in arrays)
        if len(state) != expected:
            raise ValueError(f"damaged pickle of a fastgru.ModelStream: {len(state)} bytes of state where a stream "
                             f"of batch_size {self.batch_size} of this model has {expected}")
        offset = 0
        for array in arrays:
            array[...] = np.frombuffer(state, array.dtype.newbyteorder("<"), array.size, offset).reshape(array.shape)
            offset += array.nbytes

    def __reduce__(self):
        state = self._state_bytes()
        return _restore_model_stream, (self._model, self.batch_size, state, zlib.crc32(state))

    def __copy__(self) -> "ModelStream":
        return self._clone(self._model)

    def __deepcopy__(self, memo) -> "ModelStream":
        clone = self._clone(copy.deepcopy(self._model, memo))
        memo[id(self)] = clone
        return clone

    def _clone(self, model: Model) -> "ModelStream":
        clone = ModelStream(model, self.batch_size, num_threads=self._num_threads)
        for target, source in zip(clone._state_arrays(), self._state_arrays()):
            np.copyto(target, source)
        return clone


def _restore_model_stream(model: Model, batch_size: int, state: bytes, crc32: int) -> ModelStream:
    """Unpickles a ModelStream (ModelStream.__reduce__); ValueError when its bytes were damaged."""
    if not isinstance(model, Model) or not isinstance(state, bytes) or zlib.crc32(state) != crc32 or \
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError("damaged pickle of a fastgru.ModelStream: its model, batch size or state does not match "
                         "its CRC-32")
    stream = ModelStream(model, batch_size)
    stream._set_state_bytes(state)
    return stream
