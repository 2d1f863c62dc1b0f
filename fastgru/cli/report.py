"""``fastgru inspect``: what fastgru reads in a file, as a dict (``--json``) and as text.

The facts about the model come from the importer's description (`fastgru.io.load.describe`), read before
anything is built; the memory figures from the model built from it (``packed_bytes``, the core's own
count, and the arrays fastgru keeps), float and int8; what fastgru refuses from fastgru itself (the
importer's error for a refused file, the error of ``stream`` or ``quantize`` where those are refused).
docs/cli.md lists the keys.
"""

from __future__ import annotations

import numpy as np

from fastgru.cli.source import Source, one_line

_RECURRENT = ("KerasGRU", "OnnxGRU")
_CALLS = {
    "torch": "gru(x, h0=None, lengths=None, mask=None) -> (output, h_n), torch.nn.GRU's shapes",
    "keras": "model(x, mask=None, initial_state=None): what keras_model.predict(x) returns, batch-first",
    "onnx": "model(X, sequence_lens=None, initial_h=None) -> (Y, Y_h), the ONNX node's shapes",
}


def inspect(source: Source) -> dict:
    """The report of `source` (see docs/cli.md for its keys)."""
    import fastgru
    from fastgru.benchmark.machine import kernel_table

    report = {"file": source.path, "format": source.format, "fastgru_version": fastgru.__version__,
              "status": "refused" if source.refused else "ok", "refused": source.refused, "object": None,
              "convention": None, "call": None, "layers": [], "grus": [], "masks": [], "heads": [],
              "parameters": None, "memory": None, "refuses": {}, "kernel_table": kernel_table()}
    if source.refused is not None:
        report["refuses"]["file"] = source.refused
        report["layers"] = _file_layers(source)
        return report
    config, arrays = _portable(source)
    model = source.model
    if config["class"] == "GRU":
        report.update(object="fastgru.GRU", convention="torch")
        layers = [{"class": "GRU", "name": source.layer or "gru", "config": {"gru": config}}]
        arrays = {f"layers.0.{key}": value for key, value in arrays.items()}
        built = [model]
    else:
        report.update(object="fastgru.Model", convention=config["convention"])
        layers, built = config["layers"], list(model.layers)
    report["call"] = _CALLS[report["convention"]]
    recurrent = [i for i, layer in enumerate(layers) if layer["class"] in _RECURRENT + ("GRU",)]
    for index, (layer, obj) in enumerate(zip(layers, built)):
        own = {key.split(".", 2)[2]: value for key, value in arrays.items() if key.startswith(f"layers.{index}.")}
        role = ("recurrent" if index in recurrent else "input" if index < recurrent[0] else
                "head" if index > recurrent[-1] else "between")
        entry = {"name": layer["name"], "class": layer["class"], "role": role,
                 "description": obj.describe() if hasattr(obj, "describe") else _describe_gru(obj),
                 "parameters": _parameters(layer, own), "unsupported": None}
        report["layers"].append(entry)
        if role == "recurrent":
            report["grus"].append(_gru_entry(layer, own))
        mask = _mask(layer)
        if mask:
            report["masks"].append({"layer": layer["name"], "how": mask})
        if role == "head":
            report["heads"].append(layer["name"])
    report["parameters"] = sum(entry["parameters"] for entry in report["layers"])
    report["memory"] = _memory(model)
    report["refuses"] = _refusals(model, report["memory"])
    return report


def _describe_gru(gru) -> str:
    """A bare GRU in one line, as `fastgru.layers` describes theirs."""
    spec = gru.spec
    flags = [f"{spec.num_layers} layers"] if spec.num_layers > 1 else []
    flags += [name for name in ("bidirectional", "batch_first") if getattr(spec, name)]
    flags += [] if spec.reset_after else ["reset_after=False"]
    flags += [] if gru.weight_format == spec.dtype else [gru.weight_format]
    return f"GRU({spec.input_size} -> {spec.hidden_size}{''.join(', ' + flag for flag in flags)})"


def _portable(source: Source) -> tuple[dict, dict]:
    """(config, arrays) of the description, whatever the importer: a bare GRU's as fastgru's file stores it."""
    from fastgru.io.common import GRUDescription

    found = source.found.description
    if isinstance(found, GRUDescription):
        arrays = dict(found.weights)
        if found.initial_state is not None:
            arrays["initial_state"] = found.initial_state
        return {"class": "GRU", "spec": found.spec.to_dict(), "weight_format": found.spec.dtype}, arrays
    return found[0], found[1]


