"""The layers of a `fastgru.Model`: the recurrent layers (a `fastgru.GRU` called with Keras' or ONNX's
conventions) and the layers Keras models put around them, in numpy.

Every layer is immutable (its arrays are read-only) and has

- ``call(x, mask) -> (y, mask)``: a whole batch, Keras' shapes (batch first) and Keras' mask rules: the
  mask is (B, T) booleans or None, and passes through exactly the layers where Keras passes it
  (``supports_masking`` in Keras 3); Masking and Embedding(mask_zero=True) make one, a GRU without
  ``return_sequences``, pooling and Flatten end it;
- ``stepper(in_shape, sequence, dtype, num_threads)``: the same computation one time step at a time
  (``in_shape`` is one step's input shape, batch first), with every buffer allocated up front
  (`fastgru.Model.stream`). A step never lets numpy broadcast two operands against each other (numpy
  allocates an iterator buffer for that): constants are tiled to the step's shape when the stream is
  made, and per-row statistics are spread with ``copyto`` (see fastgru.activations);
- ``config()`` / ``arrays()`` and ``from_config``: the portable description that fastgru's file stores
  and that the importers produce (JSON-able values, arrays under their Keras names).

The heads run in numpy: a Dense head costs one BLAS GEMM over all time steps at once (numpy's
``matmul`` on a (B*T, I) view), and the elementwise work is a few passes over arrays that are small next
to the GRU's; see docs/objects.md for the measurement.
"""

from __future__ import annotations

import math

import numpy as np

from . import activations
from .model import GRU
from .runtime import _as_real_array

LAYER_CLASSES: dict[str, type] = {}
# Keras classes that are the identity at inference (dropout and noise act only in training; the
# activity regularizer only adds a loss). Masks pass through all of them.
IDENTITY_CLASSES = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                    "ActivityRegularization", "Identity")
DATA_FORMATS = ("channels_last", "channels_first")


def _register(cls):
    LAYER_CLASSES[cls.class_name] = cls
    return cls


def _frozen(value, dtype) -> np.ndarray:
    array = np.array(value, dtype=dtype, order="C", copy=True)
    array.flags.writeable = False
    return array


def _tiled(array: np.ndarray, shape: tuple) -> np.ndarray:
    """``array`` broadcast to ``shape`` as a real array, so that a stream step's operands all have one shape."""
    return np.ascontiguousarray(np.broadcast_to(array, shape))


