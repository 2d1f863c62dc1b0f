"""Keras: whole models (Sequential, and functional models that form a single chain), a GRU or
Bidirectional(GRU) layer alone, in memory or from files.

`read_keras` describes a `fastgru.Model` that computes what ``model.predict`` computes; `read_keras_gru`
the GRU alone (``fastgru.GRU.from_keras``). Files are read with zipfile, h5py and json only (no Keras, no
TensorFlow):

- ``.keras`` (Keras 3): ``config.json`` (the model), ``metadata.json`` (``keras_version``) and
  ``model.weights.h5``, where each layer's variables are ``layers/<path>/vars/0, 1, ...`` in creation order
  (a GRU's under ``cell/``, a Bidirectional's under ``forward_layer/cell/`` and ``backward_layer/cell/``, a
  TimeDistributed's under ``layer/``). ``<path>`` comes from the class name and position (``gru``,
  ``gru_1``); each ``vars`` group records the layer's own name in its ``name`` attribute, which is how
  config entries are matched to arrays.
- ``.weights.h5`` (Keras 3 ``save_weights``): the same arrays without a config.
- legacy ``.h5`` (Keras 2 / tf.keras 2 ``model.save`` or ``save_weights``, and Keras 3 writing the legacy
  format): ``model_weights/<layer>`` (or the root, for weights-only files) with ``weight_names`` such as
  ``gru/gru_cell/kernel:0``; the root attribute ``model_config`` is the model's JSON and ``keras_version``
  says which Keras wrote it.

A file without a config (``save_weights``) holds no layer options: only its GRU layers can be imported,
with the defaults of the Keras that wrote the file (`gru_defaults`; options passed as keyword arguments
win), and a file with other layers' weights imports its GRU alone (``fastgru.GRU.from_keras``, or
``layer=``). Where the version does not settle a default that matters, the import is refused and the
error names the option to pass.

Keras' GRU layout: kernel (I, 3H) and recurrent_kernel (H, 3H) with gates z, r, h; bias (2, 3H) (input,
recurrent) when ``reset_after=True``, (3H,) on the input side when ``reset_after=False``. GRU layers that
feed each other with equal options run as one multi-layer `fastgru.GRU`. ``dropout``/``recurrent_dropout``
and the dropout and noise layers only act in training; ``unroll`` and ``use_cudnn`` do not change the
numbers.
"""

from __future__ import annotations

import json
import os
import re
import zipfile

import numpy as np

from fastgru.io.common import GRUDescription, UnsupportedModelError, replaced, spec_dtype, zrh_to_rzn
from fastgru.io.h5 import attribute_list, open_h5, text
from fastgru.io.keras_archive import read_keras_archive
from fastgru.spec import GRUSpec

_MERGE_MODES = ("concat", "sum", "ave", "mul", None)
_MASK_OPS = ("NotEqual", "Any")  # Keras 3 functional graphs spell out the mask computations as ops
_IDENTITY = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
             "ActivityRegularization", "Identity")