def _file_layers(source: Source) -> list:
    """The layers a refused Keras file lists, each with whether fastgru imports its class."""
    if source.kind not in ("keras", "h5"):
        return []
    from fastgru.io.keras import file_layers

    try:
        listed = file_layers(source.path)["layers"]
    except Exception:  # noqa: BLE001 - the refusal says what is wrong; the list is a courtesy
        return []
    return [{"name": layer["name"], "class": layer["class"], "role": None, "description": layer["class"],
             "parameters": None, "unsupported": layer["unsupported"]} for layer in listed]


def _gru_entry(layer: dict, arrays: dict) -> dict:
    config = layer["config"]
    gru = config["gru"]
    spec = gru["spec"]
    entry = {
        "layer": layer["name"], "input_size": spec["input_size"], "hidden_size": spec["hidden_size"],
        "num_layers": spec["num_layers"], "directions": 2 if spec["bidirectional"] else 1,
        "batch_first": spec["batch_first"], "bias": spec["bias"],
        "variant": "linear-before-reset" if spec["reset_after"] else "reset-before",
        "reset_after": spec["reset_after"], "gate_activation": spec["gate_activation"], "clip": spec["clip"],
        "dtype": spec["dtype"], "weight_format": gru.get("weight_format", spec["dtype"]),
        "initial_state": list(np.shape(arrays["initial_state"])) if "initial_state" in arrays else None,
    }
    if layer["class"] == "KerasGRU":
        entry["keras"] = {key: config[key] for key in ("keras_layers", "return_sequences", "return_state",
                                                      "go_backwards", "merge_mode") if key in config}
    elif layer["class"] == "OnnxGRU":
        entry["onnx"] = {"direction": "reverse" if config.get("reverse") else
                         "bidirectional" if spec["bidirectional"] else "forward"}
    return entry


def _parameters(layer: dict, arrays: dict) -> int:
    """How many numbers the source holds for the layer: its arrays, except the recurrent bias that fastgru
    adds as zeros to a Keras reset-before GRU (Keras stores one bias there, fastgru's spec has two)."""
    count = sum(int(np.size(value)) for value in arrays.values())
    spec = layer["config"].get("gru", {}).get("spec", {})
    if layer["class"] == "KerasGRU" and spec.get("bias") and not spec.get("reset_after"):
        count -= sum(int(np.size(value)) for key, value in arrays.items() if key.startswith("bias_hh"))
    return count


def _mask(layer: dict) -> str | None:
    if layer["class"] == "Masking":
        return f"Masking(mask_value={layer['config'].get('mask_value')!r}): steps equal to it are skipped"
    if layer["class"] == "Embedding" and layer["config"].get("mask_zero"):
        return "Embedding(mask_zero=True): token id 0 is skipped"
    return None


def footprint(obj) -> dict:
    """Bytes fastgru holds for a model: ``core_bytes``, the packed weights of every GRU as the C core counts
    them (``packed_bytes``), and ``arrays_bytes``, the arrays kept in Python (each GRU's weights in
    PyTorch's layout, for an int8 GRU the float32 ones it was quantized from, which ``save`` writes; a
    learned initial state; the other layers' weights)."""
    from fastgru.layers import describe_layer

    if hasattr(obj, "spec"):  # a GRU
        grus = [obj]
        arrays = list(obj.weights.values()) + ([] if obj.initial_state is None else [obj.initial_state])
    else:
        grus = list(obj.grus)
        arrays = [value for layer in obj.layers for value in describe_layer(layer)[1].values()]
    core = sum(gru.packed_bytes for gru in grus)
    held = sum(np.asarray(value).nbytes for value in arrays)
    return {"core_bytes": core, "arrays_bytes": held, "total_bytes": core + held}


def _memory(model) -> dict:
    memory = {model.weight_format: footprint(model)}
    if model.weight_format != "int8":
        try:
            memory["int8"] = footprint(model.quantize("int8"))
        except (TypeError, ValueError) as error:
            memory["int8"] = {"refused": one_line(error, "")}
    return memory


