"""PyTorch: an `nn.GRU` / `nn.GRUCell`, a module containing one, a state dict, a ``torch.save``d file, or
a safetensors file of a state dict.

PyTorch's layout *is* fastgru's layout, so this importer only finds the tensors and infers the sizes; it
returns a `fastgru.io.common.GRUDescription` and `fastgru.GRU.from_torch` builds the model. State dicts carry
no ``batch_first``: pass ``batch_first=True`` if the model was used that way (a module carries it and it is
taken from there). ``dropout`` only acts in training and is not imported.

A learned initial state (a parameter such as ``self.h0 = nn.Parameter(torch.zeros(L * D, 1, H))`` next to
the GRU) is imported only when named: ``initial_state="h0"`` (its full name in the state dict, e.g.
``"encoder.h0"``; see `fastgru.GRU.with_initial_state` for the shapes accepted).
"""

from __future__ import annotations

import os
import re

import numpy as np

from fastgru.io.common import GRUDescription, replaced, spec_dtype
from fastgru.io.safetensors import looks_like_safetensors, read_safetensors
from fastgru.spec import GRUSpec, check_weights

# weight_ih_l0, bias_hh_l1_reverse, ... (nn.GRU) and weight_ih, bias_hh (nn.GRUCell).
_NAME = re.compile(
    r"^(?P<prefix>.*?)(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh)(?:_l(?P<layer>\d+))?(?P<reverse>_reverse)?$"
)


def to_numpy(tensor) -> np.ndarray:
    """A torch tensor (any dtype, device, requires_grad) or array-like as a numpy array."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu()
        if str(tensor.dtype) not in ("torch.float32", "torch.float64"):
            tensor = tensor.float()  # numpy has no bfloat16; float16 widens exactly
        return tensor.numpy()
    return np.asarray(tensor)


def flatten_state(state, prefix: str = "") -> dict:
    """Nested checkpoint dicts ({"model": {...}, "optimizer": ...}) flattened to dotted names."""
    flat = {}
    for key, value in state.items():
        if isinstance(value, dict):
            flat.update(flatten_state(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def gru_prefixes(names) -> list[str]:
    """Prefixes under which a GRU's ``weight_hh`` lives (LSTM and RNN weights are told apart by shape later)."""
    found = []
    for name in names:
        match = _NAME.match(name)
        if match and match["kind"] == "weight_hh" and match["layer"] in (None, "0") and not match["reverse"]:
            if match["prefix"] not in found:
                found.append(match["prefix"])
    return found


def spec_from_state_dict(state, prefix=None, *, batch_first=False, dtype=None, source="state dict"):
    """Infers the spec from tensor names and shapes; returns ``(spec, weights)``.

    ``prefix`` selects one GRU when the dict holds several (``"encoder.rnn."``; the trailing dot is optional).
    """
    state = flatten_state(dict(state))
    candidates = gru_candidates(state)
    if prefix is not None:
        if prefix not in candidates and prefix + "." in candidates:  # "encoder.rnn" names the module
            prefix += "."
        if prefix not in candidates:
            raise ValueError(f"{source}: no GRU weights under prefix {prefix!r}; GRU prefixes found: {candidates}")
    elif len(candidates) == 1:
        prefix = candidates[0]
    elif not candidates:
        raise ValueError(f"{source}: no GRU weights found (looked for 'weight_hh_l0' of shape (3H, H)); "
                         f"names: {list(state)[:20]}")
    else:
        raise ValueError(f"{source}: several GRUs found, pass prefix= one of {candidates}")

    weights, layers, reverse, has_bias = {}, set(), False, False
    for name, value in state.items():
        if not name.startswith(prefix):
            continue
        match = _NAME.match(name[len(prefix) :])
        if not match or match["prefix"]:
            continue
        layer = int(match["layer"] or 0)
        layers.add(layer)
        reverse |= bool(match["reverse"])
        has_bias |= match["kind"].startswith("bias")
        weights[f"{match['kind']}_l{layer}{match['reverse'] or ''}"] = to_numpy(value)
    for name in ("weight_ih_l0", "weight_hh_l0"):
        if name not in weights or weights[name].ndim != 2:
            found = weights[name].shape if name in weights else "missing"
            raise ValueError(f"{source}: tensor {prefix + name!r} must be 2-D, got {found}")
    spec = GRUSpec(
        input_size=weights["weight_ih_l0"].shape[1],
        hidden_size=weights["weight_hh_l0"].shape[1],
        num_layers=max(layers) + 1,
        bidirectional=reverse,
        batch_first=bool(batch_first),
        bias=has_bias,
        dtype=dtype or spec_dtype(*weights.values()),
    )
    return spec, check_weights(spec, weights, f"{source} (prefix {prefix!r})" if prefix else source)


def initial_state_tensor(state, name, source: str):
    """The tensor a user named as the model's learned initial state: ``name`` is looked up in ``state``
    (nested checkpoint dicts flattened to dotted names); anything else is taken as the array itself."""
    if name is None or not isinstance(name, str):
        return None if name is None else to_numpy(name)
    flat = flatten_state(dict(state))
    if name not in flat:
        others = [key for key in flat if not _NAME.match(key)]  # all but the GRU weights
        raise ValueError(f"{source}: no tensor {name!r} for initial_state; the other tensors are {others[:20]}")
    return to_numpy(flat[name])