_RECURRENT = ("GRU", "Bidirectional")
_HEAD_CLASSES = ("Masking", "Embedding", "Dense", "Activation", "TimeDistributed", *_IDENTITY, "LayerNormalization",
                 "BatchNormalization", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Flatten")
SUPPORTED_LAYERS = ("InputLayer", "Masking", "Embedding", "GRU", "Bidirectional(GRU)", "Dense", "Activation",
                    "TimeDistributed(Dense)", *_IDENTITY, "LayerNormalization", "BatchNormalization",
                    "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Flatten")
_OVERRIDABLE = {"return_sequences", "return_state", "go_backwards", "zero_output_for_mask", "reset_after",
                "activation", "recurrent_activation", "use_bias", "merge_mode"}
_GRU_DEFAULTS = {
    "activation": "tanh", "use_bias": True, "return_sequences": False, "return_state": False,
    "go_backwards": False, "stateful": False, "zero_output_for_mask": False,
}


def read_keras(obj, *, layer=None, keras_version=None, **overrides):
    """``(config, arrays, source)``: the `fastgru.Model` description of a Keras model, layer or file.

    ``layer`` picks one GRU/Bidirectional layer by name (or by weights path such as ``"gru_1"`` in a
    weights-only file): the Model is then that layer alone, with its Keras calling conventions.
    ``keras_version`` overrides the version recorded in the file. Other keyword arguments override GRU
    options (``return_sequences``, ``reset_after``, ``recurrent_activation``, ``merge_mode``...), for
    weights-only files that have none.
    """
    found = _gather(obj, keras_version, overrides)
    if layer is not None:
        block = _block_of_one(found, layer)
        description, arrays = _recurrent_description(block, found.version, found.source)
        layers, layer_arrays = [description], [arrays]
    else:
        layers, layer_arrays = _whole_model(found)
    arrays = {}
    for index, named in enumerate(layer_arrays):
        arrays.update({f"layers.{index}.{key}": value for key, value in named.items()})
    return {"class": "Model", "convention": "keras", "name": found.name, "layers": layers}, arrays, found.source


def read_keras_gru(obj, *, layer=None, keras_version=None, **overrides):
    """The `GRUDescription` of the GRU alone: the one GRU/Bidirectional layer (or chain of GRU layers
    that feed each other) of ``obj``, or the layer named ``layer``. Other layers, and the options that
    only change how Keras calls the layer (``return_sequences``, masks, merge modes), are not part of a
    GRU; ``go_backwards=True`` is refused (a GRU reads its input forwards)."""
    found = _gather(obj, keras_version, overrides)
    if layer is not None:
        block = _block_of_one(found, layer)
    else:
        blocks = _blocks([r for r in found.records if r.get("recurrent") and "unsupported" not in r], found.version)
        if not blocks:
            raise ValueError(f"{found.source}: no GRU or Bidirectional(GRU) layer found")
        if len(blocks) > 1:
            names = [r["name"] for r in found.records if r.get("recurrent")]
            why = "that do not form one chain" if found.has_config else "and no model config to chain them"
            raise ValueError(f"{found.source}: {len(names)} GRU layers {why}; pass layer= one of {names}")
        block = blocks[0]
    spec, weights, options = _block_gru(block, found.version, found.source)
    if options["go_backwards"]:
        raise UnsupportedModelError(f"{found.source}: layer {block[0]['name']!r} has go_backwards=True, which a "
                                    f"fastgru.GRU cannot express (it reads the sequence forwards); "
                                    f"fastgru.Model.from_keras imports it with Keras' semantics")
    return GRUDescription(spec, weights, found.source)


def file_layers(path) -> dict:
    """What a Keras file records, read before any layer is converted (for reports such as ``fastgru
    inspect``, which also list the layers of a file that fastgru refuses): ``{"keras_version": str or None,
    "has_config": bool, "layers": [{"name", "class", "unsupported": None or why}, ...]}`` in the file's
    order, without InputLayer and the mask operations of a functional graph. ``unsupported`` judges the
    class only; a supported class may still be refused for an option (the importer's error says which)."""
    found = _gather_file(os.fspath(path))
    layers = []
    for record in found.records:
        kind, config = record["class_name"], record["config"]
        if kind in _MASK_OPS + ("InputLayer",):
            continue
        inner = config.get("layer", {}).get("class_name") if isinstance(config.get("layer"), dict) else None
        why = record.get("unsupported")
        if why is None and kind == "?":
            why = "weights without a config (their layer's class and options are not in the file)"
        elif why is None and kind == "Bidirectional" and found.has_config and inner != "GRU":
            why = f"Bidirectional({inner}) is not a layer fastgru imports"
        elif why is None and kind == "TimeDistributed" and inner not in ("Dense", "Activation", *_IDENTITY):
            why = f"TimeDistributed({inner}) is not a layer fastgru imports"
        elif why is None and kind not in _RECURRENT + _HEAD_CLASSES:
            why = f"{kind} is not a layer fastgru imports"
        shown = "unknown" if kind == "?" else kind if inner is None else f"{kind}({inner})"
        layers.append({"name": record["name"], "class": shown,
                       "unsupported": why})
    return {"keras_version": found.version, "has_config": found.has_config, "layers": layers}


def __getattr__(name):
    raise replaced(__name__, name, {
        "from_keras": "fastgru.Model.from_keras(obj) (Keras' calling convention) or fastgru.GRU.from_keras(obj) "
                      "(the GRU alone)",
        "KerasGRU": "fastgru.Model (fastgru.Model.from_keras and fastgru.load return one)"})


# --------------------------------------------------------------------------------------------------------
# Keras versions and the defaults they imply


def _version_parts(version):
    """(major, minor, patch, tf) of a keras_version such as '2.13.1', '2.2.4-tf', '3.0.0'; None if unknown."""
    if version is None:
        return None
    match = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(.*)$", str(version))
    if not match:
        return None
    major, minor, patch = (int(part) if part else 0 for part in match.groups()[:3])
    return major, minor, patch, "tf" in match.group(4)


def gru_defaults(version) -> dict:
    """The GRU defaults of the Keras that wrote a file: ``{"recurrent_activation", "reset_after"}``, each
    None where ``keras_version`` does not settle it (docs/sources.md cites the sources):

    - Keras before 2.3.0: ``hard_sigmoid`` (0.2x + 0.5) and ``reset_after=False`` (an option since 2.1.0);
    - Keras 2.3.x: ``sigmoid``, ``reset_after=False``;
    - tf.keras inside TensorFlow (``-tf`` versions): TensorFlow 1's GRU used ``hard_sigmoid`` and
      ``reset_after=False``, TensorFlow 2's ``sigmoid`` and ``reset_after=True``; ``2.2.4-tf`` was
      written by both, so it settles neither; older ``-tf`` versions are TensorFlow 1's;
    - 2.4.0 and later (tf.keras under TensorFlow 2, and Keras 2.4+, which is tf.keras), and Keras 3:
      ``sigmoid``, ``reset_after=True``.
    """
    parts = _version_parts(version)
    if parts is None:
        return {"recurrent_activation": None, "reset_after": None}
    major, minor, patch, tf = parts
    if major >= 3 or (major == 2 and minor >= 4):
        return {"recurrent_activation": "sigmoid", "reset_after": True}
    if tf:
        if (major, minor, patch) >= (2, 2, 4):
            return {"recurrent_activation": None, "reset_after": None}
        return {"recurrent_activation": "hard_sigmoid", "reset_after": False}
    if major == 2 and minor == 3:
        return {"recurrent_activation": "sigmoid", "reset_after": False}
    return {"recurrent_activation": "hard_sigmoid", "reset_after": False}


def _hard_sigmoid(version, where) -> str:
    """fastgru's name for what ``hard_sigmoid`` meant in the Keras that wrote the model."""
    parts = _version_parts(version)
    if parts is None:
        raise ValueError(f"{where}: 'hard_sigmoid' means 0.2x+0.5 in Keras 2 and x/6+0.5 in Keras 3, and the file "
                         f"records no keras_version; pass keras_version='2' or '3'")
    return "hard_sigmoid" if parts[0] >= 3 else "hard_sigmoid_keras2"


def _activation_name(value) -> str:
    if isinstance(value, dict):  # {"class_name": "function", "config": "tanh", ...} in some Keras 3 versions
        value = value.get("config") if isinstance(value.get("config"), str) else value.get("registered_name", value)
    return "linear" if value is None else str(value)


def _head_activation(value, version, where) -> str:
    from fastgru import activations

    name = _activation_name(value)
    if name == "hard_sigmoid":
        return _hard_sigmoid(version, where)
    try:
        return activations.check_activation(name)
    except ValueError:
        raise UnsupportedModelError(f"{where}: activation={name!r} is not a built-in Keras activation fastgru "
                                    f"implements ({', '.join(sorted(activations.ACTIVATIONS))})") from None


# --------------------------------------------------------------------------------------------------------
# Gathering: every source ends as a list of records, one per layer of the model's config, in order:
#   {"class_name", "name", "config", "inbound", "mask_from", "vars"}
# where vars maps a sub-path ("" for the layer's own variables, "cell", "forward_layer/cell", "layer") to
# a list of (array, label) in creation order, or "*" to the legacy (name, array, label) list. GRU layers
# also get the "recurrent" fields used by _block_gru.


class _Found:
    def __init__(self, source, name, records, version, sequential, has_config):
        self.source, self.name, self.records, self.version = source, name, records, version
        self.sequential, self.has_config = sequential, has_config


def _gather(obj, keras_version, overrides):
    unknown = set(overrides) - _OVERRIDABLE
    if unknown:
        raise TypeError(f"from_keras got unknown option(s) {sorted(unknown)}; GRU options that may be "
                        f"overridden: {sorted(_OVERRIDABLE)}")
    if isinstance(obj, (str, os.PathLike)):
        found = _gather_file(os.fspath(obj))
    else:
        found = _gather_object(obj)
    if keras_version is not None:
        found.version = str(keras_version)
    for record in found.records:
        if record["class_name"] in _RECURRENT and "unsupported" not in record:
            _recurrent_record(record, found.source, overrides)
    _link(found)
    return found


def _link(found):
    """Sets ``_after`` on each record: the layer before it on the data path (None at the start), so that
    GRU layers that feed each other can run as one multi-layer GRU. Weights-only files have no config to
    say how their layers connect: nothing is linked."""
    previous = None
    for record in found.records:
        if record["class_name"] in _MASK_OPS:
            continue
        if not found.has_config:
            record["_after"] = None
            continue
        if record["class_name"] == "InputLayer":
            previous = record["name"]
            continue
        record["_after"] = previous if found.sequential else record.get("inbound")
        if isinstance(record["_after"], tuple):
            record["_after"] = None
        previous = record["name"]


def _gather_object(obj):
    """Records from an in-memory Keras layer or model (configs via get_config, arrays via the variables)."""
    import keras

    version = keras.__version__
    if isinstance(obj, (keras.layers.GRU, keras.layers.Bidirectional)):
        entry = {"class_name": type(obj).__name__, "config": obj.get_config()}
        records = _records_of({"class_name": entry["class_name"], "config": entry["config"]}, obj.name)
        records[0]["vars"] = _object_vars(obj)
        return _Found(obj.name, obj.name, records, version, True, True)
    if not isinstance(obj, keras.Model):
        raise TypeError(f"from_keras expects a keras GRU/Bidirectional layer, a Model or a path, "
                        f"got {type(obj).__name__}")
    config = {"class_name": type(obj).__name__, "config": obj.get_config()}
    records = _records_of(config, obj.name)
    for record in records:
        if record["class_name"] not in _MASK_OPS + ("InputLayer",) and "unsupported" not in record:
            record["vars"] = _object_vars(obj.get_layer(record["name"]))
    return _Found(obj.name, obj.name, records, version, config["class_name"] == "Sequential", True)


def _object_vars(layer) -> dict:
    import keras

    def own(saveable, label):
        store = {}
        saveable.save_own_variables(store)
        return [(keras.ops.convert_to_numpy(store[key]), f"{label}/{key}") for key in sorted(store, key=int)]

    parts = {"": layer}
    if isinstance(layer, keras.layers.Bidirectional):
        parts = {"forward_layer/cell": layer.forward_layer.cell, "backward_layer/cell": layer.backward_layer.cell}
    elif isinstance(layer, keras.layers.RNN):
        if not layer.built:
            raise ValueError(f"{layer.name}: the layer has no weights yet (build it or call it once first)")
        parts = {"cell": layer.cell}
    elif isinstance(layer, keras.layers.TimeDistributed):
        parts = {"layer": layer.layer}
    return {path: own(part, f"{layer.name}/{path}".rstrip("/")) for path, part in parts.items()}


def _gather_file(path):
    """Records from a .keras archive, a Keras 3 .weights.h5 or a legacy .h5."""
    if path.endswith(".keras") or zipfile.is_zipfile(path):
        config, metadata, weights = read_keras_archive(path)
        label = f"{path}:model.weights.h5"
        with open_h5(weights, label) as store:
            records = _records_of(config, path)
            groups = _store_groups(store)
            counts = {}
            for record in records:
                if record["class_name"] in _MASK_OPS + ("InputLayer",):
                    continue
                # The store names a layer by its class and position among layers of that class: gru, gru_1, ...
                base = _snake(str(record["class_name"]))
                counts[base] = counts.get(base, -1) + 1
                record["expected_path"] = base if counts[base] == 0 else f"{base}_{counts[base]}"
                _attach_store_vars(record, groups, label)
        name = config.get("config", {}).get("name", path) if isinstance(config.get("config"), dict) else path
        return _Found(path, name, records, metadata.get("keras_version", "3"), config.get("class_name") == "Sequential",
                      True)
    with open_h5(path, path) as store:
        root = store["model_weights"] if "model_weights" in store else store
        if attribute_list(root, "layer_names"):  # the legacy format (Keras 1/2, tf.keras 2, or Keras 3 writing .h5)
            version = text(store.attrs.get("keras_version", root.attrs.get("keras_version", ""))) or None
            if "model_config" in store.attrs:
                try:
                    config = json.loads(text(store.attrs["model_config"]))
                except ValueError as error:
                    raise ValueError(f"{path}: the model_config attribute is not JSON ({error})") from None
                records = _records_of(config, path)
                for record in records:
                    _attach_legacy_vars(record, root, path)
                name = config.get("config", {}).get("name", path) if isinstance(config.get("config"), dict) else path
                return _Found(path, name, records, version, config.get("class_name") == "Sequential", True)
            return _Found(path, path, _legacy_weight_records(root, path), version, True, False)
        if "layers" in store or "vars" in store:
            return _Found(path, path, _store_weight_records(store, path), "3", True, False)
    raise ValueError(f"{path}: an HDF5 file with neither Keras 3 weights ('layers/...') nor legacy Keras weights "
                     f"('layer_names')")


def _records_of(model_config, source):
    """The layers of a model config, in order, with their inbound layer and mask source (functional)."""
    if not isinstance(model_config, dict):
        raise ValueError(f"{source}: the model config is not a JSON object")
    class_name, config = model_config.get("class_name"), model_config.get("config")
    if class_name in _RECURRENT:
        entries = [model_config]
    elif isinstance(config, list):  # Keras < 2.2.3 Sequential
        entries = config
    elif isinstance(config, dict) and isinstance(config.get("layers"), list):
        entries = config["layers"]
        if class_name != "Sequential":
            _check_single_io(config, source)
    else:
        raise UnsupportedModelError(f"{source}: top-level object is a {class_name}, not a model or a GRU layer")
    records = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("config", {}), dict):
            raise ValueError(f"{source}: a layer entry of the model config is not a JSON object: {str(entry)[:200]}")
        kind, config = entry.get("class_name"), entry.get("config", {})
        name = entry.get("name", config.get("name"))
        if not isinstance(kind, str) or not isinstance(name, str):
            raise ValueError(f"{source}: a layer entry of the model config has no class_name or name: "
                             f"{str(entry)[:200]}")
        record = {"class_name": kind, "name": name, "config": dict(config), "vars": None}
        record["inbound"], record["mask_from"], record["tensor_kwargs"] = _inbound(entry)
        registered = entry.get("registered_name")
        if (isinstance(registered, str) and ">" in registered) or str(entry.get("module", "keras")).split(".")[0] \
                not in ("keras", "tensorflow", "tf_keras"):
            record["unsupported"] = f"custom class {registered or kind!r}"
        records.append(record)
    return records