def _readonly_view(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class ConfigError(ValueError):
    """A layer description that does not make sense (a damaged file, or an importer bug)."""


def _option(config: dict, key: str, kinds, where: str, default=...):
    if key not in config:
        if default is ...:
            raise ConfigError(f"{where}: missing option {key!r}")
        return default
    value = config[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _as_tuple(kinds)):
        raise ConfigError(f"{where}: option {key}={value!r} has the wrong type")
    return value


def _as_tuple(kinds):
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _array(arrays: dict, key: str, where: str, ndim: int, dtype, optional: bool = False):
    if key not in arrays:
        if optional:
            return None
        raise ConfigError(f"{where}: missing tensor {key!r}")
    array = np.asarray(arrays[key])
    if array.ndim != ndim:
        raise ConfigError(f"{where}: tensor {key!r} has shape {array.shape}, expected {ndim} dimension(s)")
    if array.dtype.kind not in "fiu":
        raise ConfigError(f"{where}: tensor {key!r} has dtype {array.dtype}, expected numbers")
    return _frozen(array, dtype)


def _axes(axis, rank: int, where: str) -> tuple[int, ...]:
    """Keras' ``axis`` (an int or a list; negative counts from the end) as sorted positive axes of a
    tensor of ``rank`` dimensions; the batch axis is refused."""
    axes = [axis] if isinstance(axis, int) else list(axis)
    resolved = sorted({a + rank if a < 0 else a for a in axes})
    if not resolved or resolved[0] < 1 or resolved[-1] >= rank:
        raise ValueError(f"{where}: axis={axis!r} does not fit an input of {rank} dimensions "
                         f"(the batch axis cannot be normalized)")
    return tuple(resolved)


class Layer:
    """The base of every layer: a name (the framework's) and the verbs listed in the module docstring."""

    class_name = "Layer"
    grus: tuple = ()

    def __init__(self, name: str):
        self.name = str(name)

    def call(self, x, mask):
        raise NotImplementedError(type(self).__name__)

    @property
    def input_features(self):
        """The per-step input size this layer requires: an int, ``"ids"`` (Embedding), or None when it
        takes any size (the Model reads its input size from the first layer that says)."""
        return None

    def stepper(self, in_shape: tuple, sequence: bool, dtype, num_threads):
        raise ValueError(f"layer {self.name!r} ({self.describe()}) cannot be streamed: its output needs the "
                         f"whole sequence")

    def config(self) -> dict:
        return {}

    def arrays(self) -> dict:
        return {}

    def quantized(self, weight_bits: int = 8) -> "Layer":
        """This layer with its GRU's weights quantized to int8 codes of `weight_bits` bits; a layer
        without a GRU is returned as it is."""
        return self

    def describe(self) -> str:
        return self.class_name

    def __repr__(self) -> str:
        return f"{self.describe()} {self.name!r}"


class _Stepper:
    """One layer, one time step: ``step(x_t, valid) -> (y_t, valid)`` with ``valid`` (B,) booleans or None.
    ``out_shape`` is y_t's shape, ``sequence`` whether y_t is a time step of a sequence (False after a
    layer that reduces over time: each step then gives the value for the sequence so far)."""

    sequence = True

    def reset(self) -> None:
        pass

    def state(self) -> list[np.ndarray]:
        """The buffers that carry this stepper's state from one step to the next, in a fixed order (empty
        for a stepper without state; all other buffers are rewritten by every step). A stream's pickle
        and copies hold these (`fastgru.ModelStream`); writing into them restores a state."""
        return []


class _PassStepper(_Stepper):
    def __init__(self, value, in_shape, sequence, dtype):
        self.out_shape, self.sequence = in_shape, sequence

    def step(self, x, valid):
        return x, valid


class _OneOption(Layer):
    """A layer whose whole description is one option (``option``, of JSON type ``kinds``), converted and
    checked by ``convert``; ``stepper_class(value, in_shape, sequence, dtype)`` streams it."""

    option, kinds, stepper_class = "", str, None

    def __init__(self, name, value):
        super().__init__(name)
        setattr(self, self.option, self.convert(value))

    @staticmethod
    def convert(value):
        return value

    def config(self):
        return {self.option: getattr(self, self.option)}

    def stepper(self, in_shape, sequence, dtype, num_threads):
        return self.stepper_class(getattr(self, self.option), in_shape, sequence, dtype)

    def describe(self):
        return f"{self.class_name}({self.option}={getattr(self, self.option)!r})"

    @classmethod
    def from_config(cls, name, config, arrays, where, dtype):
        value = _option(config, cls.option, cls.kinds, where)
        try:
            return cls(name, value)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None


# ------------------------------------------------------------------------------------------ input side


class _MaskingStepper(_Stepper):
    def __init__(self, mask_value, in_shape, sequence, dtype):
        self.mask_value, self.out_shape, self.sequence = mask_value, in_shape, sequence
        self.output = np.zeros(in_shape, dtype=dtype)
        self.differs = np.zeros(in_shape, dtype=bool)
        self.valid = np.zeros(in_shape[:-1], dtype=bool)
        self.masked = np.zeros(in_shape[:-1], dtype=bool)
        self.masked_column = self.masked[..., None]
        self.view = _readonly_view(self.output)

    def step(self, x, valid):
        np.not_equal(x, self.mask_value, out=self.differs)
        np.logical_or.reduce(self.differs, axis=-1, out=self.valid)  # np.any, without its wrapper's cost
        if self.valid.all():  # the usual frame: nothing to zero
            return x, self.valid
        np.logical_not(self.valid, out=self.masked)
        np.copyto(self.output, x)
        np.copyto(self.output, 0, where=self.masked_column)
        return self.view, self.valid


@_register
class Masking(_OneOption):
    """Keras' Masking: steps whose features all equal ``mask_value`` are masked, and zeroed."""

    class_name, option, kinds, convert, stepper_class = "Masking", "mask_value", (int, float), float, _MaskingStepper

    def call(self, x, mask):
        mask = np.any(x != self.mask_value, axis=-1)
        return np.where(mask[..., None], x, 0).astype(x.dtype, copy=False), mask


@_register
class Embedding(Layer):
    """Keras' Embedding: integer ids (B, T) to vectors (B, T, D); ``mask_zero`` masks the id 0."""

    class_name = "Embedding"

    def __init__(self, name, embeddings, mask_zero: bool = False):
        super().__init__(name)
        self.embeddings = _frozen(embeddings, np.asarray(embeddings).dtype)
        self.mask_zero = bool(mask_zero)

    @property
    def input_features(self):
        return "ids"

    def ids(self, value, what="inputs") -> np.ndarray:
        """Token ids as int64, checked: integers (or floats holding integers: Keras' Input is float32 by
        default) in 0..input_dim-1."""
        array = value if type(value) is np.ndarray else np.asarray(value)
        if array.dtype.kind == "f":
            integral = np.isfinite(array).all() and np.array_equal(array, np.trunc(array))
            if not integral:
                raise ValueError(f"layer {self.name!r}: {what} are token ids and must be whole numbers, got "
                                 f"non-integral values (dtype {array.dtype})")
        elif array.dtype.kind not in "iu":
            raise TypeError(f"layer {self.name!r}: {what} are token ids and must be integers, got dtype {array.dtype}")
        if array.size:
            low, high = array.min(), array.max()
            if low < 0 or high >= self.embeddings.shape[0]:
                raise ValueError(f"layer {self.name!r}: token ids must lie in 0..{self.embeddings.shape[0] - 1}, "
                                 f"got min {low} max {high}")
        return array.astype(np.int64, copy=False)

    def call(self, x, mask):
        ids = self.ids(x)
        output = np.take(self.embeddings, ids, axis=0)
        return output, (ids != 0 if self.mask_zero else None)

    def stepper(self, in_shape, sequence, dtype, num_threads):
        return _EmbeddingStepper(self, in_shape, sequence)

    def config(self):
        return {"mask_zero": self.mask_zero}

    def arrays(self):
        return {"embeddings": self.embeddings}

    @classmethod
    def from_config(cls, name, config, arrays, where, dtype):
        return cls(name, _array(arrays, "embeddings", where, 2, dtype),
                   _option(config, "mask_zero", bool, where, False))

    def describe(self):
        vocabulary, width = self.embeddings.shape
        return f"Embedding({vocabulary}, {width}{', mask_zero=True' if self.mask_zero else ''})"


class _EmbeddingStepper(_Stepper):
    def __init__(self, layer, in_shape, sequence):
        self.layer, self.sequence = layer, sequence
        self.out_shape = in_shape + (layer.embeddings.shape[1],)
        self.output = np.zeros(self.out_shape, dtype=layer.embeddings.dtype)
        self.valid = np.zeros(in_shape, dtype=bool)
        self.view = _readonly_view(self.output)

    def step(self, ids, valid):
        ids = self.layer.ids(ids, "x_t")
        if ids.shape != self.valid.shape:
            raise ValueError(f"x_t must hold {self.valid.shape} token ids, got shape {ids.shape}")
        # ids are checked above; mode="clip" lets numpy write into out directly ("raise" buffers it)
        np.take(self.layer.embeddings, ids, axis=0, out=self.output, mode="clip")
        if not self.layer.mask_zero:
            return self.view, None
        np.not_equal(ids, 0, out=self.valid)
        return self.view, self.valid


# ------------------------------------------------------------------------------------------ heads


def _check_features(layer, x, expected):
    if x.ndim < 2 or x.shape[-1] != expected:
        raise ValueError(f"layer {layer.name!r} ({layer.describe()}) expects {expected} features in the last axis, "
                         f"got shape {x.shape}")


def _check_activation(value, where):
    try:
        return activations.check_activation(value)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


class _ActivationBuffers:
    """The output and scratch arrays of one activation at one step shape."""

    def __init__(self, name, in_shape, dtype):
        self.name = name
        self.function = activations.ACTIVATIONS[name]
        self.input = np.zeros(in_shape, dtype=dtype)
        self.output = np.zeros(in_shape[:-1] + (activations.output_width(name, in_shape[-1]),), dtype=dtype)
        self.tmp = np.zeros(in_shape, dtype=dtype)
        self.red = np.zeros(in_shape[:-1] + (1,), dtype=dtype)
        self.view = _readonly_view(self.output)

    def apply(self, x):
        if self.name in activations.MAY_OVERFLOW:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self.function(x, self.output, self.tmp, self.red)
        else:  # a stream's steps are short: errstate's microsecond only where numpy would warn on finite input
            self.function(x, self.output, self.tmp, self.red)
        return self.view


@_register
class Dense(Layer):
    """Keras' Dense on the last axis: ``activation(x @ kernel + bias)``, kernel (I, U)."""

    class_name = "Dense"

    def __init__(self, name, kernel, bias=None, activation: str = "linear"):
        super().__init__(name)
        self.kernel = _frozen(kernel, np.asarray(kernel).dtype)
        self.bias = None if bias is None else _frozen(bias, self.kernel.dtype)
        self.activation = activations.check_activation(activation)
        if self.kernel.ndim != 2 or (self.bias is not None and self.bias.shape != self.kernel.shape[1:]):
            raise ConfigError(f"layer {self.name!r}: kernel {self.kernel.shape} and bias "
                              f"{None if self.bias is None else self.bias.shape} do not make a Dense layer")
        activations.output_width(self.activation, self.kernel.shape[1])

    @property
    def input_features(self):
        return self.kernel.shape[0]

    def call(self, x, mask):
        _check_features(self, x, self.kernel.shape[0])
        flat = np.ascontiguousarray(x).reshape(-1, self.kernel.shape[0])
        output = (flat @ self.kernel).reshape(x.shape[:-1] + (self.kernel.shape[1],))
        if self.bias is not None:
            output += self.bias
        if self.activation == "linear":
            return output, mask
        out = output if self.activation != "glu" else None
        return activations.apply(self.activation, output, out), mask

    def stepper(self, in_shape, sequence, dtype, num_threads):
        return _DenseStepper(self, in_shape, sequence)

    def config(self):
        return {"activation": self.activation}

    def arrays(self):
        return {"kernel": self.kernel, **({} if self.bias is None else {"bias": self.bias})}

    @classmethod
    def from_config(cls, name, config, arrays, where, dtype):
        activation = _check_activation(_option(config, "activation", str, where, "linear"), where)
        return cls(name, _array(arrays, "kernel", where, 2, dtype), _array(arrays, "bias", where, 1, dtype, True),
                   activation)

    def describe(self):
        inputs, units = self.kernel.shape
        extra = "" if self.bias is not None else ", use_bias=False"
        return f"Dense({inputs} -> {units}, activation={self.activation!r}{extra})"


class _DenseStepper(_Stepper):
    def __init__(self, layer, in_shape, sequence):
        if in_shape[-1] != layer.kernel.shape[0]:
            raise ValueError(f"layer {layer.name!r} ({layer.describe()}) expects {layer.kernel.shape[0]} features, "
                             f"its input has {in_shape[-1]}")
        self.layer, self.sequence = layer, sequence
        product_shape = in_shape[:-1] + (layer.kernel.shape[1],)
        self.product = np.zeros(product_shape, dtype=layer.kernel.dtype)
        self.product_view = _readonly_view(self.product)
        self.bias = None if layer.bias is None else _tiled(layer.bias, product_shape)
        self.buffers = None if layer.activation == "linear" else \
            _ActivationBuffers(layer.activation, product_shape, layer.kernel.dtype)
        self.out_shape = product_shape if self.buffers is None else self.buffers.output.shape

    def step(self, x, valid):
        np.matmul(x, self.layer.kernel, out=self.product)
        if self.bias is not None:
            np.add(self.product, self.bias, out=self.product)
        if self.buffers is None:
            return self.product_view, valid
        return self.buffers.apply(self.product), valid


class _ActivationStepper(_Stepper):
    def __init__(self, activation, in_shape, sequence, dtype):
        self.sequence = sequence
        self.buffers = _ActivationBuffers(activation, in_shape, dtype)
        self.out_shape = self.buffers.output.shape

    def step(self, x, valid):
        return self.buffers.apply(x), valid


@_register
class Activation(_OneOption):
    """Keras' Activation layer."""

    class_name, option, stepper_class = "Activation", "activation", _ActivationStepper
    convert = staticmethod(activations.check_activation)

    def call(self, x, mask):
        return activations.apply(self.activation, x), mask


@_register
class Identity(_OneOption):
    """A layer that is the identity at inference (``keras_class`` says which: Dropout, GaussianNoise, ...)."""

    class_name, option, convert, stepper_class = "Identity", "keras_class", str, _PassStepper

    def call(self, x, mask):
        return x, mask

    def describe(self):
        return f"{self.keras_class} (identity at inference)"


@_register
class TimeDistributed(Layer):
    """Keras' TimeDistributed: the inner layer on each time step (B*T rows at once); the mask passes."""

    class_name = "TimeDistributed"
    INNER = ("Dense", "Activation", "Identity")

    def __init__(self, name, inner: Layer):
        super().__init__(name)
        if inner.class_name not in self.INNER:
            raise ConfigError(f"layer {self.name!r}: TimeDistributed({inner.class_name}) is not supported "
                              f"(inner layers: {', '.join(self.INNER)})")
        self.inner = inner

    @property
    def input_features(self):
        return self.inner.input_features

    def call(self, x, mask):
        if x.ndim < 3:
            raise ValueError(f"layer {self.name!r} (TimeDistributed) expects (batch, time, ...) input, "
                             f"got shape {x.shape}")
        flat, _ = self.inner.call(x.reshape((-1,) + x.shape[2:]), None)
        return flat.reshape(x.shape[:2] + flat.shape[1:]), mask

    def stepper(self, in_shape, sequence, dtype, num_threads):
        inner = self.inner.stepper(in_shape, False, dtype, num_threads)
        return _TimeDistributedStepper(inner, sequence)

    def config(self):
        return {"layer": {"class": self.inner.class_name, "name": self.inner.name, "config": self.inner.config()}}

    def arrays(self):
        return {f"layer.{key}": value for key, value in self.inner.arrays().items()}

    @classmethod
    def from_config(cls, name, config, arrays, where, dtype):
        inner = _option(config, "layer", dict, where)
        prefix = "layer."
        inner_arrays = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
        return cls(name, build_layer(inner, inner_arrays, where, dtype))

    def describe(self):
        return f"TimeDistributed({self.inner.describe()})"


class _TimeDistributedStepper(_Stepper):
    def __init__(self, inner, sequence):
        self.inner, self.sequence, self.out_shape = inner, sequence, inner.out_shape

    def step(self, x, valid):
        return self.inner.step(x, None)[0], valid

    def reset(self):
        self.inner.reset()

    def state(self):
        return self.inner.state()


@_register
class LayerNormalization(Layer):
    """Keras 3's LayerNormalization: ``(x - mean) / sqrt(var + epsilon) * gamma + beta`` over ``axis``;
    with ``rms_scaling``, ``x / sqrt(var + epsilon) * gamma`` (Keras divides by the variance, not by the
    mean square). Masks pass through, unused (as in Keras)."""

    class_name = "LayerNormalization"

    def __init__(self, name, axis, epsilon: float, gamma=None, beta=None, rms_scaling: bool = False):
        super().__init__(name)
        self.axis = axis if isinstance(axis, int) else [int(a) for a in axis]
        self.epsilon = float(epsilon)
        self.gamma, self.beta, self.rms_scaling = gamma, beta, bool(rms_scaling)

    def _normalize(self, x, axes, out=None, tmp=None, stats=None):
        shape = [1] * x.ndim
        for axis in axes:
            shape[axis] = x.shape[axis]
        if out is None:  # a whole call: plain numpy, temporaries allocated
            mean = np.mean(x, axis=axes, keepdims=True)
            inverse = 1.0 / np.sqrt(np.var(x, axis=axes, keepdims=True) + self.epsilon)
            output = x * inverse if self.rms_scaling else (x - mean) * inverse
        else:  # a stream step: the last axis only, into preallocated buffers, nothing broadcast
            reduced, gamma, beta = stats
            width = x.shape[-1]
            np.add.reduce(x, axis=-1, keepdims=True, out=reduced)
            np.divide(reduced, width, out=reduced)
            np.copyto(out, reduced)
            np.subtract(x, out, out=tmp)
            np.square(tmp, out=out)
            np.add.reduce(out, axis=-1, keepdims=True, out=reduced)
            np.divide(reduced, width, out=reduced)
            np.add(reduced, self.epsilon, out=reduced)
            np.sqrt(reduced, out=reduced)
            np.copyto(out, reduced)
            np.divide(x if self.rms_scaling else tmp, out, out=out)
            if gamma is not None:
                np.multiply(out, gamma, out=out)
            if beta is not None and not self.rms_scaling:
                np.add(out, beta, out=out)
            return out
        if self.gamma is not None:
            output *= self.gamma.reshape(shape) if len(axes) > 1 else self.gamma
        if self.beta is not None and not self.rms_scaling:
            output += self.beta.reshape(shape) if len(axes) > 1 else self.beta
        return output

    def call(self, x, mask):
        axes = _axes(self.axis, x.ndim, f"layer {self.name!r}")
        self._check_parameters(x.shape, axes)
        return self._normalize(x, axes).astype(x.dtype, copy=False), mask

    def _check_parameters(self, shape, axes):
        expected = tuple(shape[a] for a in axes)
        for label, parameter in (("gamma", self.gamma), ("beta", self.beta)):
            if parameter is not None and parameter.size != math.prod(expected):
                raise ValueError(f"layer {self.name!r}: {label} has shape {parameter.shape}, the normalized axes "
                                 f"{axes} of the input {shape} have {expected}")

    def stepper(self, in_shape, sequence, dtype, num_threads):
        rank = len(in_shape) + sequence
        axes = _axes(self.axis, rank, f"layer {self.name!r}")
        if axes != (rank - 1,):
            raise ValueError(f"layer {self.name!r} (LayerNormalization over axis={self.axis!r}) cannot be streamed: "
                             f"only a normalization over the features (the last axis) can")
        self._check_parameters(in_shape, (len(in_shape) - 1,))
        return _LayerNormalizationStepper(self, in_shape, sequence, dtype)

    def config(self):
        return {"axis": self.axis, "epsilon": self.epsilon, "rms_scaling": self.rms_scaling}

    def arrays(self):
        return {key: value for key, value in (("gamma", self.gamma), ("beta", self.beta)) if value is not None}

    @classmethod
    def from_config(cls, name, config, arrays, where, dtype):
        axis = _option(config, "axis", (int, list), where, -1)
        if isinstance(axis, list) and not all(isinstance(a, int) and not isinstance(a, bool) for a in axis):
            raise ConfigError(f"{where}: axis={axis!r} must be integers")
        return cls(name, axis, _option(config, "epsilon", (int, float), where, 1e-3),
                   _array(arrays, "gamma", where, np.asarray(arrays.get("gamma", ())).ndim, dtype, True),
                   _array(arrays, "beta", where, np.asarray(arrays.get("beta", ())).ndim, dtype, True),
                   _option(config, "rms_scaling", bool, where, False))

    def describe(self):
        extra = ", rms_scaling=True" if self.rms_scaling else ""
        return f"LayerNormalization(axis={self.axis}, epsilon={self.epsilon:g}{extra})"


class _LayerNormalizationStepper(_Stepper):
    def __init__(self, layer, in_shape, sequence, dtype):
        self.layer, self.out_shape, self.sequence = layer, in_shape, sequence
        gamma, beta = (None if p is None else _tiled(p.astype(dtype), in_shape) for p in (layer.gamma, layer.beta))
        self.buffers = (np.zeros(in_shape, dtype), np.zeros(in_shape, dtype),
                        (np.zeros(in_shape[:-1] + (1,), dtype), gamma, beta))
        self.view = _readonly_view(self.buffers[0])

    def step(self, x, valid):
        out, tmp, stats = self.buffers
        self.layer._normalize(x, (x.ndim - 1,), out, tmp, stats)
        return self.view, valid


@_register
class BatchNormalization(Layer):
    """Keras' BatchNormalization at inference, with its moving statistics:
    ``(x - moving_mean) * (gamma / sqrt(moving_variance + epsilon)) + beta`` along ``axis``."""

    class_name = "BatchNormalization"

    def __init__(self, name, axis: int, epsilon: float, moving_mean, moving_variance, gamma=None, beta=None):
        super().__init__(name)
        self.axis, self.epsilon = int(axis), float(epsilon)
        self.moving_mean, self.moving_variance, self.gamma, self.beta = moving_mean, moving_variance, gamma, beta
        for label, parameter in (("moving_variance", moving_variance), ("gamma", gamma), ("beta", beta)):
            if parameter is not None and parameter.shape != moving_mean.shape:
                raise ConfigError(f"layer {self.name!r}: {label} has shape {parameter.shape}, moving_mean "
                                  f"{moving_mean.shape}")
        # Keras computes variance.add(epsilon).rsqrt().mul(gamma) in the layer's dtype: the same here.
        dtype = moving_mean.dtype
        multiplier = (1 / np.sqrt(moving_variance + dtype.type(self.epsilon))).astype(dtype)
        self.multiplier = _frozen(multiplier if gamma is None else multiplier * gamma, dtype)
        self.offset = _frozen(np.zeros_like(moving_mean) if beta is None else beta, dtype)

    def _shape(self, rank):
        axis = _axes(self.axis, rank, f"layer {self.name!r}")[0]
        shape = [1] * rank
        shape[axis] = self.moving_mean.shape[0]
        return axis, shape

    def call(self, x, mask):
        axis, shape = self._shape(x.ndim)
        if x.shape[axis] != self.moving_mean.shape[0]:
            raise ValueError(f"layer {self.name!r}: axis {axis} of the input {x.shape} has {x.shape[axis]} entries, "
                             f"the moving statistics {self.moving_mean.shape[0]}")
        output = (x - self.moving_mean.reshape(shape)) * self.multiplier.reshape(shape) + self.offset.reshape(shape)
        return output.astype(x.dtype, copy=False), mask

    def stepper(self, in_shape, sequence, dtype, num_threads):
        rank = len(in_shape) + sequence
        axis, _ = self._shape(rank)
        if axis != rank - 1 or in_shape[-1] != self.moving_mean.shape[0]:
            raise ValueError(f"layer {self.name!r} (BatchNormalization over axis={self.axis}) cannot be streamed: "
                             f"only a normalization of the {in_shape[-1]} features (the last axis) can")
        return _BatchNormalizationStepper(self, in_shape, sequence)

    def config(self):
        return {"axis": self.axis, "epsilon": self.epsilon}

    def arrays(self):
        pairs = (("gamma", self.gamma), ("beta", self.beta), ("moving_mean", self.moving_mean),
                 ("moving_variance", self.moving_variance))
        return {key: value for key, value in pairs if value is not None}

    @classmethod
    def from_config(cls, name, config, arrays, where, dtype):
        return cls(name, _option(config, "axis", int, where, -1), _option(config, "epsilon", (int, float), where, 1e-3),
                   _array(arrays, "moving_mean", where, 1, dtype), _array(arrays, "moving_variance", where, 1, dtype),
                   _array(arrays, "gamma", where, 1, dtype, True), _array(arrays, "beta", where, 1, dtype, True))

    def describe(self):
        return f"BatchNormalization(axis={self.axis}, epsilon={self.epsilon:g}, moving statistics)"


class _BatchNormalizationStepper(_Stepper):
    def __init__(self, layer, in_shape, sequence):
        self.out_shape, self.sequence = in_shape, sequence
        self.mean, self.multiplier, self.offset = (_tiled(p, in_shape) for p in (
            layer.moving_mean, layer.multiplier, layer.offset))
        self.output = np.zeros(in_shape, dtype=layer.moving_mean.dtype)
        self.view = _readonly_view(self.output)

    def step(self, x, valid):
        np.subtract(x, self.mean, out=self.output)
        np.multiply(self.output, self.multiplier, out=self.output)
        np.add(self.output, self.offset, out=self.output)
        return self.view, valid


class _Pooling(Layer):
    def __init__(self, name, data_format: str = "channels_last", keepdims: bool = False):
        super().__init__(name)
        if data_format not in DATA_FORMATS:
            raise ConfigError(f"layer {self.name!r}: data_format={data_format!r} (expected one of {DATA_FORMATS})")
        self.data_format, self.keepdims = data_format, bool(keepdims)

    @property
    def steps_axis(self):
        return 1 if self.data_format == "channels_last" else 2

    def _check(self, x):
        if x.ndim != 3:
            raise ValueError(f"layer {self.name!r} ({self.describe()}) expects (batch, steps, features) input, "
                             f"got shape {x.shape}")

    def stepper(self, in_shape, sequence, dtype, num_threads):
        if self.data_format != "channels_last" or not sequence:
            return super().stepper(in_shape, sequence, dtype, num_threads)
        return _PoolingStepper(self, in_shape, dtype)

    def config(self):
        return {"data_format": self.data_format, "keepdims": self.keepdims}

    @classmethod
    def from_config(cls, name, config, arrays, where, dtype):
        return cls(name, _option(config, "data_format", str, where, "channels_last"),
                   _option(config, "keepdims", bool, where, False))

    def describe(self):
        extra = (", data_format='channels_first'" if self.data_format != "channels_last" else "") + \
            (", keepdims=True" if self.keepdims else "")
        return f"{self.class_name}({extra.lstrip(', ')})"


@_register
class GlobalAveragePooling1D(_Pooling):
    """Keras' GlobalAveragePooling1D: with a mask, the mean over the unmasked steps only (a sequence with no
    unmasked step gives 0/0 = NaN, as in Keras)."""

    class_name = "GlobalAveragePooling1D"

    def call(self, x, mask):
        self._check(x)
        axis = self.steps_axis
        if mask is None:
            return np.mean(x, axis=axis, keepdims=self.keepdims).astype(x.dtype, copy=False), None
        if mask.shape != (x.shape[0], x.shape[axis]):
            raise ValueError(f"layer {self.name!r} ({self.describe()}): the mask {mask.shape} does not fit the steps "
                             f"axis {axis} of the input {x.shape}")
        mask = mask[:, :, None] if axis == 1 else mask[:, None, :]
        total = np.sum(np.where(mask, x, 0), axis=axis, keepdims=self.keepdims)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (total / np.sum(mask, axis=axis, keepdims=self.keepdims).astype(x.dtype)).astype(x.dtype), None


@_register
class GlobalMaxPooling1D(_Pooling):
    """Keras' GlobalMaxPooling1D: the maximum over all steps. Keras ignores the mask here (the layer does
    not support masking), so fastgru does too: masked steps hold what the layer before produced there."""

    class_name = "GlobalMaxPooling1D"

    def call(self, x, mask):
        self._check(x)
        return np.max(x, axis=self.steps_axis, keepdims=self.keepdims), None


class _PoolingStepper(_Stepper):
    """A running mean or maximum: each step gives the pooled value of the sequence so far."""

    sequence = False

    def __init__(self, layer, in_shape, dtype):
        self.average = isinstance(layer, GlobalAveragePooling1D)
        self.out_shape = (in_shape[0], 1, in_shape[1]) if layer.keepdims else in_shape
        self.accumulator = np.zeros(in_shape, dtype=dtype)
        self.count = np.zeros((in_shape[0], 1), dtype=dtype)
        self.valid = np.zeros(in_shape[0], dtype=bool)
        self.masked = np.zeros(in_shape[0], dtype=bool)
        self.valid_column, self.masked_column = self.valid[:, None], self.masked[:, None]
        self.step_count = np.zeros((in_shape[0], 1), dtype=dtype)
        self.term = np.zeros(in_shape, dtype=dtype)
        self.output = np.zeros(in_shape, dtype=dtype)
        self.view = _readonly_view(self.output).reshape(self.out_shape)
        self.reset()

    def reset(self):
        self.accumulator[...] = 0 if self.average else -np.inf
        self.count[...] = 0

    def state(self):
        return [self.accumulator, self.count]

    def step(self, x, valid):
        if not self.average:
            np.maximum(self.accumulator, x, out=self.accumulator)
            np.copyto(self.output, self.accumulator)
            return self.view, None
        if valid is None:
            np.add(self.accumulator, x, out=self.accumulator)
            np.add(self.count, 1, out=self.count)
        else:  # a masked row adds nothing (written without ufunc where=, which allocates a buffer)
            np.copyto(self.valid, valid)
            np.logical_not(self.valid, out=self.masked)
            np.copyto(self.term, x)
            np.copyto(self.term, 0, where=self.masked_column)
            np.add(self.accumulator, self.term, out=self.accumulator)
            np.copyto(self.step_count, self.valid_column)
            np.add(self.count, self.step_count, out=self.count)
        np.copyto(self.term, self.count)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(self.accumulator, self.term, out=self.output)
        return self.view, None


@_register
class Flatten(Layer):
    """Keras' Flatten: (batch, ...) to (batch, n); ``channels_first`` moves the channel axis last first."""

    class_name = "Flatten"

    def __init__(self, name, data_format: str = "channels_last"):
        super().__init__(name)
        if data_format not in DATA_FORMATS:
            raise ConfigError(f"layer {self.name!r}: data_format={data_format!r} (expected one of {DATA_FORMATS})")
        self.data_format = data_format

    def call(self, x, mask):
        if self.data_format == "channels_first" and x.ndim > 2:
            x = np.transpose(x, (0, *range(2, x.ndim), 1))
        return np.ascontiguousarray(x).reshape(x.shape[0], -1).copy(), None

    def config(self):
        return {"data_format": self.data_format}

    @classmethod
    def from_config(cls, name, config, arrays, where, dtype):
        return cls(name, _option(config, "data_format", str, where, "channels_last"))

    def describe(self):
        return "Flatten()" if self.data_format == "channels_last" else "Flatten(data_format='channels_first')"


# ------------------------------------------------------------------------------------------ recurrent


def _gru_from_config(config, arrays, where):
    gru_config = _option(config, "gru", dict, where)
    return GRU._from_portable(gru_config, arrays, where)


def _repeat_last_valid(sequence: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B, T, H) outputs with every masked step replaced by the last unmasked one before it, or 0."""
    steps = np.arange(mask.shape[1])[None, :]
    last_valid = np.maximum.accumulate(np.where(mask, steps, -1), axis=1)
    repeated = np.take_along_axis(sequence, np.maximum(last_valid, 0)[..., None], axis=1)
    return np.where((last_valid >= 0)[..., None], repeated, 0).astype(sequence.dtype)


MERGE_MODES = ("concat", "sum", "ave", "mul", None)


class _Recurrent(Layer):
    """A layer around a `fastgru.GRU` (``.gru``): its description nests the GRU's own (``GRU._portable``),
    so that only the GRU knows how a GRU is stored. Subclasses say their calling options (``_options``,
    the keyword arguments of their constructor)."""

    def __init__(self, name, gru: GRU):
        super().__init__(name)
        self.gru = gru

    @property
    def grus(self):
        return (self.gru,)

    @property
    def input_features(self):
        return self.gru.spec.input_size

    def _options(self) -> dict:
        raise NotImplementedError

    def config(self):
        gru_config = self.gru._portable_config()
        return {"gru": gru_config, **self._options()}

    def arrays(self):
        return self.gru._portable()[1]

    def quantized(self, weight_bits: int = 8):
        return type(self)(self.name, self.gru.quantize("int8", weight_bits=weight_bits), **self._options())


@_register
class KerasRecurrent(_Recurrent):
    """A `fastgru.GRU` (batch-first) called as Keras calls its GRU layer, Bidirectional(GRU), or a chain of
    them that feed each other (``keras_layers`` names them; they run as one multi-layer GRU).

    Keras' masking: a masked step keeps the state and repeats the previous output (zeros before the first
    unmasked step), except where Keras writes zeros (``zero_output_for_mask=True``, which Bidirectional
    sets with ``return_sequences``). ``go_backwards`` runs the reversed sequence and returns its outputs in
    that order. A Bidirectional layer merges its two outputs by ``merge_mode`` (None: a list of both).
    """

    class_name = "KerasGRU"

    def __init__(self, name, gru: GRU, *, keras_layers=None, return_sequences=False, return_state=False,
                 go_backwards=False, zero_output_for_mask=False, merge_mode="concat"):
        super().__init__(name, gru)
        if not gru.spec.batch_first:
            raise ConfigError(f"layer {self.name!r}: a Keras GRU layer needs a batch-first GRU")
        if merge_mode not in MERGE_MODES:
            raise ConfigError(f"layer {self.name!r}: merge_mode={merge_mode!r} (expected one of {MERGE_MODES})")
        self.keras_layers = list(keras_layers) if keras_layers else [self.name]
        self.return_sequences, self.return_state = bool(return_sequences), bool(return_state)
        self.go_backwards, self.zero_output_for_mask = bool(go_backwards), bool(zero_output_for_mask)
        self.merge_mode = merge_mode

    def _options(self):
        return {"keras_layers": self.keras_layers, "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards,
                "zero_output_for_mask": self.zero_output_for_mask, "merge_mode": self.merge_mode}

    def call(self, x, mask, initial_state=None, *, num_threads=None):
        spec = self.gru.spec
        if x.ndim != 3:
            raise ValueError(f"layer {self.name!r} (a GRU) expects (batch, time, features) input, got shape {x.shape}")
        # Keras passes the input's mask on, in input order even with go_backwards (RNN.compute_mask).
        out_mask = mask if self.return_sequences else None
        if mask is not None and mask.all():
            mask = None  # nothing masked: the same numbers without repeating outputs
        if self.go_backwards:  # Keras runs the reversed sequence and returns outputs in that order
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        h0 = None
        if initial_state is not None:
            states = [np.asarray(s, dtype=spec.dtype) for s in initial_state]
            if spec.num_layers != 1 or len(states) != spec.num_directions:
                raise ValueError(f"initial_state: expected {spec.num_directions} (batch, units) arrays for a "
                                 f"one-layer GRU, got {len(states)} for {spec.num_layers} layer(s)")
            h0 = np.stack(states)
        output, h_n = self.gru(np.ascontiguousarray(x), h0, mask=None if mask is None else np.ascontiguousarray(mask.T),
                               num_threads=num_threads)
        hidden = spec.hidden_size
        halves = [output[..., :hidden]] + ([output[..., hidden:]] if spec.bidirectional else [])
        if mask is not None and not self.zero_output_for_mask:
            # Keras repeats the last unmasked output (zeros before the first one) where the core wrote 0.
            halves[0] = _repeat_last_valid(halves[0], mask)
            if spec.bidirectional:
                halves[1] = _repeat_last_valid(halves[1][:, ::-1], mask[:, ::-1])[:, ::-1]
        if self.return_sequences:
            outputs = halves
        else:  # the last output in each direction's own processing order
            outputs = [halves[0][:, -1]] + ([halves[1][:, 0]] if spec.bidirectional else [])
        merged = self._merge(outputs)
        if not self.return_state:
            return merged, out_mask
        states = list(h_n[-spec.num_directions:])
        return (merged if isinstance(merged, list) else [merged]) + states, None

    def _merge(self, outputs):
        if not self.gru.spec.bidirectional:
            return np.ascontiguousarray(outputs[0])
        if self.merge_mode == "concat":
            return np.concatenate(outputs, axis=-1)
        if self.merge_mode == "sum":
            return outputs[0] + outputs[1]
        if self.merge_mode == "ave":
            return (outputs[0] + outputs[1]) / 2
        if self.merge_mode == "mul":
            return outputs[0] * outputs[1]
        return [np.ascontiguousarray(o) for o in outputs]

    def stepper(self, in_shape, sequence, dtype, num_threads):
        if self.gru.spec.bidirectional:
            raise ValueError(f"layer {self.name!r} is a Bidirectional GRU: it cannot be streamed, its reverse "
                             f"direction needs the whole sequence")
        if self.go_backwards:
            raise ValueError(f"layer {self.name!r} has go_backwards=True: it cannot be streamed, it reads the "
                             f"sequence from its end")
        if not sequence:
            raise ValueError(f"layer {self.name!r} (a GRU) receives no sequence: the layer before it reduced over time")
        return _KerasGRUStepper(self, in_shape, num_threads)

    @classmethod
    def from_config(cls, name, config, arrays, where, dtype):
        options = {key: _option(config, key, bool, where, False)
                   for key in ("return_sequences", "return_state", "go_backwards", "zero_output_for_mask")}
        layers = _option(config, "keras_layers", list, where, [name])
        return cls(name, _gru_from_config(config, arrays, where), keras_layers=layers,
                   merge_mode=_option(config, "merge_mode", (str, type(None)), where, "concat"), **options)

    def describe(self):
        spec = self.gru.spec
        kind = "Bidirectional(GRU)" if spec.bidirectional else "GRU"
        stack = f" x{spec.num_layers} ({', '.join(self.keras_layers)})" if spec.num_layers > 1 else ""
        flags = [f"{key}=True" for key in ("return_sequences", "return_state", "go_backwards") if getattr(self, key)]
        if spec.bidirectional:
            flags.append(f"merge_mode={self.merge_mode!r}")
        variant = "" if spec.reset_after else ", reset_after=False"
        gate = "" if spec.gate_activation == "sigmoid" else f", recurrent_activation={spec.gate_activation!r}"
        int8 = ", int8" if self.gru.weight_format == "int8" else ""
        return (f"{kind}{stack}({spec.input_size} -> {spec.hidden_size}{variant}{gate}{int8}"
                f"{', ' if flags else ''}{', '.join(flags)})")


class _KerasGRUStepper(_Stepper):
    """GRUStream underneath. With a mask, a masked row keeps its state (restored after the step) and its
    output is the last unmasked one (or 0, with ``zero_output_for_mask``), as Keras computes it."""

    def __init__(self, layer, in_shape, num_threads):
        spec, batch = layer.gru.spec, in_shape[0]
        if in_shape[-1] != spec.input_size:
            raise ValueError(f"layer {layer.name!r} (a GRU) expects {spec.input_size} features, its input has "
                             f"{in_shape[-1]}")
        self.layer = layer
        self.sequence = layer.return_sequences
        self.out_shape = (batch, spec.hidden_size)
        self.stream = layer.gru.stream(batch, num_threads=num_threads)
        self.saved = np.zeros_like(self.stream._state)  # the stream's state: (L, B, H)
        self.last = np.zeros(self.out_shape, dtype=layer.gru.dtype)  # each row's last unmasked output
        self.zeroed = np.zeros(self.out_shape, dtype=layer.gru.dtype)
        self.valid = np.zeros(batch, dtype=bool)
        self.masked = np.zeros(batch, dtype=bool)
        self.valid_rows, self.masked_rows = self.valid[:, None], self.masked[None, :, None]
        self.last_view, self.zeroed_view = _readonly_view(self.last), _readonly_view(self.zeroed)

    def reset(self):
        self.stream.reset()
        self.last[...] = 0
        self.zeroed[...] = 0

    def state(self):
        # the GRU's state and each row's last unmasked output (what a masked step repeats); zeroed, saved
        # and the flags are rewritten by every step that reads them
        return [self.stream._state, self.last]

    def step(self, x, valid):
        if valid is None:
            h = self.stream.step(x)
            np.copyto(self.last, h)
            return self._result(h, None)
        if valid.all():  # the usual frame: a step as without a mask
            h = self.stream.step(x)
            np.copyto(self.last, h)
            return self._result(h, valid if self.layer.return_sequences else None)
        np.copyto(self.valid, valid)
        np.logical_not(self.valid, out=self.masked)
        if self.valid.any():
            some_masked = self.masked.any()
            if some_masked:
                np.copyto(self.saved, self.stream._state)
            h = self.stream.step(x)
            if some_masked:
                np.copyto(self.stream._state, self.saved, where=self.masked_rows)
            np.copyto(self.last, h, where=self.valid_rows)
            if self.layer.zero_output_for_mask:
                np.copyto(self.zeroed, 0)
                np.copyto(self.zeroed, h, where=self.valid_rows)
        else:
            self.zeroed[...] = 0
        output = self.zeroed_view if self.layer.zero_output_for_mask else self.last_view
        return self._result(output, self.valid if self.layer.return_sequences else None)

    def _result(self, output, valid):
        if self.layer.return_state:
            return [output, self.last_view], None
        return output, valid


@_register
class OnnxRecurrent(_Recurrent):
    """A `fastgru.GRU` (``.gru``) called like the ONNX GRU node(s) it came from.

    ``call_onnx(X, sequence_lens=None, initial_h=None)`` returns ``(Y, Y_h)`` with ONNX's shapes: ``Y`` is
    (T, D, B, H) (``layout=1``: (B, T, D, H)) and ``Y_h`` is (D, B, H) (``layout=1``: (B, D, H)). For a chain
    of nodes, ``Y`` is the last node's output and ``Y_h`` holds every node's final states, (L*D, B, H).
    ``direction="reverse"`` runs each sequence backwards from its last valid step, as ONNX does.
    """

    class_name = "OnnxGRU"

    def __init__(self, name, gru: GRU, reverse: bool = False):
        super().__init__(name, gru)
        self.reverse = bool(reverse)

    def _options(self):
        return {"reverse": self.reverse}

    def call_onnx(self, X, sequence_lens=None, initial_h=None, *, num_threads=None):
        spec = self.gru.spec
        x = _as_real_array(X, "X", self.gru.dtype)
        if x.ndim != 3:
            raise ValueError(f"X must be 3-D, got shape {x.shape}")
        h0 = None if initial_h is None else np.asarray(initial_h, dtype=spec.dtype)
        if h0 is not None and spec.batch_first:  # layout=1: initial_h is (B, D, H)
            h0 = h0.transpose(1, 0, 2)
        lengths = None if sequence_lens is None else np.asarray(sequence_lens)
        if self.reverse:
            batch, steps = (x.shape[0], x.shape[1]) if spec.batch_first else (x.shape[1], x.shape[0])
            lengths = self.gru._check_lengths(lengths, batch, steps)  # checked before they index anything
            x = _reverse_valid(x, lengths, spec.batch_first)
        output, h_n = self.gru(np.ascontiguousarray(x), h0, lengths, num_threads=num_threads)
        if self.reverse:
            output = _reverse_valid(output, lengths, spec.batch_first)
        directions, hidden = spec.num_directions, spec.hidden_size
        if spec.batch_first:
            y = output.reshape(output.shape[0], output.shape[1], directions, hidden)
            return y, np.ascontiguousarray(h_n.transpose(1, 0, 2))
        y = output.reshape(output.shape[0], output.shape[1], directions, hidden).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(y), h_n

    def stepper(self, in_shape, sequence, dtype, num_threads):
        if self.gru.spec.bidirectional or self.reverse:
            direction = "in reverse" if self.reverse else "in both directions"
            raise ValueError(f"GRU node {self.name!r} runs {direction}: it cannot be streamed, it needs the whole "
                             f"sequence")
        return _OnnxGRUStepper(self, in_shape[0], num_threads)

    @classmethod
    def from_config(cls, name, config, arrays, where, dtype):
        return cls(name, _gru_from_config(config, arrays, where), _option(config, "reverse", bool, where, False))

    def describe(self):
        spec = self.gru.spec
        direction = "bidirectional" if spec.bidirectional else ("reverse" if self.reverse else "forward")
        layers = f", {spec.num_layers} nodes" if spec.num_layers > 1 else ""
        return (f"GRU(hidden_size={spec.hidden_size}, input {spec.input_size}, direction={direction!r}, "
                f"linear_before_reset={int(spec.reset_after)}, layout={int(spec.batch_first)}{layers}"
                f"{', int8' if self.gru.weight_format == 'int8' else ''})")


def _reverse_valid(sequence, lengths, batch_first):
    """Each sequence's first ``length`` steps in reverse order (padding stays in place); an involution."""
    if not batch_first:
        sequence = sequence.transpose(1, 0, 2)
    steps = sequence.shape[1]
    if lengths is None:
        flipped = sequence[:, ::-1]
    else:
        index = np.arange(steps)[None, :]
        source = np.where(index < lengths[:, None], lengths[:, None] - 1 - index, index)
        flipped = np.take_along_axis(sequence, source[..., None], axis=1)
    return flipped if batch_first else flipped.transpose(1, 0, 2)


