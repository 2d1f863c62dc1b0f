"""The canonical description of a GRU that every importer maps to, and the weight names that go with it.

Weights are always in PyTorch's layout and gate order (r, z, n), whatever the source:

=========================  ==============  ==========================================
name                       shape           meaning
=========================  ==============  ==========================================
``weight_ih_l{k}{sfx}``    (3H, I_k)       input weights of layer k, rows r, z, n
``weight_hh_l{k}{sfx}``    (3H, H)         recurrent weights of layer k
``bias_ih_l{k}{sfx}``      (3H,)           input bias (absent when ``bias=False``)
``bias_hh_l{k}{sfx}``      (3H,)           recurrent bias (absent when ``bias=False``)
=========================  ==============  ==========================================

``sfx`` is ``""`` for direction 0 and ``"_reverse"`` for direction 1; ``I_0 = input_size`` and
``I_k = D * hidden_size`` for k > 0. An int8 model's arrays (`fastgru.GRU.int8_weights`,
`int8_weight_shapes`) hold int8 codes under the weights' names and their float32 row scales (3H,) under
``<name>.scale``.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

GATE_ACTIVATIONS = {
    # name: (alpha, beta) of clip(alpha * a + beta, 0, 1), or None for the logistic sigmoid.
    "sigmoid": None,
    "hard_sigmoid": (1.0 / 6.0, 0.5),  # Keras 3
    "hard_sigmoid_keras2": (0.2, 0.5),  # tf.keras 2 / Keras 2, and ONNX HardSigmoid's default
}


@dataclasses.dataclass(frozen=True)
class GRUSpec:
    """Everything about a GRU except its weights.

    ``reset_after=True`` is linear-before-reset (PyTorch, Keras default, ONNX ``linear_before_reset=1``);
    ``False`` is reset-before (Cho et al., Keras ``reset_after=False``, ONNX default). ``clip`` clamps
    every gate pre-activation to ``[-clip, clip]`` (ONNX's ``clip``); ``None`` disables it.
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    reset_after: bool = True
    gate_activation: str = "sigmoid"
    clip: float | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.gate_activation not in GATE_ACTIVATIONS:
            raise ValueError(
                f"gate_activation must be one of {sorted(GATE_ACTIVATIONS)}, got {self.gate_activation!r}"
            )
        if self.clip is not None and not (float(self.clip) > 0 and np.isfinite(self.clip)):
            raise ValueError(f"clip must be a positive finite number or None, got {self.clip!r}")
        dtype = np.dtype(self.dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        object.__setattr__(self, "dtype", dtype.name)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.num_directions * self.hidden_size

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """The expected name -> shape of every weight, in a stable order."""
        hidden3 = 3 * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer, suffix in self.layer_keys():
            shapes[f"weight_ih_l{layer}{suffix}"] = (hidden3, self.layer_input_size(layer))
            shapes[f"weight_hh_l{layer}{suffix}"] = (hidden3, self.hidden_size)
            if self.bias:
                shapes[f"bias_ih_l{layer}{suffix}"] = (hidden3,)
                shapes[f"bias_hh_l{layer}{suffix}"] = (hidden3,)
        return shapes

    def layer_keys(self) -> Iterator[tuple[int, str]]:
        """(layer, suffix) for every layer and direction, in the order the core stores them."""
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                yield layer, ("_reverse" if direction else "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GRUSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown GRUSpec fields: {sorted(unknown)}")
        return cls(**data)


def _named_arrays(expected: dict[str, tuple[int, ...]], weights: dict, source: str, model: str):
    """Yields (name, array) for each expected name, in its order, once every name is present and none is
    extra, each after its shape is checked (so the caller's own checks of a tensor run before the next
    tensor's shape is looked at); ValueError naming ``source`` and the tensor otherwise (``model`` says
    what the names were expected for)."""
    missing = [name for name in expected if name not in weights]
    if missing:
        raise ValueError(f"{source}: missing tensor(s) {missing}; expected {list(expected)}")
    extra = [name for name in weights if name not in expected]
    if extra:
        raise ValueError(f"{source}: unexpected tensor(s) {extra} for {model}")
    for name, shape in expected.items():
        array = np.asarray(weights[name])
        if array.shape != shape:
            raise ValueError(f"{source}: tensor {name!r} has shape {array.shape}, expected {shape}")
        yield name, array


def check_weights(spec: GRUSpec, weights: dict, source: str = "weights") -> dict[str, np.ndarray]:
    """Validates names and shapes and returns C-contiguous copies in the spec's dtype.

    Errors name ``source`` (a file or object) and the offending tensor.
    """
    checked = {}
    for name, array in _named_arrays(spec.weight_shapes(), weights, source, str(spec)):
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise TypeError(f"{source}: tensor {name!r} has dtype {array.dtype}, expected a float array")
        checked[name] = np.array(array, dtype=spec.dtype, order="C", copy=True)
    return checked


# An int8 weight's row scales are stored beside its codes under this suffix: weight_ih_l0.scale.
SCALE_SUFFIX = ".scale"


def int8_weight_shapes(spec: GRUSpec) -> dict[str, tuple[int, ...]]:
    """The name -> shape of every array of an int8 model (`fastgru.GRU.int8_weights`): each weight's
    int8 codes under its own name, its float32 row scales (3H,) under ``name + ".scale"``, the biases."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in spec.weight_shapes().items():
        shapes[name] = shape
        if name.startswith("weight"):
            shapes[name + SCALE_SUFFIX] = (shape[0],)
    return shapes


def check_weight_bits(weight_bits) -> int:
    """`quantize`'s ``weight_bits``: 8 (codes -127..127) or 7 (-63..63); anything else is a ValueError."""
    if isinstance(weight_bits, (bool, np.bool_)) or not isinstance(weight_bits, (int, np.integer)) \
            or int(weight_bits) not in (7, 8):
        raise ValueError(f"weight_bits must be 8 or 7, got {weight_bits!r}")
    return int(weight_bits)


def check_int8_weights(spec: GRUSpec, weights: dict, source: str = "int8 weights") -> dict[str, np.ndarray]:
    """Validates the arrays of an int8 model (names, shapes, dtypes, codes in -127..127, scales finite and
    >= 0) and returns them C-contiguous: codes int8, scales and biases float32, converted only where that
    is exact (integer codes of another dtype, float32 values stored wider). Errors name ``source`` and the
    tensor."""
    checked = {}
    for name, array in _named_arrays(int8_weight_shapes(spec), weights, source, f"an int8 {spec}"):
        codes = name.startswith("weight") and not name.endswith(SCALE_SUFFIX)
        if codes:
            if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
                raise TypeError(f"{source}: tensor {name!r} holds int8 codes, got dtype {array.dtype}")
            if array.size and (array.min() < -127 or array.max() > 127):
                raise ValueError(f"{source}: tensor {name!r} holds codes outside -127..127 "
                                 f"(min {array.min()}, max {array.max()})")
            checked[name] = np.array(array, dtype=np.int8, order="C", copy=True)
            continue
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"{source}: tensor {name!r} has dtype {array.dtype}, expected float32")
        value = np.array(array, dtype=np.float32, order="C", copy=True)
        if not np.array_equal(value.astype(array.dtype), array, equal_nan=True):
            raise ValueError(f"{source}: tensor {name!r} holds values that float32 cannot represent exactly")
        if name.endswith(SCALE_SUFFIX) and not (np.all(np.isfinite(value)) and np.all(value >= 0)):
            raise ValueError(f"{source}: tensor {name!r} holds scales that are negative or not finite")
        checked[name] = value
    return checked