def _check_single_io(config, source):
    for key in ("input_layers", "output_layers"):
        value = config.get(key) or []
        tensors = [value] if value and isinstance(value[0], str) else value
        if len(tensors) != 1:
            raise UnsupportedModelError(f"{source}: the model has {len(tensors)} {key.split('_')[0]}s; fastgru imports "
                                        f"models with one input and one output (a single chain)")


def _inbound(entry):
    """(the layer feeding ``entry``, the layer its ``mask=`` argument comes from, other tensor arguments) in
    a functional config, Keras 3 or Keras 2 spelling; ("shared", n) when the layer is called n > 1 times,
    ("several", n) when a call takes n tensors."""
    nodes = entry.get("inbound_nodes") or []
    if not nodes:
        return None, None, []
    if len(nodes) > 1:
        return ("shared", len(nodes)), None, []
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        tensors = [_history(arg) for arg in node.get("args", []) if _history(arg)]
        kwargs = node.get("kwargs", {}) or {}
        mask = _history(kwargs.get("mask"))
        others = [key for key, value in kwargs.items() if key != "mask" and _history(value)]
        if any(isinstance(arg, list) for arg in node.get("args", [])):
            return ("several", sum(len(a) for a in node["args"] if isinstance(a, list))), mask, others
    else:  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        tensors = [item[0] for item in node if isinstance(item, list) and item and isinstance(item[0], str)]
        mask = None
        others = []
    if len(tensors) != 1:
        return ("several", len(tensors)), mask, others
    return tensors[0], mask, others


