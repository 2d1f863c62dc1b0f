"""Keras: `GRU` / `Bidirectional(GRU)` layers and models that chain them, in memory or from files.

Files are read with zipfile, h5py and json only (no Keras, no TensorFlow):

- ``.keras`` (Keras 3): a zip of ``config.json``, ``metadata.json`` (``keras_version``) and
  ``model.weights.h5``, where a GRU's arrays are ``layers/<path>/cell/vars/0,1,2`` (kernel,
  recurrent_kernel, bias) and a Bidirectional's are under ``forward_layer/`` and ``backward_layer/``. The
  path comes from the class name and position (``gru``, ``gru_1``); each path's ``vars`` group records the
  layer's own name in its ``name`` attribute, which is how config entries are matched to arrays.
- ``.weights.h5`` (Keras 3 ``save_weights``): the same arrays without a config; Keras' defaults are assumed
  (override them with keyword arguments, e.g. ``return_sequences=True``).
- legacy ``.h5`` (tf.keras 2 / Keras 2 ``model.save`` or ``save_weights``, and Keras 3 writing the legacy
  format): ``model_weights/<layer>`` (or the root, for weights-only files) with ``weight_names`` such as
  ``gru/gru_cell/kernel:0``; the root attribute ``model_config`` is the model's JSON and ``keras_version``
  decides which hard sigmoid ``recurrent_activation="hard_sigmoid"`` means (Keras 2: ``0.2 x + 0.5``,
  Keras 3: ``x / 6 + 0.5``).

Keras' layout: kernel (I, 3H) and recurrent_kernel (H, 3H) with gates z, r, h; bias (2, 3H) (input,
recurrent) when ``reset_after=True``, (3H,) on the input side when ``reset_after=False``.

A model imports as one multi-layer GRU when its layers are an optional ``InputLayer``/``Masking`` and then
GRU (or all Bidirectional(GRU), merge_mode ``concat`` between layers) layers with the same units,
activations, ``reset_after`` and ``use_bias``, each feeding the next with ``return_sequences=True``. Anything
else is refused; import one layer with ``layer="name"`` instead. The result is a `KerasGRU`, called like the
Keras layer/model (Keras' masking: state carried over masked steps, the previous output repeated there, or
zeros where Keras zeroes them). ``dropout``/``recurrent_dropout`` only act in training and are not imported;
``unroll`` and ``use_cudnn`` do not change the numbers.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile

import numpy as np

from fastgru.io import UnsupportedModelError, build_gru, spec_dtype, zrh_to_rzn
from fastgru.spec import GRUSpec
from fastgru.io.wrapper import WrappedGRU

_MERGE_MODES = ("concat", "sum", "ave", "mul", None)
_SKIPPED = ("InputLayer",)
_MASK_OPS = ("NotEqual", "Any")  # Keras 3 functional graphs spell out Masking's mask computation as ops
_OVERRIDABLE = {"return_sequences", "return_state", "go_backwards", "zero_output_for_mask", "reset_after",
                "activation", "recurrent_activation", "use_bias", "merge_mode"}
_GRU_DEFAULTS = {
    "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True, "return_sequences": False,
    "return_state": False, "go_backwards": False, "stateful": False, "zero_output_for_mask": False,
}


class KerasGRU(WrappedGRU):
    """A `fastgru.GRU` (``.gru``) called like the Keras layer or model it came from.

    ``kgru(x, mask=None, initial_state=None)`` takes what Keras takes ((B, T, I) input, (B, T) bool mask,
    one (B, H) state per direction) and returns what Keras returns: the output sequence or the last output,
    merged per ``merge_mode`` for Bidirectional, followed by the final states when ``return_state``.
    """

    def __init__(self, gru, *, return_sequences=False, return_state=False, go_backwards=False,
                 zero_output_for_mask=False, merge_mode="concat", mask_value=None):
        super().__init__(gru)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.merge_mode = merge_mode
        self.mask_value = mask_value

    def call_config(self) -> dict:
        """What `fastgru.io.native.save` stores next to the spec so that the wrapper comes back."""
        names = ("return_sequences", "return_state", "go_backwards", "zero_output_for_mask", "merge_mode", "mask_value")
        return {"kind": "keras", **{name: getattr(self, name) for name in names}}

    def __repr__(self) -> str:
        return f"KerasGRU({self.spec}, {self.call_config()})"

    def __call__(self, inputs, mask=None, initial_state=None):
        spec = self.spec
        x = np.asarray(inputs, dtype=spec.dtype)
        if x.ndim != 3:
            raise ValueError(f"inputs must be (batch, time, features), got shape {x.shape}")
        if mask is None and self.mask_value is not None:
            mask = np.any(x != self.mask_value, axis=-1)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != x.shape[:2]:
                raise ValueError(f"mask must be (batch, time) = {x.shape[:2]}, got {mask.shape}")
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
        x = np.ascontiguousarray(x)
        output, h_n = self.gru(x, h0, mask=None if mask is None else np.ascontiguousarray(mask.T))
        output = np.asarray(output)
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
        if not spec.bidirectional:
            merged = outputs[0]
        elif self.merge_mode == "concat":
            merged = np.concatenate(outputs, axis=-1)
        elif self.merge_mode == "sum":
            merged = outputs[0] + outputs[1]
        elif self.merge_mode == "ave":
            merged = (outputs[0] + outputs[1]) / 2
        elif self.merge_mode == "mul":
            merged = outputs[0] * outputs[1]
        else:
            merged = list(outputs)
        if not self.return_state:
            return merged
        states = list(np.asarray(h_n)[-spec.num_directions :])
        return (merged if isinstance(merged, list) else [merged]) + states


def _repeat_last_valid(sequence: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B, T, H) outputs with every masked step replaced by the last unmasked one before it, or 0."""
    steps = np.arange(mask.shape[1])[None, :]
    last_valid = np.maximum.accumulate(np.where(mask, steps, -1), axis=1)
    repeated = np.take_along_axis(sequence, np.maximum(last_valid, 0)[..., None], axis=1)
    return np.where((last_valid >= 0)[..., None], repeated, 0).astype(sequence.dtype)


