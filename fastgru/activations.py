"""The activation functions of Keras' Dense and Activation layers, in numpy, as Keras 3 (torch backend)
computes them, plus Keras 2's hard sigmoid.

Each function is ``f(x, out, tmp, red)``: it writes ``f(x)`` into ``out`` (which may be ``x`` itself) using
the scratch arrays ``tmp`` (the shape of ``x``) and ``red`` (``x``'s shape with a last axis of 1), so that
a stream can preallocate everything once and a step allocates nothing. For the same reason no operation
broadcasts one operand against another (numpy allocates an iterator buffer for that, about 9 KB a call):
a reduction over the last axis is spread back into ``tmp`` with ``copyto`` first, and clipping is a
maximum and a minimum (``np.clip`` allocates too). ``glu`` halves the last axis:
``out`` then has half of ``x``'s last axis. Reductions (softmax, log_softmax, sparsemax, glu) act on the
last axis, Keras' default. ``sparsemax`` allocates its own temporaries (it sorts).

Formulas: ``torch.nn.functional``'s where Keras 3's torch backend calls it (``keras/src/backend/torch/nn.py``).
``gelu`` and ``sigmoid`` use scipy's ``erf`` and ``expit`` (one pass each, no overflow), imported on first use.
"""

from __future__ import annotations

import math

import numpy as np

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _clip(x, low, high, out):
    np.maximum(x, low, out=out)
    np.minimum(out, high, out=out)


def _linear(x, out, tmp, red):
    if out is not x:
        np.copyto(out, x)


def _relu(x, out, tmp, red):
    np.maximum(x, 0, out=out)


def _relu6(x, out, tmp, red):
    _clip(x, 0, 6, out)


def _leaky_relu(x, out, tmp, red):  # Keras' default negative_slope = 0.2 < 1: max(x, 0.2 x)
    np.multiply(x, 0.2, out=tmp)
    np.maximum(x, tmp, out=out)


def _sigmoid(x, out, tmp, red):  # scipy's expit: one pass, no overflow, 1 / (1 + e^-x) to rounding
    from scipy.special import expit

    expit(x, out=out)


def _tanh(x, out, tmp, red):
    np.tanh(x, out=out)


def _minus_max(x, out, tmp, red):
    """``out = x - max(x)`` over the last axis: the shift that keeps softmax's exp from overflowing."""
    np.maximum.reduce(x, axis=-1, keepdims=True, out=red)
    np.copyto(tmp, red)
    np.subtract(x, tmp, out=out)


def _spread_sum(values, tmp, red):
    """``tmp`` = the sum of ``values`` over the last axis, repeated along it."""
    np.add.reduce(values, axis=-1, keepdims=True, out=red)
    np.copyto(tmp, red)


def _softmax(x, out, tmp, red):
    _minus_max(x, out, tmp, red)
    np.exp(out, out=out)
    _spread_sum(out, tmp, red)
    np.divide(out, tmp, out=out)


def _log_softmax(x, out, tmp, red):
    _minus_max(x, out, tmp, red)
    np.exp(out, out=tmp)
    _spread_sum(tmp, tmp, red)
    np.log(tmp, out=tmp)
    np.subtract(out, tmp, out=out)


def _softplus(x, out, tmp, red):  # log(1 + e^x) without overflow
    np.logaddexp(0, x, out=out)


def _log_sigmoid(x, out, tmp, red):  # -softplus(-x)
    np.negative(x, out=out)
    np.logaddexp(0, out, out=out)
    np.negative(out, out=out)


def _softsign(x, out, tmp, red):
    np.abs(x, out=tmp)
    np.add(tmp, 1, out=tmp)
    np.divide(x, tmp, out=out)


def _elu_into(x, out, tmp, alpha):
    """alpha (e^x - 1) for x <= 0, x for x > 0: both parts summed, each 0 where the other applies."""
    np.minimum(x, 0, out=tmp)
    np.expm1(tmp, out=tmp)
    if alpha != 1.0:
        np.multiply(tmp, alpha, out=tmp)
    np.maximum(x, 0, out=out)
    np.add(out, tmp, out=out)


def _elu(x, out, tmp, red):
    _elu_into(x, out, tmp, 1.0)


def _selu(x, out, tmp, red):
    _elu_into(x, out, tmp, _SELU_ALPHA)
    np.multiply(out, _SELU_SCALE, out=out)


def _exponential(x, out, tmp, red):
    np.exp(x, out=out)


def _silu(x, out, tmp, red):
    _sigmoid(x, tmp, None, None)
    np.multiply(x, tmp, out=out)


def _mish(x, out, tmp, red):  # x tanh(softplus(x))
    np.logaddexp(0, x, out=tmp)
    np.tanh(tmp, out=tmp)
    np.multiply(x, tmp, out=out)


def _gelu(x, out, tmp, red):  # exact: x (1 + erf(x / sqrt 2)) / 2 (Keras' default approximate=False)
    from scipy.special import erf

    np.multiply(x, 1 / math.sqrt(2), out=tmp)
    erf(tmp, out=tmp)
    np.add(tmp, 1, out=tmp)
    np.multiply(tmp, 0.5, out=tmp)
    np.multiply(x, tmp, out=out)


def _hard_sigmoid(x, out, tmp, red):  # Keras 3 (= torch.nn.functional.hardsigmoid): relu6(x + 3) / 6
    np.add(x, 3, out=out)
    _clip(out, 0, 6, out)
    np.divide(out, 6, out=out)