def _history(value):
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = value.get("config", {}).get("keras_history")
        return history[0] if history else None
    return None


def _store_groups(store):
    """{layer path: group} for the Keras 3 weights store's top-level layers."""
    layers = store.get("layers")
    return dict(layers.items()) if layers is not None else {}


def _vars_lists(group, label):
    """{sub-path: [(array, label), ...]} for every ``vars`` group under a layer's group."""
    found = {}

    def visit(name, item):
        if name == "vars" or name.endswith("/vars"):
            indices = sorted((key for key in item if key.isdigit()), key=int)
            found[name[: -len("vars")].rstrip("/")] = [(item[key][()], item[key].name) for key in indices]

    if "vars" in group:
        visit("vars", group["vars"])
    group.visititems(visit)
    return {path: arrays for path, arrays in found.items() if arrays}


def _snake(kind):
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", kind).lower()


def _attach_store_vars(record, groups, label):
    if "unsupported" in record:
        return
    named = [path for path, group in groups.items()
             if text(group.get("vars", group).attrs.get("name", "")) == record["name"]]
    path = named[0] if named else record["expected_path"]  # older files lack the vars 'name' attribute
    record["path"] = path
    record["vars"] = _vars_lists(groups[path], label) if path in groups else {}
    if path not in groups:
        record["missing_group"] = f"layers/{path}"


def _attach_legacy_vars(record, root, label):
    if "unsupported" in record or record["class_name"] in _MASK_OPS + ("InputLayer",):
        return
    if record["name"] not in root:
        record["vars"] = {"*": []}
        record["missing_group"] = f"{root.name}/{record['name']}"
        return
    group = root[record["name"]]
    entries = []
    for name in attribute_list(group, "weight_names"):
        if name not in group:
            raise ValueError(f"{label}: missing tensor {group.name}/{name}")
        entries.append((name, group[name][()], f"{group.name}/{name}"))
    record["vars"] = {"*": entries}