def _refusals(model, memory: dict) -> dict:
    """What fastgru refuses to do with this model, and why (its own errors); an empty dict: nothing."""
    refuses = {}
    try:
        model.stream(1)
    except ValueError as error:
        refuses["stream"] = one_line(error, "")
    if "refused" in memory.get("int8", {}):
        refuses["int8"] = memory["int8"]["refused"]
    if not hasattr(model, "spec"):
        refuses["backward"] = ("a fastgru.Model runs inference only (its heads have no backward): train through "
                               "its GRUs, model.grus")
    elif model.weight_format == "int8":
        refuses["backward"] = "an int8 GRU runs inference only"
    return refuses


# ---------------------------------------------------------------------------------------------- text


def _bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count} bytes ({count / size:.1f} {unit})"
    return f"{count} bytes"


def _format_line(fmt: dict) -> str:
    version = fmt["framework_version"]
    written = f"written by {fmt['framework']} {version}" if version else f"{fmt['framework']}'s version not recorded"
    details = "; ".join(f"{key} {value}" for key, value in fmt["details"].items())
    return f"{fmt['name']}, {written}" + (f" ({details})" if details else "")


def _gru_lines(gru: dict) -> list[str]:
    layers = f"{gru['num_layers']} layer{'s' if gru['num_layers'] > 1 else ''}"
    directions = "bidirectional" if gru["directions"] == 2 else "unidirectional"
    lines = [f"input {gru['input_size']}, hidden {gru['hidden_size']}, {layers}, {directions}, "
             f"batch_first={gru['batch_first']}, bias={gru['bias']}",
             f"{gru['variant']} (reset_after={gru['reset_after']}), gate activation {gru['gate_activation']}, "
             f"clip {gru['clip']}, {gru['dtype']}, weights {gru['weight_format']}",
             "learned initial state " + (f"{tuple(gru['initial_state'])}" if gru["initial_state"] else "none")]
    for framework in ("keras", "onnx"):
        if framework in gru:
            lines.append(f"{framework}: " + ", ".join(f"{key}={value!r}" for key, value in gru[framework].items()))
    return lines


def text(report: dict) -> str:
    """The report for people: one fact a line, the same values as the dict."""
    lines = [f"file:        {report['file']}", f"format:      {_format_line(report['format'])}"]
    if report["status"] == "refused":
        lines.append(f"refused:     {report['refused']}")
        if report["layers"]:
            lines.append("layers in the file:")
            width = max(len(layer["name"]) for layer in report["layers"])
            for layer in report["layers"]:
                verdict = f"refused: {layer['unsupported']}" if layer["unsupported"] else "a class fastgru imports"
                lines.append(f"  {layer['name']:<{width}}  {layer['class']}: {verdict}")
        return "\n".join(lines) + "\n"
    lines += [f"reads as:    {report['object']} (fastgru {report['fastgru_version']})",
              f"call:        {report['call']}", "layers:"]
    width = max(len(layer["name"]) for layer in report["layers"])
    for layer in report["layers"]:
        lines.append(f"  {layer['name']:<{width}}  {layer['description']}  [{layer['role']}; "
                     f"{layer['parameters']} parameters]")
    lines.append("GRUs:")
    for gru in report["grus"]:
        lines.append(f"  {gru['layer']}:")
        lines += [f"    {line}" for line in _gru_lines(gru)]
    lines.append("masks:       " + ("; ".join(f"{m['layer']}: {m['how']}" for m in report["masks"]) or "none"))
    lines.append("heads:       " + (", ".join(report["heads"]) or "none"))
    lines.append(f"parameters:  {report['parameters']}")
    lines.append(f"memory in fastgru (kernel table {report['kernel_table']}):")
    for weight_format, entry in report["memory"].items():
        if "refused" in entry:
            lines.append(f"  {weight_format}: refused: {entry['refused']}")
        else:
            lines.append(f"  {weight_format}: {_bytes(entry['total_bytes'])} = core {_bytes(entry['core_bytes'])}"
                         f" + arrays {_bytes(entry['arrays_bytes'])}")
    lines.append("refuses:     " + ("nothing" if not report["refuses"] else ""))
    lines += [f"  {what}: {why}" for what, why in report["refuses"].items()]
    return "\n".join(lines) + "\n"
