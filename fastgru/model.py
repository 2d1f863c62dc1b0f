"""fastgru.GRU: a GRU whose weights are packed once and whose forward, backward and streaming steps run
in the C core.

Shapes and semantics follow ``torch.nn.GRU`` (T = time steps, B = batch, L = layers, D = 2 if
bidirectional else 1, H = hidden size, I = input size):

=========  =========================================  =========================================
argument   shape                                      notes
=========  =========================================  =========================================
x          (T, B, I), or (B, T, I) if batch_first
h0         (L*D, B, H)                                optional: when omitted, the model's learned
                                                      ``initial_state`` (L*D, H) broadcast over the
                                                      batch, or zeros when it has none
lengths    (B,) integers in 1..T, any order           outputs past a length are 0; h_n is the
                                                      state at the sequence's last valid step
mask       (T, B) booleans, time-major always         Keras-style: a False step carries the
                                                      state unchanged and outputs 0
output     (T, B, D*H), or (B, T, D*H)                direction 1 in columns H..2H
h_n        (L*D, B, H)
=========  =========================================  =========================================

Conversion rule: ``x`` and ``h0`` may be any real-valued array-like (float16/32/64, integers,
non-contiguous, Fortran-ordered, negatively strided, read-only); they are converted to the model's dtype
in C order, copying only when needed. Inputs are never modified. ``T = 0`` returns an empty output and
``h_n = h0`` (the initial state without h0); ``B = 0`` returns empty arrays.

Thread safety: a GRU is immutable after construction; any number of threads may call it at once.
Each thread gets its own scratch workspace and worker pool. A GRUStream holds state and must be used by
one thread at a time.
"""

from __future__ import annotations

import re
import zlib
from typing import Mapping

import numpy as np

from . import _core
from .backward import Tape, backward as _backward
from .runtime import _as_real_array, _c_array, _thread_pool, _thread_workspace
from .spec import GATE_ACTIVATIONS, SCALE_SUFFIX, GRUSpec, check_int8_weights, check_weight_bits, check_weights
from .threads import check_num_threads, default_num_threads, resolve_num_threads  # noqa: F401 (re-exported)

_INITIAL_STATE = "initial_state"  # the array of a learned h0 in the portable form (fastgru.io.native)
_PORTABLE_KEYS = {"class", "spec", "weight_format"}  # what GRU._portable writes in its config
_WEIGHT_NAME = re.compile(r"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")
_INT8_INFERENCE_ONLY = ("int8 models are inference-only: there is no backward pass through int8 weights; "
                        "train (and call backward on) the float32 model, then quantize() it")


def _named(spec: GRUSpec, entries: list, kinds: tuple) -> dict[str, np.ndarray]:
    """Per (layer, direction) tuples of arrays (None: absent) as a dict of the spec's weight names; a kind
    such as ``"weight_ih.scale"`` names ``weight_ih_l0.scale``."""
    named = {}
    for (layer, suffix), arrays in zip(spec.layer_keys(), entries):
        for kind, array in zip(kinds, arrays):
            if array is not None:
                base, dot, extra = kind.partition(".")
                named[f"{base}_l{layer}{suffix}{dot}{extra}"] = array
    return named


def _checked_initial_state(spec: GRUSpec, value, source: str) -> np.ndarray:
    """A learned initial state as a read-only (L*D, H) array of the spec's dtype (see GRU.with_initial_state)."""
    try:
        array = _as_real_array(value, "initial_state", np.dtype(spec.dtype))
    except TypeError as error:
        raise TypeError(f"{source}: {error}") from None
    rows, hidden = spec.num_layers * spec.num_directions, spec.hidden_size
    accepted = [(rows, hidden), (rows, 1, hidden)] + ([(hidden,)] if rows == 1 else [])
    if array.shape not in accepted:
        raise ValueError(f"{source}: initial_state must have shape (num_layers*num_directions, H) = {accepted[0]}, "
                         f"or {' or '.join(map(str, accepted[1:]))}, got {array.shape}")
    array = array.reshape(rows, hidden).copy()  # never a view of the caller's array
    array.flags.writeable = False
    return array