# --------------------------------------------------------------------------------------------------------
# Collecting layers: every source ends as a list of records
#   {"name", "class_name", "config", "backward_config", "merge_mode", "arrays", "backward_arrays", "inbound"}
# where arrays maps "kernel"/"recurrent_kernel"/"bias" to (array, label naming the tensor in its file).


def from_keras(obj, *, layer=None, keras_version=None, **overrides):
    """A `KerasGRU` from a Keras layer/model or a ``.keras`` / ``.weights.h5`` / legacy ``.h5`` path.

    ``layer`` picks one GRU/Bidirectional layer by name (or by weights path such as ``"gru_1"`` in a
    weights-only file). ``keras_version`` overrides the version recorded in the file (it decides what
    ``hard_sigmoid`` means). Other keyword arguments override GRU config values (``return_sequences``,
    ``reset_after``, ``recurrent_activation``, ``merge_mode``...), for weights-only files that have none.
    """
    unknown = set(overrides) - _OVERRIDABLE
    if unknown:
        raise TypeError(f"from_keras got unknown option(s) {sorted(unknown)}; GRU config values that may be "
                        f"overridden: {sorted(_OVERRIDABLE)}")
    if isinstance(obj, (str, os.PathLike)):
        source = os.fspath(obj)
        model_config, records, version, mask_value = _read_file(source)
    else:
        source = getattr(obj, "name", type(obj).__name__)
        model_config, records, version, mask_value = _read_object(obj)
    if keras_version is not None:
        version = str(keras_version)
    records = _select(records, layer, source, model_config)
    if layer is not None:
        mask_value = None  # the Masking before a picked layer is not part of it: pass mask= when calling
    for record in records:
        for config in (record["config"], record["backward_config"]):
            if config is not None:
                config.update({k: v for k, v in overrides.items() if k != "merge_mode"})
        if "merge_mode" in overrides and record["class_name"] == "Bidirectional":
            record["merge_mode"] = overrides["merge_mode"]
    return _build(records, version, mask_value, source)