def _legacy_weight_records(root, label):
    """Records from a legacy weights-only .h5 (``layer_names`` order): the GRU layers (told by their
    recurrent kernels) and, for the messages, the other layers with weights."""
    records = []
    for name in attribute_list(root, "layer_names"):
        weight_names = attribute_list(root[name], "weight_names")
        if not weight_names:
            continue
        record = {"name": name, "class_name": "?", "config": {}, "inbound": None, "mask_from": None,
                  "tensor_kwargs": []}
        _attach_legacy_vars(record, root, label)
        if not any(n.split(":")[0].endswith("recurrent_kernel") for n in weight_names):
            records.append({**record, "class_name": "?", "weights_only": weight_names})
            continue
        forward = [n for n in weight_names if "forward" in n.rsplit("/", 1)[0]]
        backward = [n for n in weight_names if "backward" in n.rsplit("/", 1)[0]]
        bidirectional = (forward and backward and len(forward) + len(backward) == len(weight_names)) or \
            (not forward and len(weight_names) in (4, 6) and
             sum(n.split(":")[0].endswith("recurrent_kernel") for n in weight_names) == 2)
        records.append({**record, "class_name": "Bidirectional" if bidirectional else "GRU",
                        "config": {"layer": {"class_name": "GRU", "config": {}}} if bidirectional else {}})
    return records


def _store_weight_records(store, label):
    """Records from a Keras 3 .weights.h5 without a config: its GRU layers and, for the messages, the others."""
    records = []
    for path, group in _store_groups(store).items():
        name = text(group.get("vars", group).attrs.get("name", path))
        record = {"name": name, "path": path, "inbound": None, "mask_from": None, "tensor_kwargs": [],
                  "vars": _vars_lists(group, label)}
        if "forward_layer" in group and "backward_layer" in group:
            records.append({**record, "class_name": "Bidirectional",
                            "config": {"layer": {"class_name": "GRU", "config": {}}}})
        elif "cell" in group:
            records.append({**record, "class_name": "GRU", "config": {}})
        elif record["vars"]:
            records.append({**record, "class_name": "?", "config": {},
                            "weights_only": [f"{path}/{p or 'vars'}" for p in record["vars"]]})
    return records


# --------------------------------------------------------------------------------------------------------
# Variables by name


def _named(record, expected: dict, where) -> dict:
    """{sub-path: {name: (array, label)}} from a record's variables, given the names each sub-path holds in
    creation order (``expected``), which is the order Keras writes them in, in both formats."""
    variables = record.get("vars") or {}
    if "missing_group" in record and any(expected.values()):
        raise ValueError(f"{where}: no weights for the layer (expected group {record['missing_group']})")
    if "*" in variables:  # legacy: one flat list of named weights, sub-paths in Keras' order
        entries = variables["*"]
        wanted = [(path, name) for path, names in expected.items() for name in names]
        if len(entries) != len(wanted):
            raise ValueError(f"{where}: {len(entries)} weights {[e[0] for e in entries]}, expected "
                             f"{[name for _, name in wanted]}")
        out = {path: {} for path in expected}
        known = {name for _, name in wanted}
        for (path, name), (weight_name, array, label) in zip(wanted, entries):
            key = weight_name.rsplit("/", 1)[-1].split(":")[0]
            if key != name and key in known:
                raise ValueError(f"{where}: weight {weight_name!r} stands where Keras writes {name!r}")
            out[path][name] = (array, label)
        return out
    out = {}
    for path, names in expected.items():
        arrays = variables.get(path, [])
        if len(arrays) != len(names):
            where_path = f"{path}/vars" if path else "vars"
            raise ValueError(f"{where}: {len(arrays)} variables under {where_path}, expected {len(names)} ({names})")
        out[path] = dict(zip(names, arrays))
    return out


# --------------------------------------------------------------------------------------------------------
# GRU layers


def _recurrent_record(record, source, overrides):
    """Adds the fields the GRU conversion needs: forward/backward configs (with ``overrides`` applied) and
    arrays, merge mode."""
    where = f"{source}: layer {record['name']!r}"
    config = record["config"]
    options = {key: value for key, value in overrides.items() if key != "merge_mode"}
    if record["class_name"] == "GRU":
        forward, backward, merge_mode = {**config, **options}, None, None
        paths = ("cell",)
    else:
        inner = config.get("layer", {})
        if inner.get("class_name") != "GRU":
            record["unsupported"] = f"Bidirectional({inner.get('class_name')})"
            return
        backward_layer = config.get("backward_layer")
        if backward_layer is not None and backward_layer.get("class_name") != "GRU":
            raise UnsupportedModelError(f"{where}: Bidirectional has a backward "
                                        f"{backward_layer.get('class_name')}, not a GRU")
        forward = {**inner.get("config", {}), **options}
        backward = {**(backward_layer["config"] if backward_layer else {**forward, "go_backwards": True}), **options}
        merge_mode = overrides.get("merge_mode", config.get("merge_mode", "concat"))
        paths = ("forward_layer/cell", "backward_layer/cell")
    record.update(recurrent=True, config=forward, backward_config=backward, merge_mode=merge_mode,
                  arrays=None, backward_arrays=None)
    if record.get("vars") is None:
        return  # a config entry whose weights are not there: reported when the layer is built
    for direction in (forward, backward):
        if direction is not None and "use_bias" not in direction:  # weights-only files: the variables say
            direction["use_bias"] = _stored_count(record, paths) == 3
    parts = {paths[0]: _cell_names(forward)}
    if backward is not None:
        parts[paths[1]] = _cell_names(backward)
    named = _named(record, parts, where)
    record["arrays"] = named[paths[0]]
    record["backward_arrays"] = named[paths[1]] if backward is not None else None


def _stored_count(record, paths) -> int:
    """How many variables one direction of a GRU record has in the file (3 with a bias, 2 without)."""
    variables = record["vars"]
    if "*" in variables:
        return len(variables["*"]) // len(paths)
    return len(variables.get(paths[0], []))


def _cell_names(config):
    return ["kernel", "recurrent_kernel"] + (["bias"] if config.get("use_bias", True) else [])