class GRU:
    """A multi-layer GRU on the CPU, with ``torch.nn.GRU``'s constructor, shapes and semantics.

    ``reset_after=True`` (default) is PyTorch's linear-before-reset cell; ``False`` is reset-before
    (Cho et al. 2014, Keras ``reset_after=False``, ONNX's default). Weights start uniform in
    ``[-1/sqrt(H), 1/sqrt(H)]`` like PyTorch's; load real ones with :meth:`from_arrays`,
    :meth:`from_torch`, :meth:`from_keras`, :meth:`from_onnx` or :func:`fastgru.load`. Models with
    another framework's conventions or layers around the GRU are :class:`fastgru.Model`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 batch_first: bool = False, bias: bool = True, reset_after: bool = True, dtype=np.float32, *,
                 gate_activation: str = "sigmoid", clip: float | None = None, seed: int | None = None,
                 num_threads: int | None = None):
        spec = GRUSpec(input_size, hidden_size, num_layers, bool(bidirectional), bool(batch_first), bool(bias),
                       bool(reset_after), gate_activation, clip, np.dtype(dtype).name)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(hidden_size)
        weights = {name: rng.uniform(-bound, bound, shape) for name, shape in spec.weight_shapes().items()}
        self._build(spec, check_weights(spec, weights), num_threads)

    # ------------------------------------------------------------ construction

    def _build(self, spec: GRUSpec, weights: dict[str, np.ndarray], num_threads) -> None:
        # The core packs its own copy and the arrays are dropped: the model holds its weights once, as the
        # core's panels, and `weights` unpacks them on demand.
        per_direction = []
        for layer, suffix in spec.layer_keys():
            per_direction.append(tuple(weights.get(f"{kind}_l{layer}{suffix}")
                                       for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
        clip = 0.0 if spec.clip is None else float(spec.clip)
        self._adopt(spec, _core.Model(spec.input_size, spec.hidden_size, spec.num_layers, spec.num_directions,
                                      spec.dtype, spec.reset_after, GATE_ACTIVATIONS[spec.gate_activation], clip,
                                      per_direction), num_threads)

    def _adopt(self, spec: GRUSpec, model, num_threads) -> None:
        self.spec = spec
        self._dtype = np.dtype(spec.dtype)
        self._initial_state = None
        self.num_threads = num_threads
        self._model = model

    @classmethod
    def from_spec(cls, spec: GRUSpec, weights: Mapping[str, np.ndarray], *, num_threads: int | None = None,
                  source: str = "weights", initial_state=None) -> "GRU":
        """A model from a spec and weights in PyTorch's names and layout (see fastgru.spec), with an
        optional learned ``initial_state`` (see :meth:`with_initial_state`)."""
        gru = cls.__new__(cls)
        gru._build(spec, check_weights(spec, dict(weights), source), num_threads)
        if initial_state is not None:
            gru._initial_state = _checked_initial_state(spec, initial_state, source)
        return gru

    @classmethod
    def _from_description(cls, found, *, num_threads: int | None = None) -> "GRU":
        """The GRU an importer described (`fastgru.io.common.GRUDescription`: spec, weights, source and an
        optional learned initial state)."""
        return cls.from_spec(found.spec, found.weights, num_threads=num_threads, source=found.source,
                             initial_state=found.initial_state)

    @classmethod
    def from_arrays(cls, weights: Mapping[str, np.ndarray], *, batch_first: bool = False, reset_after: bool = True,
                    gate_activation: str = "sigmoid", clip: float | None = None, dtype=None, bias: bool | None = None,
                    update: str = "z_keeps_state", num_threads: int | None = None,
                    initial_state=None) -> "GRU":
        """A model from arrays named and shaped as ``torch.nn.GRU``'s state_dict (gate order r, z, n).

        Sizes, layers and directions are read from the names and shapes. ``dtype`` defaults to float64
        for float64 weights and float32 otherwise. ``update="z_takes_candidate"`` accepts weights of
        cells written as ``h' = (1 - z) * h + z * n`` (many textbooks); the default
        ``"z_keeps_state"`` is ``h' = z * h + (1 - z) * n`` (PyTorch, Keras, ONNX). ``initial_state``:
        a learned h0, see :meth:`with_initial_state`. Weights laid out as one Linear or Dense per gate
        over the concatenation of h and x (hand-written cells) load with :meth:`from_cells`.
        """
        weights = {name: np.asarray(value) for name, value in weights.items()}
        bad = [name for name in weights if not _WEIGHT_NAME.match(name)]
        if bad:
            raise ValueError(f"unrecognised weight name(s) {bad}; expected names like 'weight_ih_l0', "
                             "'weight_hh_l0_reverse', 'bias_ih_l1'")
        if "weight_hh_l0" not in weights or "weight_ih_l0" not in weights:
            raise ValueError("weights must contain 'weight_ih_l0' and 'weight_hh_l0'")
        layers = 1 + max(int(_WEIGHT_NAME.match(name).group(3)) for name in weights)
        w_hh, w_ih = weights["weight_hh_l0"], weights["weight_ih_l0"]
        if w_hh.ndim != 2 or w_hh.shape[0] != 3 * w_hh.shape[1]:
            raise ValueError(f"'weight_hh_l0' must have shape (3H, H), got {w_hh.shape}")
        if w_ih.ndim != 2:
            raise ValueError(f"'weight_ih_l0' must have shape (3H, I), got {w_ih.shape}")
        if dtype is None:
            dtype = np.float64 if w_hh.dtype == np.float64 else np.float32
        spec = GRUSpec(
            input_size=w_ih.shape[1], hidden_size=w_hh.shape[1], num_layers=layers,
            bidirectional=any(name.endswith("_reverse") for name in weights), batch_first=batch_first,
            bias=("bias_ih_l0" in weights) if bias is None else bias, reset_after=reset_after,
            gate_activation=gate_activation, clip=clip, dtype=np.dtype(dtype).name)
        if update == "z_takes_candidate":
            from .io.common import flip_update_gate
            weights = flip_update_gate(spec, weights)
        elif update != "z_keeps_state":
            raise ValueError(f"update must be 'z_keeps_state' or 'z_takes_candidate', got {update!r}")
        return cls.from_spec(spec, weights, num_threads=num_threads, initial_state=initial_state)

    @classmethod
    def from_cells(cls, cells, *, num_threads: int | None = None, **options) -> "GRU":
        """A model from a hand-written cell: one ``nn.Linear`` (weight (H, H+I)) or Keras ``Dense``
        (kernel (H+I, H)) per gate r, z, n over the concatenation of h and x, or a state dict plus the
        gates' names. The caller states the layout::

            GRU.from_cells({"r": cell.r, "z": cell.z, "n": cell.n}, concat="hx", reset_after=False,
                           update="z_takes_candidate")          # n = tanh(W_n [r*h, x] + b_n), h' = (1-z) h + z n

        Options and formulas: `fastgru.io.cells.read_cells`.
        """
        from .io.cells import read_cells
        return cls._from_description(read_cells(cells, **options), num_threads=num_threads)

    @classmethod
    def from_torch(cls, module_or_state_dict, prefix: str | None = None, **options) -> "GRU":
        """A model from a ``torch.nn.GRU``, a model containing one, a state dict, or a ``.pt`` / safetensors
        file of one (fastgru.io.torch); ``initial_state="h0"`` picks up a learned initial state stored under
        that name."""
        from .io.torch import read_torch
        return cls._from_description(read_torch(module_or_state_dict, prefix=prefix, **options))

    @classmethod
    def from_keras(cls, layer_or_model, *, layer: str | None = None, **options) -> "GRU":
        """The GRU alone of a Keras GRU or Bidirectional(GRU) layer, or of a model or file holding one (or a
        chain of GRU layers that feed each other, as one multi-layer GRU); ``layer=`` picks one by name
        when there are several. The result is batch-first with PyTorch's semantics: the whole output
        sequence and ``h_n``, Bidirectional outputs concatenated. What else the Keras layer does when called
        (masks, ``return_sequences``, merge modes) and the layers around it are :class:`fastgru.Model`'s:
        ``fastgru.Model.from_keras``. A layer with ``go_backwards=True`` is refused (a GRU reads the sequence
        forwards). Options as for ``Model.from_keras`` (fastgru.io.keras)."""
        from .io.keras import read_keras_gru
        return cls._from_description(read_keras_gru(layer_or_model, layer=layer, **options))

    @classmethod
    def from_onnx(cls, model_or_path, node_name=None, **options) -> "GRU":
        """The GRU of an ONNX GRU node (or of a list of chained nodes) with PyTorch's semantics: the output
        (T, B, D*H) (batch-first for ``layout=1``) and ``h_n``, not ONNX's (T, D, B, H). ``fastgru.Model.from_onnx``
        keeps ONNX's shapes and ``direction="reverse"``, which a GRU cannot express (refused here)."""
        from .io.onnx import read_onnx_gru
        return cls._from_description(read_onnx_gru(model_or_path, node_name=node_name, **options))

    def quantize(self, weight_format: str = "int8", *, weight_bits: int = 8) -> "GRU":
        """A new GRU holding this model's weights as int8, for batch-1 and streaming latency.

        ``W_ih`` and ``W_hh`` become int8 with one float32 scale per output row (symmetric,
        ``scale = max|row| / 127``, round half to even); biases and the gate math stay float32.
        ``weight_bits=7`` makes codes in -63..63 instead (``scale = max|row| / 63``): twice the weights'
        rounding error (still well under PyTorch's dynamic int8 on the models of docs/int8.md), and
        faster products on CPUs without AVX-512 VNNI (AVX2 servers such as Zen 3, AVX-512 without VNNI),
        where 8-bit codes need a sign operation per product: whole calls 1.15-1.35x faster on a Zen 3
        (:attr:`int8_narrow`). On VNNI CPUs both run at the same speed. The outputs are the same bits on
        every CPU either way. At run time
        the state is coded as ``round(127 h / m)``, ``m = max(1, max|h0|)`` per row (``round(127 h)`` for the
        usual ``|h0| <= 1``), and each row of the layer input with its own scale ``max|x| / 127``; products
        are exact int32 sums. Inputs and outputs stay float32, and forward,
        lengths, mask and :meth:`stream` work as for the float model; :meth:`backward` does not
        (inference only). Outputs differ from float32 by the quantization error (docs/int8.md: about
        1e-2 on trained models, half that of PyTorch's dynamic int8 GRU). This model is unchanged.
        """
        if weight_format != "int8":
            raise ValueError(f"weight_format must be 'int8', got {weight_format!r}")
        weight_bits = check_weight_bits(weight_bits)
        if self.weight_format == "int8":
            raise ValueError("this model's weights are already int8: quantize() takes a float32 model (the int8 "
                             "codes are kept exactly; int8_weights returns them)")
        if self.dtype != np.float32:
            raise TypeError(f"int8 weights need a float32 model, this one is {self.dtype}: build it with "
                            "dtype=np.float32 (e.g. GRU.from_spec(dataclasses.replace(gru.spec, dtype='float32'), "
                            "gru.weights)) and quantize that")
        try:
            model = self._model.quantize(weight_bits)
        except ValueError:  # a weight is not finite: name it (the error path alone unpacks the weights)
            for name, value in self.weights.items():
                if name.startswith("weight") and not np.all(np.isfinite(value)):
                    raise ValueError(f"{name} holds non-finite values: int8 scales need finite weights") from None
            raise
        gru = GRU.__new__(GRU)
        gru._adopt(self.spec, model, self._num_threads)
        gru._initial_state = self._initial_state
        return gru

    @classmethod
    def from_int8_weights(cls, spec: GRUSpec, weights: Mapping[str, np.ndarray], *, num_threads: int | None = None,
                          source: str = "int8 weights", initial_state=None) -> "GRU":
        """An int8 model from its codes and scales, as :attr:`int8_weights` returns them (and fastgru's
        file stores them): exact, not quantized again, so the model computes bit for bit what the one
        they came from did. ``spec.dtype`` must be float32 (the activations' dtype). Errors name
        ``source`` and the tensor (docs/int8.md, "Stored int8 models")."""
        if spec.dtype != "float32":
            raise TypeError(f"{source}: an int8 model runs float32 activations; its spec must say dtype='float32', "
                            f"got {spec.dtype!r}")
        checked = check_int8_weights(spec, dict(weights), source)
        per_direction = []
        for layer, suffix in spec.layer_keys():
            ih, hh = f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"
            per_direction.append((checked[ih], checked[ih + SCALE_SUFFIX], checked[hh], checked[hh + SCALE_SUFFIX],
                                  checked.get(f"bias_ih_l{layer}{suffix}"), checked.get(f"bias_hh_l{layer}{suffix}")))
        clip = 0.0 if spec.clip is None else float(spec.clip)
        gru = cls.__new__(cls)
        gru._adopt(spec, _core.Model.from_int8(spec.input_size, spec.hidden_size, spec.num_layers,
                                               spec.num_directions, spec.reset_after,
                                               GATE_ACTIVATIONS[spec.gate_activation], clip, per_direction),
                   num_threads)
        if initial_state is not None:
            gru._initial_state = _checked_initial_state(spec, initial_state, source)
        return gru

    @property
    def initial_state(self) -> np.ndarray | None:
        """The learned initial state, shape (num_layers*num_directions, H), read-only; used for every
        batch row when a call or a stream gets no h0. None: the initial state is zeros."""
        return self._initial_state

    def with_initial_state(self, initial_state, *, source: str = "GRU.with_initial_state") -> "GRU":
        """This model with a learned initial state (or none, for ``None``); the weights are shared, not
        packed again, and this model is unchanged.

        ``initial_state`` is (L*D, H), row ``layer * D + direction`` as in ``h0``; (L*D, 1, H), the shape
        in which PyTorch models usually keep a learned h0 (``nn.Parameter(torch.zeros(L*D, 1, H))``),
        and (H,) for a one-layer unidirectional model are accepted too. Without an explicit ``h0``,
        :meth:`forward` and :meth:`stream` then start every batch row from it: the result is the
        same, bit for bit, as passing ``np.broadcast_to(initial_state[:, None], (L*D, B, H))`` as h0.
        Errors name ``source``.
        """
        gru = object.__new__(type(self))
        gru.__dict__.update(self.__dict__)  # copy.copy would go through __reduce__, i.e. a full reload
        gru._initial_state = None if initial_state is None else _checked_initial_state(self.spec, initial_state,
                                                                                       source)
        return gru

    @property
    def weight_format(self) -> str:
        """How the core stores W_ih and W_hh: the model's dtype (``"float32"``, ``"float64"``) or ``"int8"``
        (:meth:`quantize`). Activations are always ``dtype``."""
        return "int8" if self._model.weight_format == "int8" else self.spec.dtype

    @property
    def int8_narrow(self) -> bool:
        """True for an int8 model whose weight codes all lie within -64..64: those of
        ``quantize("int8", weight_bits=7)``, or 8-bit codes that all happen to be small, loaded or made
        by any route. CPUs without AVX-512 VNNI run such a model on faster products (docs/int8.md), with
        the same output bits. False for float models."""
        return self._model.int8_narrow

    def save(self, path) -> None:
        """Writes fastgru's own file (spec as JSON + weights), loadable by fastgru.load with numpy alone."""
        from .io.native import save
        save(self, path)

    def __reduce__(self):
        # Pickle carries the bytes of fastgru's own file (fastgru.io.native.dumps): portable weights,
        # never the packed panels, whose layout depends on the CPU's kernel table; unpickling runs
        # fastgru's loader and nothing else.
        from .io.native import dumps, loads
        return loads, (dumps(self),)

    def __copy__(self) -> "GRU":
        # A model never changes its packed core (which holds its weights) or its read-only initial state,
        # so copies share them: a copy costs no memory and packs nothing, and no one can tell it from a
        # duplicate. Only the Python object is new, with its own num_threads.
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo) -> "GRU":
        # As __copy__, with any other attribute deep-copied; the C object (_core.Model, which cannot be
        # pickled or copied) is shared, never copied.
        import copy

        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            shared = name in ("_model", "_initial_state")  # immutable: the core (the weights), a read-only array
            clone.__dict__[name] = value if shared else copy.deepcopy(value, memo)
        return clone

    def _portable(self) -> tuple[dict, dict]:
        """What fastgru's file stores for this model (fastgru.io.native): a JSON config and the weights.
        An int8 model stores its codes and row scales exactly (:attr:`int8_weights`, docs/int8.md) and
        ``weight_format: "int8"``; loading builds the same model from them, never quantizing again. A
        learned :attr:`initial_state` is the array ``"initial_state"`` beside the weights (its name is no
        weight's)."""
        arrays = self.int8_weights if self.weight_format == "int8" else self.weights
        if self._initial_state is not None:
            arrays[_INITIAL_STATE] = self._initial_state
        return self._portable_config(), arrays

    def _portable_config(self) -> dict:
        """The config half of `_portable`, without unpacking the weights (a layer's description nests it)."""
        return {"class": "GRU", "spec": self.spec.to_dict(), "weight_format": self.weight_format}

    @classmethod
    def _from_portable(cls, config: dict, arrays: Mapping[str, np.ndarray], label: str) -> "GRU":
        """The GRU that `_portable` described; errors name ``label``. A key this fastgru does not know is
        refused (it may change what the weights mean), as are tensors that are no weight's."""
        unknown = sorted(set(config) - _PORTABLE_KEYS)
        if unknown:
            raise ValueError(f"{label}: the GRU's description has key(s) {unknown} that this fastgru does not "
                             f"know (a file from a newer fastgru, or damaged)")
        try:
            spec = GRUSpec.from_dict(config["spec"])
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{label}: bad fastgru spec ({error!r})") from None
        weight_format = config.get("weight_format", spec.dtype)
        if weight_format not in (spec.dtype, "int8") or (weight_format == "int8" and spec.dtype != "float32"):
            raise ValueError(f"{label}: weight_format {weight_format!r} does not fit a {spec.dtype} spec "
                             f"(int8 is for float32 models only)")
        weights = dict(arrays)
        initial_state = weights.pop(_INITIAL_STATE, None)
        if weight_format == "int8" and any(name.endswith(SCALE_SUFFIX) for name in weights):
            gru = cls.from_int8_weights(spec, weights, source=label)  # the codes, exactly
        else:
            gru = cls.from_spec(spec, weights, source=label)
            if weight_format == "int8":  # float32 weights flagged int8 (files of earlier versions)
                try:
                    gru = gru.quantize("int8")
                except ValueError as error:
                    raise ValueError(f"{label}: {error}") from None
        if initial_state is not None:  # optional: files without one load with none
            gru._initial_state = _checked_initial_state(spec, initial_state, f"{label}: tensor {_INITIAL_STATE!r}")
        return gru

    # ------------------------------------------------------------ properties

    @property
    def num_threads(self) -> int:
        """Threads a call uses when it passes no ``num_threads``: the number this model was built with
        (or assigned here), else fastgru's default at this moment (`fastgru.threads`: `set_num_threads`,
        ``OMP_NUM_THREADS``, physical cores). Assign ``None`` to follow the default again."""
        return resolve_num_threads(None, self._num_threads)

    @num_threads.setter
    def num_threads(self, value: int | None) -> None:
        self._num_threads = None if value is None else check_num_threads(value)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """The weights in PyTorch's names, layout and gate order, as new read-only arrays, bit for bit as
        they were given. The model holds them once, as the core's packed panels: each access unpacks a
        fresh copy (as many bytes as the weights; 0.3 ms for the 6 MiB of I = H = 512 in float32), so keep
        the dict rather than reading it in a loop. For an int8 model:
        the dequantized weights ``codes * scale`` (float32) and the float32 biases; :attr:`int8_weights`
        has the codes themselves."""
        spec = self.spec
        if self.weight_format == "int8":
            stored = self.int8_weights
            weights = {name: (stored[name].astype(np.float32) * stored[name + SCALE_SUFFIX][:, None]
                              if name.startswith("weight") else stored[name].copy())
                       for name in spec.weight_shapes()}
        else:
            weights = _named(spec, self._model.weights(spec.bias), ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        for array in weights.values():
            array.flags.writeable = False
        return weights

    @property
    def int8_weights(self) -> dict[str, np.ndarray]:
        """An int8 model's weights exactly, as new read-only arrays in PyTorch's names, layout and gate
        order: ``weight_ih_l0`` int8 codes (3H, I) in -127..127 with ``weight_ih_l0.scale`` float32 (3H,),
        row j standing for ``scale[j] * codes[j]``, the same for every ``weight_hh`` and ``weight_ih``, and
        the biases float32. :meth:`from_int8_weights` turns them back into the same model, bit for bit.
        ValueError for a float model (:meth:`quantize` it first)."""
        if self.weight_format != "int8":
            raise ValueError(f"this model's weights are {self.weight_format}, not int8: quantize() it first")
        weights = _named(self.spec, self._model.int8_weights(self.spec.bias),
                         ("weight_ih", "weight_ih" + SCALE_SUFFIX, "weight_hh", "weight_hh" + SCALE_SUFFIX,
                          "bias_ih", "bias_hh"))
        for array in weights.values():
            array.flags.writeable = False
        return weights

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    input_size = property(lambda self: self.spec.input_size)
    hidden_size = property(lambda self: self.spec.hidden_size)
    num_layers = property(lambda self: self.spec.num_layers)
    bidirectional = property(lambda self: self.spec.bidirectional)
    batch_first = property(lambda self: self.spec.batch_first)

    @property
    def packed_bytes(self) -> int:
        """Bytes the model holds: its weights once, as the core's panels (hidden units rounded up to
        blocks of 8), and its biases; all the memory a model keeps (docs/errors.md, "Memory")."""
        return self._model.packed_bytes

    def __repr__(self) -> str:
        s = self.spec
        return (f"fastgru.GRU({s.input_size}, {s.hidden_size}, num_layers={s.num_layers}, "
                f"bidirectional={s.bidirectional}, batch_first={s.batch_first}, bias={s.bias}, "
                f"reset_after={s.reset_after}, dtype={s.dtype}, gate_activation={s.gate_activation!r}, "
                f"clip={s.clip})" + (".quantize('int8')" if self.weight_format == "int8" else "")
                + ("" if self._initial_state is None else
                   f".with_initial_state(<array of shape {self._initial_state.shape}>)"))

    # ------------------------------------------------------------ forward

    def __call__(self, x, h0=None, lengths=None, *, mask=None, num_threads: int | None = None):
        """Runs the model: returns ``(output, h_n)`` (see the module docstring for shapes)."""
        return self.forward(x, h0, lengths, mask=mask, num_threads=num_threads)

    def forward(self, x, h0=None, lengths=None, *, mask=None, return_tape: bool = False,
                num_threads: int | None = None):
        """``(output, h_n)``, or ``(output, h_n, tape)`` with ``return_tape=True`` for :meth:`backward`."""
        spec = self.spec
        if return_tape and self._model.weight_format == "int8":
            raise NotImplementedError(_INT8_INFERENCE_ONLY)
        x = _as_real_array(x, "x", self.dtype)
        if x.ndim != 3:
            layout = "(B, T, I)" if spec.batch_first else "(T, B, I)"
            raise ValueError(f"x must be 3-D {layout} with I={spec.input_size}, got shape {x.shape}")
        B, T = (x.shape[0], x.shape[1]) if spec.batch_first else (x.shape[1], x.shape[0])
        if x.shape[2] != spec.input_size:
            raise ValueError(f"x has {x.shape[2]} features, expected input_size={spec.input_size} "
                             f"(x shape {x.shape})")
        L, D, H = spec.num_layers, spec.num_directions, spec.hidden_size
        h0 = self._check_h0(h0, B)
        initial_state_used = h0 is None and self._initial_state is not None
        if initial_state_used:
            h0 = np.ascontiguousarray(np.broadcast_to(self._initial_state[:, None, :], (L * D, B, H)))
        lengths = self._check_lengths(lengths, B, T)
        mask = self._check_mask(mask, B, T, lengths)
        out_shape = (B, T, D * H) if spec.batch_first else (T, B, D * H)
        output = np.empty(out_shape, dtype=self.dtype)
        h_n = np.empty((L * D, B, H), dtype=self.dtype)
        tape = None
        if T == 0 or B == 0:
            if T == 0 and return_tape:
                raise ValueError("x has 0 time steps: there is nothing to differentiate")
            h_n[...] = 0 if h0 is None else h0
            output[...] = 0
        else:
            if return_tape:
                tape = np.empty(self._model.tape_bytes(T, B), dtype=np.uint8)
            threads = resolve_num_threads(num_threads, self._num_threads)
            workspace = _thread_workspace(self._model.workspace_bytes(T, B))
            self._model.forward(x, h0, lengths, mask, spec.batch_first, output, h_n, tape, workspace,
                                _thread_pool(threads))
        if not return_tape:
            return output, h_n
        # The tape keeps its own copies: the caller may reuse x's buffer before calling backward.
        copy = lambda a: None if a is None else np.array(a, copy=True)  # noqa: E731
        return output, h_n, Tape(self, copy(x), copy(h0), copy(lengths), copy(mask),
                                 tape if tape is not None else np.empty(0, np.uint8), initial_state_used)

    def _check_h0(self, h0, batch: int):
        if h0 is None:
            return None
        spec = self.spec
        h0 = _as_real_array(h0, "h0", self.dtype)
        expected = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
        if h0.shape != expected:
            raise ValueError(f"h0 must have shape (num_layers*num_directions, B, H) = {expected}, got {h0.shape}")
        return h0

    @staticmethod
    def _check_lengths(lengths, batch: int, seq_len: int):
        if lengths is None:
            return None
        array = np.asarray(lengths)
        if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"lengths must be integers, got dtype {array.dtype}")
        if array.shape != (batch,):
            raise ValueError(f"lengths must have shape (B,) = ({batch},), got {array.shape}")
        if batch and (array.min() < 1 or array.max() > seq_len):
            raise ValueError(f"lengths must lie in 1..T = 1..{seq_len}, got min {array.min()} max {array.max()}")
        return _c_array(array, np.int64)

    @staticmethod
    def _check_mask(mask, batch: int, seq_len: int, lengths):
        if mask is None:
            return None
        if lengths is not None:
            raise ValueError("pass either lengths or mask, not both")
        array = np.asarray(mask)
        if array.shape != (seq_len, batch):
            raise ValueError(f"mask must have shape (T, B) = ({seq_len}, {batch}) (time-major), got {array.shape}")
        if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer)):
            raise TypeError(f"mask must be boolean, got dtype {array.dtype}")
        return np.ascontiguousarray(array != 0, dtype=np.uint8)

    # ------------------------------------------------------------ backward

    def backward(self, tape: Tape, grad_output=None, grad_h_n=None) -> dict[str, np.ndarray]:
        """Gradients of a loss from dL/d(output) and dL/d(h_n) (either may be None), for the forward
        that produced ``tape``: keys ``"x"``, ``"h0"`` and every weight name.

        ``"h0"`` (L*D, B, H) is the gradient with respect to the state each batch row started from. When
        that was the learned :attr:`initial_state` (the forward got no h0), every row started from the
        same parameter, so its gradient, the sum of ``"h0"`` over the batch, is returned too, as
        ``"initial_state"`` (L*D, H)."""
        if self._model.weight_format == "int8":
            raise NotImplementedError(_INT8_INFERENCE_ONLY)
        grads = _backward(self, tape, grad_output, grad_h_n)
        if tape.initial_state_used:
            grads["initial_state"] = grads["h0"].sum(axis=1)
        return grads

    # ------------------------------------------------------------ streaming

    def stream(self, batch_size: int = 1, h0=None, *, num_threads: int | None = None) -> "GRUStream":
        """A stream that advances the model one time step per :meth:`GRUStream.step` call, starting from
        ``h0`` (L, B, H), or from the learned :attr:`initial_state` (zeros without one)."""
        return GRUStream(self, batch_size, h0, num_threads=num_threads)