def _read_object(obj):
    """Records from an in-memory Keras layer or model (configs via get_config, arrays via the variables)."""
    import keras

    version = keras.__version__
    if isinstance(obj, (keras.layers.GRU, keras.layers.Bidirectional)):
        return None, [_object_record(obj, None)], version, None
    if not isinstance(obj, keras.Model):
        raise TypeError(f"from_keras expects a keras GRU/Bidirectional layer, a Model or a path, "
                        f"got {type(obj).__name__}")
    config = {"class_name": type(obj).__name__, "config": obj.get_config()}
    records, mask_value = _walk_config(config, obj.name)
    for record in records:
        if "unsupported" not in record:
            record.update(_object_record(obj.get_layer(record["name"]), record["inbound"]))
    return config, records, version, mask_value


def _object_record(layer, inbound):
    import keras

    def arrays(gru_layer):
        if not gru_layer.built:
            raise ValueError(f"{gru_layer.name}: the layer has no weights yet (build it or call it once first)")
        cell = gru_layer.cell
        variables = {"kernel": cell.kernel, "recurrent_kernel": cell.recurrent_kernel, "bias": cell.bias}
        return {key: (keras.ops.convert_to_numpy(v), f"{gru_layer.name}/{key}")
                for key, v in variables.items() if v is not None}

    if isinstance(layer, keras.layers.Bidirectional):
        for part in (layer.forward_layer, layer.backward_layer):
            if not isinstance(part, keras.layers.GRU):
                raise UnsupportedModelError(f"{layer.name}: Bidirectional wraps a {type(part).__name__}, not a GRU")
        return {"name": layer.name, "class_name": "Bidirectional", "config": layer.forward_layer.get_config(),
                "backward_config": layer.backward_layer.get_config(), "merge_mode": layer.merge_mode,
                "arrays": arrays(layer.forward_layer), "backward_arrays": arrays(layer.backward_layer),
                "inbound": inbound}
    if not isinstance(layer, keras.layers.GRU):
        raise UnsupportedModelError(f"{layer.name}: a {type(layer).__name__}, not a GRU")
    return {"name": layer.name, "class_name": "GRU", "config": layer.get_config(), "backward_config": None,
            "merge_mode": None, "arrays": arrays(layer), "backward_arrays": None, "inbound": inbound}


def _read_file(path):
    """Records from a .keras archive, a Keras 3 .weights.h5 or a legacy .h5."""
    if path.endswith(".keras") or zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
                metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in archive.namelist() else {}
                weights_file = io.BytesIO(archive.read("model.weights.h5"))
        except (KeyError, ValueError, zipfile.BadZipFile, EOFError) as error:
            raise ValueError(f"{path}: not a readable .keras archive ({error})") from None
        with _open_h5(weights_file, f"{path}:model.weights.h5") as store:
            records, mask_value = _walk_config(config, path)
            for record in records:
                _attach_store_arrays(record, store, f"{path}:model.weights.h5")
        return config, records, metadata.get("keras_version", "3"), mask_value
    with _open_h5(path, path) as store:
        root = store["model_weights"] if "model_weights" in store else store
        if _attribute_list(root, "layer_names"):  # the legacy format (Keras 1/2, tf.keras 2, or Keras 3 writing .h5)
            version = _text(store.attrs.get("keras_version", root.attrs.get("keras_version", ""))) or None
            if "model_config" in store.attrs:
                config = json.loads(_text(store.attrs["model_config"]))
                records, mask_value = _walk_config(config, path)
                for record in records:
                    _attach_legacy_arrays(record, root, path)
                return config, records, version, mask_value
            return None, _legacy_records(root, path), version, None
        if "layers" in store or "vars" in store:
            return None, _store_records(store, path), "3", None
    raise ValueError(f"{path}: an HDF5 file with neither Keras 3 weights ('layers/...') nor legacy Keras weights "
                     f"('layer_names')")


class _open_h5:
    """h5py.File whose errors name the file (a truncated or non-HDF5 file raises OSError inside h5py)."""

    def __init__(self, file, label):
        self.file, self.label = file, label

    def __enter__(self):
        import h5py

        try:
            self.handle = h5py.File(self.file, "r")
        except OSError as error:
            raise ValueError(f"{self.label}: not a readable HDF5 file ({error})") from None
        return self.handle

    def __exit__(self, *exc):
        self.handle.close()


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _attribute_list(group, name) -> list[str]:
    """A legacy list attribute; Keras splits long ones into name0, name1, ... (HDF5's 64 KB header limit)."""
    if name in group.attrs:
        return [_text(n) for n in group.attrs[name]]
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values += [_text(n) for n in group.attrs[f"{name}{chunk}"]]
        chunk += 1
    return values