def _resolved(record, version, where):
    """The record's GRU config with the defaults of the Keras that wrote it filled in."""
    config = {**_GRU_DEFAULTS, **record["config"]}
    defaults = gru_defaults(version)
    if "reset_after" not in config:  # absent in Keras < 2.1 configs and in weights-only files: the bias says
        bias = record["arrays"].get("bias")
        if bias is not None:
            config["reset_after"] = bias[0].ndim == 2
        elif defaults["reset_after"] is not None:
            config["reset_after"] = defaults["reset_after"]
        else:
            raise ValueError(f"{where}: the layer has no bias and the file records neither reset_after nor a "
                             f"keras_version that settles its default (tf.keras under TensorFlow 1 used False, "
                             f"under TensorFlow 2 True); pass reset_after=True or reset_after=False")
    if "recurrent_activation" not in config:
        if defaults["recurrent_activation"] is None:
            raise ValueError(f"{where}: the file records no recurrent_activation, and its keras_version {version!r} "
                             f"does not settle the default (hard_sigmoid before Keras 2.3 and in tf.keras under "
                             f"TensorFlow 1, sigmoid later); pass recurrent_activation='sigmoid' or 'hard_sigmoid'")
        config["recurrent_activation"] = defaults["recurrent_activation"]
    return config


def _gate_activation(config, version, where) -> str:
    name = _activation_name(config.get("recurrent_activation"))
    if name == "sigmoid":
        return "sigmoid"
    if name == "hard_sigmoid":
        return _hard_sigmoid(version, where)
    raise UnsupportedModelError(f"{where}: recurrent_activation={name!r} is not supported (sigmoid or hard_sigmoid)")


def _check_gru_config(config, where) -> None:
    activation = _activation_name(config.get("activation", "tanh"))
    if activation != "tanh":
        raise UnsupportedModelError(f"{where}: activation={activation!r} is not supported (only 'tanh')")
    for key in ("stateful", "time_major"):
        if config.get(key):
            raise UnsupportedModelError(f"{where}: {key}={config[key]!r} is not supported")
    _check_dtype(config, where)


def _check_dtype(config, where):
    policy = config.get("dtype")
    if isinstance(policy, dict):
        policy = policy.get("config", {}).get("name", policy.get("class_name"))
    if policy is not None and policy not in ("float32", "float64"):
        raise UnsupportedModelError(f"{where}: dtype policy {policy!r} is not supported (float32 or float64)")


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


_KEY_FIELDS = ("units", "activation", "recurrent_activation", "use_bias", "reset_after")


def _options(record, version, source):
    """(resolved forward config, the layer's Keras call options), checking what fastgru supports."""
    where = f"{source}: layer {record['name']!r}"
    if record.get("arrays") is None:
        raise ValueError(f"{where}: no weights for the layer in the file")
    config = _resolved(record, version, where)
    _check_gru_config(config, where)
    if record["class_name"] == "Bidirectional":
        if record["merge_mode"] not in _MERGE_MODES:
            raise UnsupportedModelError(f"{where}: merge_mode={record['merge_mode']!r} is not supported")
        backward = {**config, **record["backward_config"]}
        if config["go_backwards"] or not backward.get("go_backwards"):
            raise UnsupportedModelError(f"{where}: Bidirectional with forward go_backwards={config['go_backwards']!r} "
                                        f"and backward go_backwards={backward.get('go_backwards')!r} is not supported")
        for key in _KEY_FIELDS + ("return_sequences",):
            if _activation_name(backward.get(key)) != _activation_name(config.get(key)):
                raise UnsupportedModelError(f"{where}: backward layer differs in {key} "
                                            f"({config.get(key)!r} vs {backward.get(key)!r})")
    return config


def _joins(previous, record, previous_config, config):
    """Whether ``record`` continues the multi-layer GRU that ``previous`` belongs to."""
    if record["class_name"] != previous["class_name"]:
        return False
    if any(_activation_name(config.get(k)) != _activation_name(previous_config.get(k)) for k in _KEY_FIELDS):
        return False
    if not previous_config["return_sequences"] or previous_config["return_state"]:
        return False
    if record["class_name"] == "Bidirectional":
        return previous["merge_mode"] == "concat"
    return not previous_config["go_backwards"] and not config["go_backwards"]


def _blocks(records, version):
    """Runs of GRU records that feed each other (``_after``) with equal options: one multi-layer GRU each."""
    blocks = []
    for record in records:
        if blocks and record.get("_after") == blocks[-1][-1]["name"]:
            previous = blocks[-1][-1]
            try:
                joins = _joins(previous, record, _resolved(previous, version, ""), _resolved(record, version, ""))
            except ValueError:  # a config fastgru refuses: the error comes, with the layer named, when it is built
                joins = False
            if joins:
                blocks[-1].append(record)
                continue
        blocks.append([record])
    return blocks


def _block_of_one(found, layer):
    recurrent = [r for r in found.records if r.get("recurrent") and "unsupported" not in r]
    chosen = [r for r in recurrent if r["name"] == layer] or [r for r in recurrent if r.get("path") == layer]
    if not chosen:
        raise ValueError(f"{found.source}: no GRU layer named {layer!r}; GRU layers: {[r['name'] for r in recurrent]}")
    return [chosen[0]]