def _hard_sigmoid_keras2(x, out, tmp, red):  # Keras 2, tf.keras 2: clip(0.2 x + 0.5, 0, 1)
    np.multiply(x, 0.2, out=out)
    np.add(out, 0.5, out=out)
    _clip(out, 0, 1, out)


def _hard_silu(x, out, tmp, red):  # x relu6(x + 3) / 6
    _hard_sigmoid(x, tmp, None, None)
    np.multiply(x, tmp, out=out)


def _hard_tanh(x, out, tmp, red):
    _clip(x, -1, 1, out)


def _hard_shrink(x, out, tmp, red):  # x where |x| > 0.5, else 0
    np.abs(x, out=tmp)
    np.subtract(tmp, 0.5, out=tmp)
    np.heaviside(tmp, 0.0, out=tmp)
    np.multiply(x, tmp, out=out)


def _soft_shrink(x, out, tmp, red):  # sign(x) max(|x| - 0.5, 0)
    np.abs(x, out=tmp)
    np.subtract(tmp, 0.5, out=tmp)
    np.maximum(tmp, 0, out=tmp)
    np.sign(x, out=out)
    np.multiply(out, tmp, out=out)


def _tanh_shrink(x, out, tmp, red):
    np.tanh(x, out=tmp)
    np.subtract(x, tmp, out=out)


def _sparse_plus(x, out, tmp, red):  # 0 for x <= -1, (x + 1)^2 / 4 in between, x for x >= 1
    _clip(x, -1, 1, tmp)
    np.add(tmp, 1, out=tmp)
    np.square(tmp, out=tmp)
    np.multiply(tmp, 0.25, out=tmp)
    np.subtract(x, 1, out=out)
    np.maximum(out, 0, out=out)
    np.add(out, tmp, out=out)


def _sparse_sigmoid(x, out, tmp, red):  # clip((x + 1) / 2, 0, 1)
    np.add(x, 1, out=out)
    np.multiply(out, 0.5, out=out)
    _clip(out, 0, 1, out)


def _squareplus(x, out, tmp, red):  # (x + sqrt(x^2 + b)) / 2, Keras' default b = 4
    np.square(x, out=tmp)
    np.add(tmp, 4, out=tmp)
    np.sqrt(tmp, out=tmp)
    np.add(x, tmp, out=out)
    np.multiply(out, 0.5, out=out)


def _celu(x, out, tmp, red):  # alpha = 1: the same function as elu
    _elu_into(x, out, tmp, 1.0)


def _glu(x, out, tmp, red):  # a * sigmoid(b), (a, b) the halves of the last axis
    half = x.shape[-1] // 2
    gate = tmp[..., :half]
    _sigmoid(x[..., half:], gate, None, None)
    np.multiply(x[..., :half], gate, out=out)


def _sparsemax(x, out, tmp, red):  # Martins & Astudillo 2016, as keras/src/backend/torch/nn.py computes it
    ordered = -np.sort(-x, axis=-1)
    cumulative = np.cumsum(ordered, axis=-1)
    ranks = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = ordered - (cumulative - 1) / ranks > 0
    count = np.sum(support, axis=-1, keepdims=True)
    tau = (np.sum(np.where(support, cumulative, 0), axis=-1, keepdims=True) - 1) / count
    np.subtract(x, tau.astype(x.dtype), out=out)
    np.maximum(out, 0, out=out)


ACTIVATIONS = {
    "linear": _linear, "relu": _relu, "relu6": _relu6, "leaky_relu": _leaky_relu, "sigmoid": _sigmoid,
    "tanh": _tanh, "softmax": _softmax, "log_softmax": _log_softmax, "softplus": _softplus,
    "log_sigmoid": _log_sigmoid, "softsign": _softsign, "elu": _elu, "selu": _selu, "celu": _celu,
    "exponential": _exponential, "silu": _silu, "mish": _mish, "gelu": _gelu, "hard_sigmoid": _hard_sigmoid,
    "hard_sigmoid_keras2": _hard_sigmoid_keras2, "hard_silu": _hard_silu, "hard_tanh": _hard_tanh,
    "hard_shrink": _hard_shrink, "soft_shrink": _soft_shrink, "tanh_shrink": _tanh_shrink,
    "sparse_plus": _sparse_plus, "sparse_sigmoid": _sparse_sigmoid, "squareplus": _squareplus, "glu": _glu,
    "sparsemax": _sparsemax,
}
# The functions whose numpy operations overflow (and warn) on finite inputs; Keras returns inf silently.
MAY_OVERFLOW = frozenset({"exponential", "squareplus"})
# Keras' other spellings of the same functions.
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}


def check_activation(name: str) -> str:
    """``name`` in fastgru's spelling (aliases resolved); ValueError for an unknown one."""
    name = ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; fastgru implements {sorted(ACTIVATIONS)}")
    return name


def output_width(name: str, width: int) -> int:
    """The size of the last axis after the activation (glu halves it)."""
    if name == "glu":
        if width % 2:
            raise ValueError(f"glu halves the last axis, which must be even, got {width}")
        return width // 2
    return width


def apply(name: str, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``name(x)``, into ``out`` (default: a new array; ``out=x`` works in place), allocating its own scratch."""
    if out is None:
        out = np.empty(x.shape[:-1] + (output_width(name, x.shape[-1]),), dtype=x.dtype)
    tmp = np.empty_like(x)
    red = np.empty(x.shape[:-1] + (1,), dtype=x.dtype)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # inf and nan propagate as Keras'
        ACTIVATIONS[name](x, out, tmp, red)
    return out