def _walk_config(model_config, source):
    """The GRU/Bidirectional layers of a model config, in order, plus the Masking value if the chain has one."""
    class_name, config = model_config.get("class_name"), model_config.get("config")
    if class_name in ("GRU", "Bidirectional"):
        entries = [model_config]
    elif isinstance(config, list):  # Keras < 2.2.3 Sequential
        entries = config
    elif isinstance(config, dict) and "layers" in config:
        entries = config["layers"]
    else:
        raise UnsupportedModelError(f"{source}: top-level object is a {class_name}, not a model or a GRU layer")
    records, mask_value, previous, counts = [], None, None, {}
    has_masking = any(entry.get("class_name") == "Masking" for entry in entries)
    for entry in entries:
        kind, config = entry["class_name"], entry.get("config", {})
        name = entry.get("name", config.get("name"))
        if kind in _SKIPPED:
            previous = name
            continue
        if kind in _MASK_OPS and has_masking:
            continue
        if kind == "Masking":
            if records:
                raise UnsupportedModelError(f"{source}: Masking layer {name!r} comes after a GRU; fastgru only applies "
                                            f"a Masking before the first GRU")
            mask_value, previous = float(config.get("mask_value", 0.0)), name
            continue
        # The weights store names a layer by its class and position among layers of that class: gru, gru_1, ...
        base = re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", kind).lower()
        counts[base] = counts.get(base, -1) + 1
        record = {"name": name, "class_name": kind, "config": None, "backward_config": None, "merge_mode": None,
                  "arrays": None, "backward_arrays": None, "inbound": _inbound(entry), "previous": previous,
                  "expected_path": base if counts[base] == 0 else f"{base}_{counts[base]}"}
        if kind == "GRU":
            record["config"] = dict(config)
        elif kind == "Bidirectional" and config.get("layer", {}).get("class_name") == "GRU":
            record["config"] = dict(config["layer"]["config"])
            backward = config.get("backward_layer")
            if backward is not None and backward.get("class_name") != "GRU":
                raise UnsupportedModelError(f"{source}: Bidirectional {name!r} has a backward "
                                            f"{backward.get('class_name')}, not a GRU")
            default_backward = {**config["layer"]["config"], "go_backwards": True}
            record["backward_config"] = dict(backward["config"]) if backward else default_backward
            record["merge_mode"] = config.get("merge_mode", "concat")
        else:
            inner = config.get("layer", {}).get("class_name")
            record["unsupported"] = f"{kind}({inner})" if inner else kind
        records.append(record)
        previous = name
    return records, mask_value


def _inbound(entry):
    """The name of the layer feeding ``entry`` in a functional config (Keras 3 or Keras 2 spelling), if any."""
    nodes = entry.get("inbound_nodes") or []
    if not nodes:
        return None
    if len(nodes) > 1:
        return ("shared", len(nodes))
    node = nodes[0]
    try:
        if isinstance(node, dict):  # Keras 3
            return node["args"][0]["config"]["keras_history"][0]
        return node[0][0]  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
    except (KeyError, IndexError, TypeError):
        return None


def _select(records, layer, source, model_config):
    if layer is not None:
        usable = [r for r in records if "unsupported" not in r]
        chosen = [r for r in usable if r["name"] == layer] or [r for r in usable if r.get("path") == layer]
        if not chosen:
            raise ValueError(f"{source}: no GRU layer named {layer!r}; GRU layers: {_names(records)}")
        chosen[0]["inbound"] = None
        return chosen
    if not records:
        raise ValueError(f"{source}: no GRU or Bidirectional(GRU) layer found")
    if model_config is None and len(records) > 1:
        raise ValueError(f"{source}: {len(records)} GRU layers and no model config to chain them; pass layer= "
                         f"one of {_names(records)}")
    for record in records:
        if "unsupported" in record:
            raise UnsupportedModelError(
                f"{source}: layer {record['name']!r} is a {record['unsupported']}; fastgru imports chains of GRU / "
                f"Bidirectional(GRU) layers (after an optional Masking). Import one layer with layer= one of "
                f"{_names(records)}")
    if model_config is not None and model_config.get("class_name") not in ("Sequential", "GRU", "Bidirectional"):
        for record in records:
            if record["inbound"] is not None and record["inbound"] != record["previous"]:
                raise UnsupportedModelError(
                    f"{source}: layer {record['name']!r} takes its input from {record['inbound']!r}, not from the "
                    f"layer before it; only a single chain imports as one GRU. Import one layer with layer= one of "
                    f"{_names(records)}")
    return records