def gru_candidates(state) -> list[str]:
    """The prefixes under which a flat state dict holds a GRU (``weight_hh`` of shape (3H, H))."""
    return [prefix for prefix in gru_prefixes(state) if _is_gru(state, prefix)]


def _is_gru(state, prefix) -> bool:
    weight_hh = state.get(prefix + "weight_hh_l0", state.get(prefix + "weight_hh"))
    shape = tuple(getattr(weight_hh, "shape", ()))
    return len(shape) == 2 and shape[0] == 3 * shape[1]


def _module_spec(module, *, batch_first=None, dtype=None):
    """Spec and weights of an nn.GRU (read through getattr so parametrizations such as weight_norm apply)."""
    import torch

    if isinstance(module, torch.nn.GRUCell):
        names = {"weight_ih_l0": "weight_ih", "weight_hh_l0": "weight_hh"}
        if module.bias:
            names.update(bias_ih_l0="bias_ih", bias_hh_l0="bias_hh")
        weights = {ours: to_numpy(getattr(module, theirs)) for ours, theirs in names.items()}
        spec = GRUSpec(module.input_size, module.hidden_size, bias=module.bias,
                       batch_first=bool(batch_first), dtype=dtype or spec_dtype(*weights.values()))
        return spec, weights
    spec = GRUSpec(
        input_size=module.input_size,
        hidden_size=module.hidden_size,
        num_layers=module.num_layers,
        bidirectional=module.bidirectional,
        batch_first=module.batch_first if batch_first is None else bool(batch_first),
        bias=module.bias,
        dtype=dtype or ("float64" if module.weight_hh_l0.dtype == torch.float64 else "float32"),
    )
    weights = {name: to_numpy(getattr(module, name)) for name in spec.weight_shapes()}
    return spec, weights


def read_torch(obj, prefix=None, *, batch_first=None, dtype=None, source=None, initial_state=None) -> GRUDescription:
    """The `GRUDescription` of an `nn.GRU`/`nn.GRUCell`, a module containing one, a state dict or a file path
    (``torch.save`` or safetensors).

    In a module with several GRUs, ``prefix`` is the submodule's name (``"encoder.rnn"``); the error for an
    ambiguous module or state dict lists the prefixes found. ``initial_state`` names the tensor of a
    learned h0 in the module's state dict (``"h0"``), or is that array itself.
    """
    if isinstance(obj, (str, os.PathLike)):
        return read_torch_file(obj, prefix=prefix, batch_first=batch_first, dtype=dtype, initial_state=initial_state)
    if isinstance(obj, dict):
        source = source or "state dict"
        spec, weights = spec_from_state_dict(obj, prefix, batch_first=bool(batch_first), dtype=dtype, source=source)
        return GRUDescription(spec, weights, source, initial_state_tensor(obj, initial_state, source))

    import torch

    if not isinstance(obj, torch.nn.Module):
        raise TypeError(f"from_torch expects an nn.Module, a state dict or a path, got {type(obj).__name__}")
    source = source or type(obj).__name__
    if isinstance(obj, (torch.nn.GRU, torch.nn.GRUCell)) and prefix in (None, ""):
        module = obj
    else:
        grus = {name: m for name, m in obj.named_modules() if isinstance(m, (torch.nn.GRU, torch.nn.GRUCell))}
        if prefix is not None:
            module = grus.get(prefix.rstrip("."))
            if module is None:
                raise ValueError(f"{source}: no GRU module named {prefix!r}; GRU prefixes found: {_dotted(grus)}")
        elif len(grus) == 1:
            module = next(iter(grus.values()))
        else:
            what = "several GRUs found, pass prefix= one of" if grus else "no nn.GRU or nn.GRUCell inside;"
            raise ValueError(f"{source}: {what} {_dotted(grus)}")
    spec, weights = _module_spec(module, batch_first=batch_first, dtype=dtype)
    learned = None if initial_state is None else initial_state_tensor(obj.state_dict(), initial_state, source)
    return GRUDescription(spec, weights, source, learned)


def _dotted(modules) -> list[str]:
    return [name + "." for name in modules]


def read_torch_file(path, prefix=None, *, batch_first=None, dtype=None, initial_state=None) -> GRUDescription:
    """The `GRUDescription` of a state dict in a file: a safetensors file (read with numpy alone), or a
    ``torch.save``d state dict (or checkpoint dict holding one), read with ``weights_only=True``."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        head = file.read(16)
    if looks_like_safetensors(head):
        tensors, metadata = read_safetensors(path)
        if metadata.get("format") == "fastgru":
            raise ValueError(f"{path}: fastgru's own file, not a torch state dict: load it with fastgru.load")
        return read_torch(tensors, prefix, batch_first=batch_first, dtype=dtype, source=path,
                          initial_state=initial_state)

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and unsafe-global errors all mean "not a readable state dict"
        raise ValueError(f"{path}: not a readable torch state dict "
                         f"(torch.load(weights_only=True) said: {error})") from error
    if isinstance(state, torch.nn.Module) or not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return read_torch(state, prefix, batch_first=batch_first, dtype=dtype, source=path, initial_state=initial_state)


def __getattr__(name):
    raise replaced(__name__, name, {"from_torch": "fastgru.GRU.from_torch(obj) (this module's read_torch returns "
                                                  "the spec and weights)",
                                    "load_torch_file": "fastgru.load(path) or fastgru.GRU.from_torch(path)"})