def _block_gru(block, version, source):
    """(spec, weights, call options) of one run of GRU records."""
    first = block[0]
    bidirectional = first["class_name"] == "Bidirectional"
    configs = [_options(record, version, source) for record in block]
    weights = {}
    for layer, (record, config) in enumerate(zip(block, configs)):
        where = f"{source}: layer {record['name']!r}"
        directions = [("", record["arrays"])] + ([("_reverse", record["backward_arrays"])] if bidirectional else [])
        for suffix, arrays in directions:
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            for name, array in zip(names, _torch_layout(arrays, config["reset_after"], config["use_bias"], where)):
                weights[f"{name}_l{layer}{suffix}"] = array
    config = configs[0]
    spec = GRUSpec(
        input_size=weights["weight_ih_l0"].shape[1],
        hidden_size=weights["weight_hh_l0"].shape[1],
        num_layers=len(block),
        bidirectional=bidirectional,
        batch_first=True,
        bias=bool(config["use_bias"]),
        reset_after=bool(config["reset_after"]),
        gate_activation=_gate_activation(config, version, f"{source}: layer {first['name']!r}"),
        dtype=spec_dtype(*weights.values()),
    )
    last, last_config = block[-1], configs[-1]
    options = {
        "keras_layers": [record["name"] for record in block],
        "return_sequences": bool(last_config["return_sequences"]),
        "return_state": bool(last_config["return_state"]),
        "go_backwards": bool(last_config["go_backwards"]) and not bidirectional,
        # Bidirectional forces zero_output_for_mask = return_sequences on both of its layers.
        "zero_output_for_mask": bool(last_config["return_sequences"] if bidirectional
                                     else last_config["zero_output_for_mask"]),
        "merge_mode": last["merge_mode"] if bidirectional else "concat",
    }
    return spec, weights, options


def _recurrent_description(block, version, source):
    spec, weights, options = _block_gru(block, version, source)
    gru = {"class": "GRU", "spec": spec.to_dict(), "weight_format": spec.dtype}
    return {"class": "KerasGRU", "name": block[0]["name"], "config": {"gru": gru, **options}}, weights


# --------------------------------------------------------------------------------------------------------
# Whole models: the chain, masks, and every other layer


def _whole_model(found):
    source = found.source
    if not found.has_config:
        return _weights_only_model(found)
    chain = _chain(found)
    if not any(r["class_name"] in _RECURRENT for r in chain):
        raise ValueError(f"{source}: no GRU or Bidirectional(GRU) layer found "
                         f"(layers: {[r['name'] for r in chain]})")
    descriptions, arrays = [], []
    masked = False  # whether a mask reaches the layer, by Keras' propagation rules
    index = 0
    while index < len(chain):
        record = chain[index]
        if record["class_name"] not in _RECURRENT:
            _check_mask_argument(record, masked, source)
            description, weights, masked = _head(record, found.version, source, masked)
            descriptions.append(description)
            arrays.append(weights)
            index += 1
            continue
        run = [record]
        while index + len(run) < len(chain) and chain[index + len(run)]["class_name"] in _RECURRENT:
            run.append(chain[index + len(run)])
        for block in _blocks(run, found.version):
            _check_mask_argument(block[0], masked, source)
            description, weights = _recurrent_description(block, found.version, source)
            descriptions.append(description)
            arrays.append(weights)
            masked = masked and description["config"]["return_sequences"]
        index += len(run)
    return descriptions, arrays


def _check_mask_argument(record, masked, source):
    """A Keras 3 graph records the mask each layer was called with; one that Keras' propagation from
    Masking / Embedding(mask_zero=True) does not explain was passed explicitly: a second input."""
    if record.get("mask_from") is not None and not masked:
        raise UnsupportedModelError(f"{source}: layer {record['name']!r} is called with an explicit mask= (from "
                                    f"{record['mask_from']!r}); fastgru takes masks from Masking and "
                                    f"Embedding(mask_zero=True) only, as Keras propagates them")


def _chain(found):
    """The model's layers on its data path, in order, checked to form a single chain; InputLayer and the
    mask computations dropped (fastgru derives the masks as Keras does)."""
    source = found.source
    chain, previous = [], None
    for record in found.records:
        kind = record["class_name"]
        if kind in _MASK_OPS:
            continue
        if kind == "InputLayer":
            previous = record["name"]
            continue
        if "unsupported" in record or kind not in _RECURRENT + _HEAD_CLASSES:
            _unsupported(record, source)
        inbound = record.get("inbound")
        if isinstance(inbound, tuple):
            what = "is called on several inputs" if inbound[0] == "several" else f"is shared ({inbound[1]} calls)"
            raise UnsupportedModelError(f"{source}: layer {record['name']!r} {what}; fastgru imports single "
                                        f"chains of layers")
        if record.get("tensor_kwargs"):
            raise UnsupportedModelError(f"{source}: layer {record['name']!r} takes tensors as "
                                        f"{record['tensor_kwargs']}; fastgru imports single chains of layers")
        if not found.sequential and inbound != previous:
            raise UnsupportedModelError(f"{source}: layer {record['name']!r} takes its input from {inbound!r}, not "
                                        f"from the layer before it ({previous!r}); only a single chain imports")
        chain.append(record)
        previous = record["name"]
    if not found.sequential:
        consumers = {}
        for record in found.records:
            if record["class_name"] not in _MASK_OPS and isinstance(record.get("inbound"), str):
                consumers.setdefault(record["inbound"], []).append(record["name"])
        for name, users in consumers.items():
            if len(users) > 1:
                raise UnsupportedModelError(f"{source}: the output of {name!r} feeds {users}; fastgru imports single "
                                            f"chains of layers")
    return chain


def _unsupported(record, source):
    what = record.get("unsupported") or record["class_name"]
    raise UnsupportedModelError(f"{source}: layer {record['name']!r} is a {what}, which fastgru does not import; "
                                f"supported layers: {', '.join(SUPPORTED_LAYERS)}")


def _weights_only_model(found):
    source = found.source
    others = [r for r in found.records if r["class_name"] == "?"]
    grus = [r for r in found.records if r.get("recurrent")]
    if not grus:
        raise ValueError(f"{source}: no GRU or Bidirectional(GRU) layer found")
    if others:
        raise UnsupportedModelError(
            f"{source}: a weights-only file (no model config): layers {[r['name'] for r in others]} have weights but "
            f"no options (their activation is unknown), so the whole model cannot be rebuilt; "
            f"fastgru.GRU.from_keras(path) imports the GRU alone, layer= one GRU layer "
            f"({[r['name'] for r in grus]}), or load the file model.save() wrote")
    if len(grus) > 1:
        raise ValueError(f"{source}: {len(grus)} GRU layers and no model config to chain them; pass layer= one of "
                         f"{[r['name'] for r in grus]}")
    description, weights = _recurrent_description(grus, found.version, source)
    return [description], [weights]