def _names(records):
    return [r["name"] for r in records if "unsupported" not in r]


# --------------------------------------------------------------------------------------------------------
# Arrays from files.


def _store_groups(store):
    """{layer path: group} for the Keras 3 weights store's top-level layers."""
    layers = store.get("layers")
    return dict(layers.items()) if layers is not None else {}


def _cell_arrays(group, label):
    vars_group = group.get("cell/vars")
    if vars_group is None:
        raise ValueError(f"{label}: {group.name} has no cell/vars group; not a GRU")
    keys = ("kernel", "recurrent_kernel", "bias")
    return {keys[int(i)]: (vars_group[i][()], vars_group[i].name) for i in vars_group if i.isdigit() and int(i) < 3}


def _attach_store_arrays(record, store, label):
    if "unsupported" in record:
        return
    groups = _store_groups(store)
    named = [path for path, group in groups.items()
             if _text(group.get("vars", group).attrs.get("name", "")) == record["name"]]
    path = named[0] if named else record["expected_path"]  # older files lack the vars 'name' attribute
    if path not in groups:
        raise ValueError(f"{label}: no weights for layer {record['name']!r} (expected group layers/{path})")
    group = groups[path]
    record["path"] = path
    if record["class_name"] == "Bidirectional":
        record["arrays"] = _cell_arrays(group["forward_layer"], label)
        record["backward_arrays"] = _cell_arrays(group["backward_layer"], label)
    else:
        record["arrays"] = _cell_arrays(group, label)


def _store_records(store, label):
    """Records from a Keras 3 .weights.h5 without a config: every layer with GRU cell arrays, Keras defaults."""
    records = []
    for path, group in _store_groups(store).items():
        name = _text(group.get("vars", group).attrs.get("name", path))
        if "forward_layer" in group and "backward_layer" in group:
            arrays = _cell_arrays(group["forward_layer"], label)
            records.append({"name": name, "path": path, "class_name": "Bidirectional", "config": {},
                            "backward_config": {"go_backwards": True}, "merge_mode": "concat", "arrays": arrays,
                            "backward_arrays": _cell_arrays(group["backward_layer"], label), "inbound": None})
        elif "cell" in group:
            records.append({"name": name, "path": path, "class_name": "GRU", "config": {}, "backward_config": None,
                            "merge_mode": None, "arrays": _cell_arrays(group, label), "backward_arrays": None,
                            "inbound": None})
    return records


def _legacy_arrays(group, names, label):
    arrays = {}
    for name in names:
        key = name.rsplit("/", 1)[-1].split(":")[0]
        if key not in ("kernel", "recurrent_kernel", "bias"):
            raise UnsupportedModelError(f"{label}: weight {name!r} is not a GRU kernel, recurrent_kernel or bias")
        if name not in group:
            raise ValueError(f"{label}: missing tensor {group.name}/{name}")
        arrays[key] = (group[name][()], f"{group.name}/{name}")
    return arrays


def _legacy_split(group, label):
    """A legacy layer group's weights: one dict (GRU) or forward and backward dicts (Bidirectional)."""
    names = _attribute_list(group, "weight_names")
    forward = [n for n in names if "forward" in n.rsplit("/", 1)[0]]
    backward = [n for n in names if "backward" in n.rsplit("/", 1)[0]]
    if forward and backward and len(forward) + len(backward) == len(names):
        return _legacy_arrays(group, forward, label), _legacy_arrays(group, backward, label)
    if len(names) in (4, 6):  # no forward/backward in the names: Keras' order, forward first
        half = len(names) // 2
        return _legacy_arrays(group, names[:half], label), _legacy_arrays(group, names[half:], label)
    return _legacy_arrays(group, names, label), None