class GRUStream:
    """Step-by-step inference with its own state; the workspace is prepared once, so ``step``
    allocates nothing. Unidirectional models only. Not thread-safe: one thread per stream."""

    def __init__(self, gru: GRU, batch_size: int = 1, h0=None, *, num_threads: int | None = None):
        spec = gru.spec
        if spec.bidirectional:
            raise ValueError("a bidirectional GRU cannot be streamed: its reverse direction needs the whole sequence")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._gru = gru
        self._num_threads = num_threads
        self.batch_size = int(batch_size)
        self._state = np.zeros((spec.num_layers, self.batch_size, spec.hidden_size), dtype=gru.dtype)
        self._output = np.zeros((self.batch_size, spec.hidden_size), dtype=gru.dtype)
        threads = resolve_num_threads(num_threads, gru._num_threads)
        view = self._output.view()
        view.flags.writeable = False
        # The step runs in Cython (fastgru._core.Stepper): streaming calls are small, and Python-level
        # checks would cost as much as the work. The stream owns its pool: it may be stepped from any
        # one thread, and a pool serves one call at a time.
        self._step = _core.Stepper(gru._model, self._state, self._output, view, _core.new_workspace(),
                                   _core.Pool(threads) if threads > 1 else None, self._convert).step
        self.reset(h0)

    def reset(self, h0=None) -> None:
        """Sets the state to h0 (L, B, H), or, without h0, to the model's learned initial state for every
        row (zeros when it has none)."""
        if h0 is None:
            initial_state = self._gru.initial_state
            self._state[...] = 0 if initial_state is None else initial_state[:, None, :]
        else:
            h0 = _as_real_array(h0, "h0", self._gru.dtype)
            if h0.shape != self._state.shape:
                raise ValueError(f"h0 must have shape (num_layers, B, H) = {self._state.shape}, got {h0.shape}")
            self._state[...] = h0

    @property
    def state(self) -> np.ndarray:
        """A copy of the current state (num_layers, B, H)."""
        return self._state.copy()

    def step(self, x_t) -> np.ndarray:
        """Advances one time step with input ``x_t`` of shape (B, I) (or (I,) when B = 1) and returns
        h_t, shape (B, H). The returned array is read-only and overwritten by the next step: copy it to
        keep it. Allocates nothing when ``x_t`` is already a C-contiguous array of the model's dtype."""
        return self._step(x_t)

    # A stream pickles with its state: unpickled, it continues where it stopped. Its model travels as
    # the portable bytes of fastgru.io.native, its state as little-endian bytes with their CRC-32 (so a
    # damaged state raises instead of continuing from other numbers), and its thread count is settled
    # again where it is unpickled. copy.copy and copy.deepcopy give an independent stream with a copy of
    # the state and the same num_threads; a shallow copy shares the model, a deep copy gets a copy that
    # shares its packed weights.
    def __reduce__(self):
        state = self._state.astype(self._state.dtype.newbyteorder("<"), copy=False).tobytes()
        return _restore_stream, (self._gru, self.batch_size, state, zlib.crc32(state))

    def __copy__(self) -> "GRUStream":
        return GRUStream(self._gru, self.batch_size, self._state, num_threads=self._num_threads)

    def __deepcopy__(self, memo) -> "GRUStream":
        import copy

        clone = GRUStream(copy.deepcopy(self._gru, memo), self.batch_size, self._state, num_threads=self._num_threads)
        memo[id(self)] = clone
        return clone

    def _convert(self, x_t) -> np.ndarray:
        """The conversion rule of GRU.forward for one step's input, with errors naming x_t."""
        gru = self._gru
        x_t = _as_real_array(x_t, "x_t", gru.dtype)
        expected = (self.batch_size, gru.spec.input_size)
        if x_t.shape != expected and not (self.batch_size == 1 and x_t.shape == expected[1:]):
            raise ValueError(f"x_t must have shape (B, I) = {expected}"
                             f"{' or (I,)' if self.batch_size == 1 else ''}, got {x_t.shape}")
        return x_t


def _restore_stream(gru: GRU, batch_size: int, state: bytes, crc32: int) -> GRUStream:
    """Unpickles a GRUStream (GRUStream.__reduce__); ValueError when the state's bytes were damaged."""
    if not isinstance(gru, GRU) or not isinstance(state, bytes) or zlib.crc32(state) != crc32:
        raise ValueError("damaged pickle of a fastgru.GRUStream: its model or state does not match its CRC-32")
    spec = gru.spec
    dtype = np.dtype(gru.dtype).newbyteorder("<")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or \
            len(state) != spec.num_layers * batch_size * spec.hidden_size * dtype.itemsize:
        raise ValueError(f"damaged pickle of a fastgru.GRUStream: {len(state)} bytes of state for batch_size "
                         f"{batch_size!r}")
    h0 = np.frombuffer(state, dtype).reshape(spec.num_layers, batch_size, spec.hidden_size)
    return GRUStream(gru, batch_size, h0)