class _OnnxGRUStepper(_Stepper):
    """One step of a forward GRU node: Y_t is (1, B, H), or (B, 1, H) with layout=1."""

    def __init__(self, layer, batch, num_threads):
        spec = layer.gru.spec
        self.stream = layer.gru.stream(batch, num_threads=num_threads)
        self.shape = (batch, 1, spec.hidden_size) if spec.batch_first else (1, batch, spec.hidden_size)
        self.out_shape, self.sequence = self.shape, True

    def reset(self):
        self.stream.reset()

    def state(self):
        return [self.stream._state]

    def step(self, x, valid):
        return self.stream.step(x).reshape(self.shape), None


# ------------------------------------------------------------------------------------------ descriptions


def build_layer(description: dict, arrays: dict, where: str, dtype) -> Layer:
    """A layer from its portable description ``{"class", "name", "config"}`` and its arrays."""
    if not isinstance(description, dict):
        raise ConfigError(f"{where}: a layer description must be a JSON object, got {description!r}")
    class_name, name = description.get("class"), description.get("name")
    if class_name not in LAYER_CLASSES:
        raise ConfigError(f"{where}: unknown layer class {class_name!r} (fastgru knows {sorted(LAYER_CLASSES)})")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: layer of class {class_name} has no name")
    config = description.get("config", {})
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: layer {name!r}: config must be a JSON object")
    layer = LAYER_CLASSES[class_name].from_config(name, config, arrays, f"{where}: layer {name!r}", dtype)
    # Whatever this fastgru does not know is refused, not skipped: it may change what the layer computes
    # (a file from a newer fastgru, or damaged). A layer's own description names all it reads; a GRU
    # refuses tensors it does not read itself (check_weights, check_int8_weights), without the cost of
    # unpacking its weights again here.
    unknown = {"key(s)": sorted(set(description) - {"class", "name", "config"}),
               "option(s)": sorted(set(config) - set(layer.config())),
               "tensor(s)": [] if layer.grus else sorted(set(arrays) - set(layer.arrays()))}
    unknown = [f"{what} {names}" for what, names in unknown.items() if names]
    if unknown:
        raise ConfigError(f"{where}: layer {name!r} ({class_name}) has {' and '.join(unknown)} that this fastgru "
                          f"does not know (a file from a newer fastgru, or damaged)")
    return layer


def describe_layer(layer: Layer) -> tuple[dict, dict]:
    """The inverse of `build_layer`."""
    return {"class": layer.class_name, "name": layer.name, "config": layer.config()}, layer.arrays()