def _attach_legacy_arrays(record, root, label):
    if "unsupported" in record:
        return
    if record["name"] not in root:
        raise ValueError(f"{label}: no weights for layer {record['name']!r} "
                         f"(expected group {root.name}/{record['name']})")
    record["arrays"], record["backward_arrays"] = _legacy_split(root[record["name"]], label)


def _legacy_records(root, label):
    """Records from a legacy weights-only .h5 (``layer_names`` order), Keras defaults for the configs."""
    records = []
    for name in _attribute_list(root, "layer_names"):
        weight_names = _attribute_list(root[name], "weight_names")
        if not weight_names:
            continue
        if not any(n.split(":")[0].endswith("recurrent_kernel") for n in weight_names):
            records.append({"name": name, "unsupported": f"layer with weights {weight_names}"})
            continue
        forward, backward = _legacy_split(root[name], label)
        bidirectional = backward is not None
        records.append({"name": name, "class_name": "Bidirectional" if bidirectional else "GRU", "config": {},
                        "backward_config": {"go_backwards": True} if bidirectional else None,
                        "merge_mode": "concat" if bidirectional else None, "arrays": forward,
                        "backward_arrays": backward, "inbound": None})
    return records


# --------------------------------------------------------------------------------------------------------
# Records -> spec, weights and the calling convention.


def _activation(value) -> str:
    if isinstance(value, dict):  # {"class_name": "function", "config": "tanh", ...} in some Keras 3 versions
        value = value.get("config") if isinstance(value.get("config"), str) else value.get("registered_name", value)
    return str(value)


def _gate_activation(config, version, where) -> str:
    name = _activation(config.get("recurrent_activation", "sigmoid"))
    if name == "sigmoid":
        return "sigmoid"
    if name == "hard_sigmoid":
        if version is None:
            raise ValueError(f"{where}: recurrent_activation='hard_sigmoid' means 0.2x+0.5 in Keras 2 and x/6+0.5 in "
                             f"Keras 3, and the file records no keras_version; pass keras_version='2' or '3'")
        return "hard_sigmoid" if int(str(version).split(".")[0]) >= 3 else "hard_sigmoid_keras2"
    raise UnsupportedModelError(f"{where}: recurrent_activation={name!r} is not supported (sigmoid or hard_sigmoid)")


def _check_config(config, where) -> None:
    activation = _activation(config.get("activation", "tanh"))
    if activation != "tanh":
        raise UnsupportedModelError(f"{where}: activation={activation!r} is not supported (only 'tanh')")
    for key in ("stateful", "time_major"):
        if config.get(key):
            raise UnsupportedModelError(f"{where}: {key}={config[key]!r} is not supported")


def _torch_layout(arrays, reset_after, use_bias, where):
    """One direction's Keras arrays as (weight_ih, weight_hh, bias_ih, bias_hh) in r, z, n order."""
    for key in ("kernel", "recurrent_kernel") + (("bias",) if use_bias else ()):
        if key not in arrays:
            raise ValueError(f"{where}: missing tensor {key!r}")
    kernel, kernel_label = arrays["kernel"]
    recurrent, recurrent_label = arrays["recurrent_kernel"]
    if recurrent.ndim != 2 or recurrent.shape[1] != 3 * recurrent.shape[0]:
        raise ValueError(f"{where}: tensor {recurrent_label!r} has shape {recurrent.shape}, "
                         f"expected (units, 3 * units)")
    hidden3 = recurrent.shape[1]
    if kernel.ndim != 2 or kernel.shape[1] != hidden3:
        raise ValueError(f"{where}: tensor {kernel_label!r} has shape {kernel.shape}, expected (input_dim, {hidden3})")
    out = [zrh_to_rzn(kernel.T), zrh_to_rzn(recurrent.T)]
    if use_bias:
        bias, bias_label = arrays["bias"]
        expected = (2, hidden3) if reset_after else (hidden3,)
        if bias.shape != expected:
            raise ValueError(f"{where}: tensor {bias_label!r} has shape {bias.shape}, expected {expected} "
                             f"for reset_after={reset_after}")
        if reset_after:
            out += [zrh_to_rzn(bias[0]), zrh_to_rzn(bias[1])]
        else:  # Keras adds one bias on the input side; the recurrent side gets zeros
            out += [zrh_to_rzn(bias), np.zeros_like(bias)]
    return out