def _head(record, version, source, masked):
    """(description, arrays, masked after) of a non-recurrent layer; ``masked`` says whether a mask reaches
    it (Keras' propagation: supports_masking layers pass it, the others drop it)."""
    kind, config, name = record["class_name"], record["config"], record["name"]
    where = f"{source}: layer {name!r}"
    _check_dtype(config, where)
    if kind == "Masking":
        return _describe("Masking", name, {"mask_value": float(config.get("mask_value", 0.0))}), {}, True
    if kind == "Embedding":
        for key in ("lora_rank",):
            if config.get(key):
                raise UnsupportedModelError(f"{where}: {key}={config[key]!r} is not supported")
        mask_zero = bool(config.get("mask_zero", False))
        (embeddings, label), = _named(record, {"": ["embeddings"]}, where)[""].values()
        dims = (config.get("input_dim"), config.get("output_dim"))
        if embeddings.ndim != 2 or (None not in dims and tuple(embeddings.shape) != dims):
            raise ValueError(f"{where}: tensor {label!r} has shape {embeddings.shape}, expected {dims}")
        return _describe("Embedding", name, {"mask_zero": mask_zero}), {"embeddings": embeddings}, mask_zero
    if kind == "Dense":
        description, arrays = _dense(record, config, version, where, "")
        return description, arrays, masked
    if kind == "TimeDistributed":
        inner = config.get("layer", {})
        inner_kind, inner_config = inner.get("class_name"), inner.get("config", {})
        if inner_kind == "Dense":
            inner_description, inner_arrays = _dense(record, inner_config, version, where, "layer")
        elif inner_kind == "Activation":
            inner_description = _describe("Activation", inner_config.get("name", "activation"),
                                          {"activation": _head_activation(inner_config.get("activation"), version,
                                                                          where)})
            inner_arrays = {}
        elif inner_kind in _IDENTITY:
            inner_description, inner_arrays = _describe("Identity", inner_config.get("name", inner_kind),
                                                         {"keras_class": inner_kind}), {}
        else:
            raise UnsupportedModelError(f"{where} is a TimeDistributed({inner_kind}), which fastgru does not import; "
                                        f"supported layers: {', '.join(SUPPORTED_LAYERS)}")
        arrays = {f"layer.{key}": value for key, value in inner_arrays.items()}
        return _describe("TimeDistributed", name, {"layer": inner_description}), arrays, masked
    if kind == "Activation":
        return _describe("Activation", name, {"activation": _head_activation(config.get("activation"), version,
                                                                              where)}), {}, masked
    if kind in _IDENTITY:
        return _describe("Identity", name, {"keras_class": kind}), {}, masked
    if kind == "LayerNormalization":
        # Keras 3 makes no beta with rms_scaling (and the option does not exist before it).
        scale, center = config.get("scale", True), config.get("center", True) and not config.get("rms_scaling")
        names = (["gamma"] if scale else []) + (["beta"] if center else [])
        arrays = {key: value for key, (value, _) in _named(record, {"": names}, where)[""].items()}
        axis = config.get("axis", -1)
        options = {"axis": axis if isinstance(axis, int) else list(axis), "epsilon": float(config.get("epsilon", 1e-3)),
                   "rms_scaling": bool(config.get("rms_scaling", False))}
        return _describe("LayerNormalization", name, options), arrays, masked
    if kind == "BatchNormalization":
        if config.get("renorm"):
            raise UnsupportedModelError(f"{where}: renorm=True is not supported")
        axis = config.get("axis", -1)
        if isinstance(axis, list):
            if len(axis) != 1:
                raise UnsupportedModelError(f"{where}: axis={axis!r} (several axes) is not supported")
            axis = axis[0]
        scale, center = config.get("scale", True), config.get("center", True)
        names = (["gamma"] if scale else []) + (["beta"] if center else []) + ["moving_mean", "moving_variance"]
        arrays = {key: value for key, (value, _) in _named(record, {"": names}, where)[""].items()}
        options = {"axis": int(axis), "epsilon": float(config.get("epsilon", 1e-3))}
        return _describe("BatchNormalization", name, options), arrays, masked
    if kind in ("GlobalAveragePooling1D", "GlobalMaxPooling1D"):
        options = {"data_format": config.get("data_format") or "channels_last",
                   "keepdims": bool(config.get("keepdims"))}
        return _describe(kind, name, options), {}, False
    if kind == "Flatten":
        return _describe("Flatten", name, {"data_format": config.get("data_format") or "channels_last"}), {}, False
    return _unsupported(record, source)


def _dense(record, config, version, where, path):
    for key in ("lora_rank", "quantization_config"):
        if config.get(key):
            raise UnsupportedModelError(f"{where}: {key}={config[key]!r} is not supported")
    use_bias = config.get("use_bias", True)
    named = _named(record, {path: ["kernel"] + (["bias"] if use_bias else [])}, where)[path]
    kernel, label = named["kernel"]
    units = config.get("units")
    if kernel.ndim != 2 or (units is not None and kernel.shape[1] != units):
        raise ValueError(f"{where}: tensor {label!r} has shape {kernel.shape}, expected (input_dim, {units})")
    arrays = {key: value for key, (value, _) in named.items()}
    activation = _head_activation(config.get("activation"), version, where)
    name = config.get("name", record["name"]) if path else record["name"]
    return _describe("Dense", name, {"activation": activation}), arrays


def _describe(class_name, name, config):
    return {"class": class_name, "name": name, "config": config}