def _resolved(record):
    """The record's config with Keras' defaults filled in (weights-only files have none)."""
    config = {**_GRU_DEFAULTS, **record["config"]}
    if "reset_after" not in config:  # absent in Keras < 2.1 configs and in weights-only files: the bias says
        bias = record["arrays"].get("bias")
        config["reset_after"] = bias is None or bias[0].ndim == 2
    return config


def _build(records, version, mask_value, source):
    first = records[0]
    bidirectional = first["class_name"] == "Bidirectional"
    configs = [_resolved(r) for r in records]
    key_fields = ("units", "activation", "recurrent_activation", "use_bias", "reset_after")
    weights = {}
    for layer, (record, config) in enumerate(zip(records, configs)):
        where = f"{source}: layer {record['name']!r}"
        _check_config(config, where)
        if record["class_name"] != first["class_name"]:
            raise UnsupportedModelError(f"{source}: mixes GRU and Bidirectional layers ({first['name']!r}, "
                                        f"{record['name']!r}); import them one at a time with layer=")
        for key in key_fields:
            if _activation(config.get(key)) != _activation(configs[0].get(key)):
                raise UnsupportedModelError(f"{source}: layers {first['name']!r} and {record['name']!r} differ in "
                                            f"{key} ({configs[0].get(key)!r} vs {config.get(key)!r}); import them "
                                            f"one at a time with layer=")
        last = layer == len(records) - 1
        if not last and (not config["return_sequences"] or config["return_state"]):
            raise UnsupportedModelError(f"{where}: feeds another GRU, so it needs return_sequences=True and "
                                        f"return_state=False")
        if bidirectional:
            if not last and record["merge_mode"] != "concat":
                raise UnsupportedModelError(f"{where}: merge_mode={record['merge_mode']!r} between stacked layers "
                                            f"is not supported (only 'concat')")
            if record["merge_mode"] not in _MERGE_MODES:
                raise UnsupportedModelError(f"{where}: merge_mode={record['merge_mode']!r} is not supported")
            backward = {**config, **record["backward_config"]}
            if config["go_backwards"] or not backward.get("go_backwards"):
                raise UnsupportedModelError(f"{where}: Bidirectional with forward go_backwards="
                                            f"{config['go_backwards']!r} and backward go_backwards="
                                            f"{backward.get('go_backwards')!r} is not supported")
            for key in key_fields + ("return_sequences",):
                if _activation(backward.get(key)) != _activation(config.get(key)):
                    raise UnsupportedModelError(f"{where}: backward layer differs in {key} "
                                                f"({config.get(key)!r} vs {backward.get(key)!r})")
        elif config["go_backwards"] and len(records) > 1:
            raise UnsupportedModelError(f"{where}: go_backwards=True in a stack of GRU layers is not supported; "
                                        f"import the layers one at a time with layer=")
        directions = [("", record["arrays"])] + ([("_reverse", record["backward_arrays"])] if bidirectional else [])
        for suffix, arrays in directions:
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            for name, array in zip(names, _torch_layout(arrays, config["reset_after"], config["use_bias"], where)):
                weights[f"{name}_l{layer}{suffix}"] = array
    config = configs[0]
    gate = _gate_activation(config, version, f"{source}: layer {first['name']!r}")
    spec = GRUSpec(
        input_size=weights["weight_ih_l0"].shape[1],
        hidden_size=weights["weight_hh_l0"].shape[1],
        num_layers=len(records),
        bidirectional=bidirectional,
        batch_first=True,
        bias=bool(config["use_bias"]),
        reset_after=bool(config["reset_after"]),
        gate_activation=gate,
        dtype=spec_dtype(*weights.values()),
    )
    last, last_config = records[-1], configs[-1]
    return KerasGRU(
        build_gru(spec, weights, source),
        return_sequences=last_config["return_sequences"],
        return_state=last_config["return_state"],
        go_backwards=last_config["go_backwards"] and not bidirectional,
        # Bidirectional forces zero_output_for_mask = return_sequences on both of its layers.
        zero_output_for_mask=last_config["return_sequences"] if bidirectional else last_config["zero_output_for_mask"],
        merge_mode=last["merge_mode"] if bidirectional else "concat",
        mask_value=mask_value,
    )
