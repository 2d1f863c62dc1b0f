"""The ``fastgru`` command: inspect, convert and bench on files that torch, Keras and ONNX wrote here, run
as ``python -m fastgru`` in a subprocess and through the console script's ``main`` in-process; damaged
and refused files (exit status 2, one line naming the file, no traceback); what the command compares
with is checked against the frameworks themselves. No timing is asserted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

import fastgru
from fastgru.cli import main

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch needs no TensorFlow
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
# torch.onnx.export's TorchScript exporter (the two-node file) warns about itself and about tracing.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*mask.*:UserWarning"),
              pytest.mark.filterwarnings("ignore:Exporting a model to ONNX:UserWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE, INT8_TOLERANCE = 1e-5, 0.05
L = keras.layers


# ---------------------------------------------------------------------------------------------- files


def _randomized(model, seed=0):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.uniform(-0.5, 0.5, variable.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Files the frameworks wrote, with what each framework says about them."""
    tmp = tmp_path_factory.mktemp("cli")
    out = {}

    torch.manual_seed(0)
    module = torch.nn.GRU(4, 8, num_layers=2, bidirectional=True).eval()
    torch.save(module.state_dict(), tmp / "gru.pt")
    out["torch"] = {"path": tmp / "gru.pt", "parameters": sum(p.numel() for p in module.parameters()),
                    "framework": "torch", "module": module}

    tagger = _randomized(keras.Sequential([  # named: Keras numbers unnamed layers per process, test order aside
        keras.Input((None, 5)), L.Masking(0.0, name="masking"),
        L.GRU(8, return_sequences=True, reset_after=False, name="gru"), L.Bidirectional(L.GRU(6), name="bidirectional"),
        L.Dense(3, activation="softmax", name="dense")]))
    tagger.save(tmp / "tagger.keras")
    out["keras"] = {"path": tmp / "tagger.keras", "parameters": tagger.count_params(), "framework": "keras"}

    words = _randomized(keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(20, 5, mask_zero=True),
                                          L.GRU(6), L.Dense(2)]), seed=1)
    words.save(tmp / "words.h5")
    out["keras-h5"] = {"path": tmp / "words.h5", "parameters": words.count_params(), "framework": "keras"}

    out["onnx"] = {"path": _onnx_file(tmp / "node.onnx"), "framework": "fastgru-tests",
                   "parameters": 2 * 18 * 5 + 2 * 18 * 6 + 2 * 36}  # W, R and B of the node

    chain = torch.nn.GRU(3, 5, num_layers=2).eval()
    torch.onnx.export(chain, (torch.randn(6, 2, 3),), str(tmp / "chain.onnx"), input_names=["x"], dynamo=False)
    out["onnx-chain"] = {"path": tmp / "chain.onnx", "framework": "pytorch",
                         "parameters": sum(p.numel() for p in chain.parameters())}

    flat = _randomized(keras.Sequential([keras.Input((8, 5)), L.GRU(4, return_sequences=True), L.Flatten(),
                                         L.Dense(2)]), seed=2)
    flat.save(tmp / "flat.keras")  # Flatten before Dense: the model takes T = 8 only
    out["flat"] = {"path": tmp / "flat.keras"}

    refused = keras.Sequential([keras.Input((None, 4)), L.LSTM(3, return_sequences=True, name="lstm"),
                                 L.GRU(2, name="gru")])
    refused.save(tmp / "lstm.keras")
    out["refused"] = {"path": tmp / "lstm.keras"}

    learned = fastgru.GRU(3, 4, seed=2).with_initial_state(np.linspace(-0.5, 0.5, 4).astype(np.float32))
    learned.save(tmp / "learned.fastgru")
    out["learned"] = {"path": tmp / "learned.fastgru", "parameters": 3 * 12 + 4 * 12 + 2 * 12 + 4,
                      "framework": "fastgru"}

    good = out["keras"]["path"].read_bytes()
    (tmp / "truncated.keras").write_bytes(good[: len(good) // 3])
    (tmp / "garbage.onnx").write_bytes(b"\x08\x07" + bytes(range(256)) * 4)
    (tmp / "truncated.pt").write_bytes(out["torch"]["path"].read_bytes()[:300])
    out["tmp"] = tmp
    return out


def _onnx_file(path):
    """One bidirectional reset-before GRU node (linear_before_reset=0), dynamic T and B, its initial_h a
    graph input."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    hidden, features = 6, 5
    w = rng.uniform(-0.5, 0.5, (2, 3 * hidden, features)).astype(np.float32)
    r = rng.uniform(-0.5, 0.5, (2, 3 * hidden, hidden)).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, (2, 6 * hidden)).astype(np.float32)
    node = helper.make_node("GRU", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"], name="gru_node",
                            hidden_size=hidden, direction="bidirectional", linear_before_reset=0)
    graph = helper.make_graph(
        [node], "cli", inputs=[helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", features]),
                               helper.make_tensor_value_info("initial_h", TensorProto.FLOAT, [2, "B", hidden])],
        outputs=[helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 2, "B", hidden]),
                 helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [2, "B", hidden])],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fastgru-tests",
                              producer_version="1.0")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


LAYERS = {"onnx-chain": "/GRU,/GRU_1"}  # the exporter's two nodes of a two-layer nn.GRU
DAMAGED = ["truncated.keras", "garbage.onnx", "truncated.pt"]


def _args(files, name, *rest):
    layer = ["--layer", LAYERS[name]] if name in LAYERS else []
    return [str(files[name]["path"]), *layer, *rest]


# ----------------------------------------------------------------------------------------- running it


def run_module(*args, timeout=600):
    """``python -m fastgru ARGS`` in a fresh interpreter: (exit status, stdout, stderr)."""
    env = dict(os.environ, KERAS_BACKEND="torch")
    result = subprocess.run([sys.executable, "-m", "fastgru", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=ROOT)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
def run_main(capfd):
    """The console script's ``main`` in this process (workers it starts write to the same fds)."""
    def run(*args):
        status = main([str(a) for a in args])
        captured = capfd.readouterr()
        return status, captured.out, captured.err
    return run


@pytest.fixture(params=["subprocess", "in-process"])
def run(request, run_main):
    return run_module if request.param == "subprocess" else run_main


def _one_line_error(err: str, path) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert str(path) in lines[0] or Path(path).name in lines[0], err
    return lines[0]


# -------------------------------------------------------------------------------------------- inspect


def _loaded(files, name):
    layer = LAYERS.get(name)
    return fastgru.load(files[name]["path"], **({"node_name": layer.split(",")} if layer else {}))


def _core_bytes(model):
    grus = [model] if isinstance(model, fastgru.GRU) else model.grus
    return sum(gru.packed_bytes for gru in grus)


@pytest.mark.parametrize("name", ["torch", "keras", "keras-h5", "onnx", "onnx-chain", "learned"])
def test_inspect_json_reports_what_the_framework_holds(files, run_main, name):
    status, out, _ = run_main("inspect", *_args(files, name), "--json")
    assert status == 0
    report = json.loads(out)
    assert report["status"] == "ok" and report["refused"] is None
    assert report["parameters"] == files[name]["parameters"]
    assert report["format"]["framework"] == files[name]["framework"]
    model = _loaded(files, name)
    memory = report["memory"]
    assert memory["float32"]["core_bytes"] == _core_bytes(model)
    assert memory["int8"]["core_bytes"] == _core_bytes(model.quantize("int8"))
    assert all(entry["total_bytes"] == entry["core_bytes"] + entry["arrays_bytes"] for entry in memory.values())
    assert report["kernel_table"] == fastgru._core.best_isa()


def test_inspect_describes_the_keras_model(files, run_main):
    report = json.loads(run_main("inspect", files["keras"]["path"], "--json")[1])
    assert report["format"]["framework_version"] == keras.__version__
    assert report["object"] == "fastgru.Model" and report["convention"] == "keras"
    assert [layer["name"] for layer in report["layers"]] == ["masking", "gru", "bidirectional", "dense"]
    assert [layer["role"] for layer in report["layers"]] == ["input", "recurrent", "recurrent", "head"]
    first, second = report["grus"]
    assert (first["variant"], first["reset_after"], first["hidden_size"], first["directions"]) == \
        ("reset-before", False, 8, 1)
    assert (second["variant"], second["input_size"], second["hidden_size"], second["directions"]) == \
        ("linear-before-reset", 8, 6, 2)
    assert first["batch_first"] and first["gate_activation"] == "sigmoid" and first["initial_state"] is None
    assert first["keras"]["return_sequences"] and second["keras"]["merge_mode"] == "concat"
    assert [mask["layer"] for mask in report["masks"]] == ["masking"] and report["heads"] == ["dense"]
    assert "Bidirectional" in report["refuses"]["stream"] and "backward" in report["refuses"]


def test_inspect_describes_the_onnx_node_and_the_torch_state_dict(files, run_main):
    node = json.loads(run_main("inspect", files["onnx"]["path"], "--json")[1])
    assert node["format"]["framework_version"] == "1.0" and node["format"]["details"]["opset"] == {"ai.onnx": 17}
    (gru,) = node["grus"]
    assert (gru["variant"], gru["directions"], gru["onnx"]["direction"], gru["batch_first"]) == \
        ("reset-before", 2, "bidirectional", False)
    state = json.loads(run_main("inspect", files["torch"]["path"], "--json")[1])
    assert state["object"] == "fastgru.GRU" and state["format"]["details"]["archive"] == "zip"
    (gru,) = state["grus"]
    assert (gru["num_layers"], gru["directions"], gru["input_size"], gru["hidden_size"]) == (2, 2, 4, 8)
    assert list(state["refuses"]) == ["stream"] and "bidirectional" in state["refuses"]["stream"]
    learned = json.loads(run_main("inspect", files["learned"]["path"], "--json")[1])
    assert learned["grus"][0]["initial_state"] == [1, 4] and learned["refuses"] == {}


@pytest.mark.parametrize("name", ["torch", "keras", "onnx"])
def test_inspect_text_says_what_the_json_says(files, run_main, name):
    status, out, _ = run_main("inspect", *_args(files, name))
    json_status, json_out, _ = run_main("inspect", *_args(files, name), "--json")
    assert status == json_status == 0
    report = json.loads(json_out)
    assert f"parameters:  {report['parameters']}" in out
    assert report["kernel_table"] in out and report["format"]["name"] in out
    version = report["format"]["framework_version"]
    assert version is None or version in out
    for layer in report["layers"]:
        assert re.search(rf"{re.escape(layer['name'])}\s+{re.escape(layer['description'])}  "
                         rf"\[{layer['role']}; {layer['parameters']} parameters\]", out)
    for gru in report["grus"]:
        assert f"{gru['variant']} (reset_after={gru['reset_after']}), gate activation {gru['gate_activation']}" in out
    for weight_format, entry in report["memory"].items():
        assert re.search(rf"{weight_format}: {entry['total_bytes']} bytes.* = core {entry['core_bytes']} bytes", out)
    for what in report["refuses"]:
        assert f"  {what}: " in out


def test_inspect_lists_the_layers_of_a_refused_file(files, run):
    path = files["refused"]["path"]
    status, out, err = run("inspect", path)
    assert status == 2
    line = _one_line_error(err, path)
    assert "'lstm'" in line and "LSTM" in line
    assert re.search(r"lstm\s+LSTM: refused: LSTM is not a layer fastgru imports", out)
    assert re.search(r"gru\s+GRU: a class fastgru imports", out)
    status, out, _ = run("inspect", path, "--json")
    report = json.loads(out)
    assert status == 2 and report["status"] == "refused" and "LSTM" in report["refused"]
    assert [layer["unsupported"] is not None for layer in report["layers"]] == [True, False]


def test_inspect_of_a_node_chain_says_how_to_pick_it(files, run_main):
    status, _, err = run_main("inspect", files["onnx-chain"]["path"])
    assert status == 2 and "--layer NAME1,NAME2" in _one_line_error(err, files["onnx-chain"]["path"])
    report = json.loads(run_main("inspect", *_args(files, "onnx-chain"), "--json")[1])
    assert report["grus"][0]["num_layers"] == 2


# -------------------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("command", [["inspect"], ["convert", "{tmp}/out.fastgru"], ["bench", "--budget", "0.01"]])
@pytest.mark.parametrize("damaged", DAMAGED)
def test_a_damaged_file_exits_2_with_one_line(files, command, damaged):
    path = files["tmp"] / damaged
    args = [command[0], path] + [a.format(tmp=files["tmp"]) for a in command[1:]]
    status, out, err = run_module(*args)
    assert status == 2, (out, err)
    _one_line_error(err, path)
    assert not (files["tmp"] / "out.fastgru").exists()


def test_missing_files_and_bad_options_exit_2(files, run_main, tmp_path):
    status, _, err = run_main("convert", tmp_path / "absent.pt", tmp_path / "out.fastgru")
    assert status == 2 and "No such file" in _one_line_error(err, tmp_path / "absent.pt")
    status, _, err = run_main("convert", files["torch"]["path"], tmp_path / "no" / "dir" / "out.fastgru")
    assert status == 2 and "cannot write" in _one_line_error(err, tmp_path / "no" / "dir" / "out.fastgru")
    status, _, err = run_main("inspect", files["learned"]["path"], "--layer", "x")
    assert status == 2 and "--layer does not apply" in err
    for argv in (["bench", str(files["torch"]["path"]), "--threads", "0"], ["bench"], [], ["convert", "x"],
                 ["inspect", "x", "--frobnicate"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    status, _, err = run_module("bench", files["torch"]["path"], "--batch", "-3")
    assert status == 2 and "usage: fastgru bench" in err


# -------------------------------------------------------------------------------------------- convert

# The source's framework that convert compares with, as it names it.
COMPARED_WITH = {"torch": "torch", "keras": "keras", "keras-h5": "keras", "onnx": "onnxruntime",
                 "onnx-chain": "onnxruntime", "learned": "fastgru.reference"}


def _reported_diff(out: str, against: str) -> float:
    match = re.search(rf"max difference from {re.escape(against)}.*: ([0-9.e+-]+|inf|nan)$", out, re.MULTILINE)
    assert match, out
    return float(match.group(1))


# In-process for every file; through `python -m fastgru` for those whose framework imports quickly (a fresh
# interpreter importing Keras costs seconds per case).
CONVERT_CASES = [(how, name, int8) for name in COMPARED_WITH for int8 in (False, True)
                 for how in ("in-process", *(("subprocess",) if name in ("torch", "onnx") else ()))]


@pytest.mark.parametrize("how, name, int8", CONVERT_CASES)
def test_convert_writes_fastgru_and_compares_with_the_source(files, run_main, tmp_path, how, name, int8):
    out_path = tmp_path / "model.fastgru"
    run = run_module if how == "subprocess" else run_main
    status, out, err = run("convert", *_args(files, name), out_path, *(["--int8"] if int8 else []))
    assert status == 0, err
    assert f"wrote {out_path}" in out
    diff = _reported_diff(out, COMPARED_WITH[name])
    assert 0 < diff <= (INT8_TOLERANCE if int8 else TOLERANCE)
    converted = fastgru.load(out_path)
    assert converted.weight_format == ("int8" if int8 else "float32")
    assert ("quantization error" in out) is int8


def test_convert_writes_7bit_int8_weights_and_refuses_the_option_alone(files, run_main, tmp_path):
    out_path = tmp_path / "q7.fastgru"
    status, out, err = run_main("convert", *_args(files, "torch"), out_path, "--int8", "--weight-bits", "7")
    assert status == 0, err
    assert 0 < _reported_diff(out, COMPARED_WITH["torch"]) <= INT8_TOLERANCE
    assert fastgru.load(out_path).int8_narrow
    status, out, err = run_main("convert", *_args(files, "torch"), tmp_path / "no.fastgru", "--weight-bits", "7")
    assert status == 2 and "--weight-bits applies to int8 weights: add --int8" in err
    assert not (tmp_path / "no.fastgru").exists()


def test_convert_checks_a_model_of_fixed_length_on_that_length(files, run_main, tmp_path):
    out_path = tmp_path / "flat.fastgru"
    status, _, err = run_main("convert", files["flat"]["path"], out_path)
    line = _one_line_error(err, files["flat"]["path"])
    assert status == 2 and "--seq-len" in line and f"{out_path} removed" in line
    assert not out_path.exists()  # exit status 0 means written and checked
    status, out, err = run_main("convert", files["flat"]["path"], out_path, "--seq-len", "8", "--batch", "3")
    assert status == 0, err
    assert "B=3, T=8" in out and _reported_diff(out, "keras") <= TOLERANCE


def _example_inputs(name, rng):
    if name == "torch":
        return (rng.standard_normal((7, 3, 4)).astype(np.float32),)
    if name == "keras":
        return (rng.standard_normal((3, 7, 5)).astype(np.float32),)
    if name == "keras-h5":
        return (rng.integers(0, 20, (3, 7)),)
    if name == "onnx":
        return (rng.standard_normal((7, 3, 5)).astype(np.float32), None,
                rng.standard_normal((2, 3, 6)).astype(np.float32))
    if name == "onnx-chain":
        return (rng.standard_normal((6, 2, 3)).astype(np.float32),)
    return (rng.standard_normal((7, 3, 3)).astype(np.float32),)


def test_converted_files_load_with_numpy_alone(files, run_main, tmp_path):
    """What convert writes loads where torch, Keras and ONNX are not importable, and computes what the
    source model computes in its framework."""
    rng = np.random.default_rng(5)
    cases = []
    for name in COMPARED_WITH:
        out_path = tmp_path / f"{name}.fastgru"
        assert run_main("convert", *_args(files, name), out_path)[0] == 0
        args = _example_inputs(name, rng)
        expected = _framework_outputs(files, name, args)
        data = tmp_path / f"{name}.npz"
        np.savez(data, **{f"a{i}": a for i, a in enumerate(args) if a is not None},
                 **{f"y{i}": y for i, y in enumerate(expected)})
        cases.append({"path": str(out_path), "data": str(data), "args": [a is not None for a in args]})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = textwrap.dedent(f"""
        import json, sys
        for name in ("torch", "keras", "tensorflow", "onnx", "onnxruntime", "safetensors", "h5py"):
            sys.modules[name] = None  # any import of these now raises ImportError
        import numpy as np, fastgru
        for case in json.load(open({str(tmp_path / 'cases.json')!r})):
            data = np.load(case["data"])
            args = [data[f"a{{i}}"] if present else None for i, present in enumerate(case["args"])]
            out = fastgru.load(case["path"])(*args)
            out = list(out) if isinstance(out, (tuple, list)) else [out]
            for i, actual in enumerate(out):
                assert np.abs(actual - data[f"y{{i}}"]).max() <= {TOLERANCE}, (case["path"], i)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def _framework_outputs(files, name, args):
    """What the framework that wrote the file computes (the learned-state GRU: the reference)."""
    import onnxruntime

    path = str(files[name]["path"])
    if name == "torch":
        with torch.no_grad():
            return [t.numpy() for t in files["torch"]["module"](torch.from_numpy(args[0]))]
    if name in ("keras", "keras-h5"):
        return [keras.ops.convert_to_numpy(keras.saving.load_model(path)(args[0]))]
    if name == "onnx":
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run(None, {"X": args[0], "initial_h": args[2]})
    if name == "onnx-chain":
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        output, h_n = session.run(None, {"x": args[0]})  # the exporter's graph: (T, B, H) and (L, B, H)
        return [output[:, None], h_n]
    from fastgru import reference

    gru = fastgru.load(path)
    h0 = np.repeat(gru.initial_state[:, None], args[0].shape[1], axis=1)
    return list(reference.forward(gru.spec, gru.weights, args[0], h0))


@pytest.mark.parametrize("name, blocked, package", [("keras", "keras", "keras"),
                                                     ("onnx", "onnxruntime", "onnxruntime")])
def test_convert_without_the_framework_compares_with_the_reference(files, run_main, tmp_path, monkeypatch,
                                                                   name, blocked, package):
    monkeypatch.setitem(sys.modules, blocked, None)  # any import of it now raises ImportError
    status, out, _ = run_main("convert", *_args(files, name), tmp_path / "model.fastgru")
    assert status == 0
    assert f"not compared with {COMPARED_WITH[name]}:" in out and f"pip install {package}" in out
    assert _reported_diff(out, "fastgru.reference") <= TOLERANCE


# -------------------------------------------------------------------- what convert and bench compare with


@pytest.fixture
def opened(files):
    from fastgru.cli.source import open_source

    def opened(name):
        source = open_source(files[name]["path"], LAYERS.get(name))
        return source, source.model
    return opened


def test_peers_compute_what_the_frameworks_compute(files, opened):
    import onnxruntime

    from fastgru.cli.inputs import make_inputs
    from fastgru.cli.peers import build_peer

    source, model = opened("torch")
    inputs = make_inputs(source, model, 3, 9)
    with torch.no_grad():
        expected = [t.numpy() for t in files["torch"]["module"](torch.from_numpy(inputs.args[0]))]
    for got, want in zip(build_peer("torch", source, model, inputs, 1).output(), expected):
        np.testing.assert_array_equal(got, want)

    source, model = opened("keras")
    inputs = make_inputs(source, model, 3, 9)
    assert (inputs.args[0][1, 6:] == 0).all() and (inputs.args[0][1, :6] != 0).all()  # a padded row
    keras_model = keras.saving.load_model(str(files["keras"]["path"]))
    np.testing.assert_array_equal(build_peer("keras", source, model, inputs, 1).output()[0],
                                  keras.ops.convert_to_numpy(keras_model(inputs.args[0])))

    source, model = opened("onnx")
    inputs = make_inputs(source, model, 3, 9)
    x, _, initial_h = inputs.args
    session = onnxruntime.InferenceSession(str(files["onnx"]["path"]), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"X": x, "initial_h": initial_h})
    for got, want in zip(build_peer("onnxruntime", source, model, inputs, 1).output(), expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["keras", "keras-h5", "onnx", "learned"])
def test_the_float64_reference_computes_what_the_framework_computes(files, opened, name):
    from fastgru.cli.inputs import make_inputs
    from fastgru.cli.peers import max_diff
    from fastgru.cli.reference_peer import reference_peer

    source, model = opened(name)
    inputs = make_inputs(source, model, 3, 9)
    reference = reference_peer(source, model, inputs).output()
    assert all(array.dtype == np.float64 for array in reference)
    assert max_diff(reference, _framework_outputs(files, name, inputs.args)) <= TOLERANCE


def test_max_diff_counts_nan_only_where_one_side_has_it():
    from fastgru.cli.peers import max_diff

    a, b = np.array([1.0, np.nan, 3.0]), np.array([1.5, np.nan, 3.0])
    assert max_diff([a], [b]) == 0.5
    assert max_diff([a], [np.array([1.0, 2.0, 3.0])]) == float("inf")
    with pytest.raises(ValueError, match="shape"):
        max_diff([a], [a[:2]])


# ---------------------------------------------------------------------------------------------- bench


def _table_rows(out: str) -> list[dict]:
    rows = []
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 8 and cells[0] not in ("engine", "---"):
            rows.append(dict(zip(("engine", "version", "median", "p90", "ratio", "paired", "max diff", "what"), cells)))
    return rows


def _check_rows(rows, engines):
    assert [row["engine"] for row in rows] == engines
    for row in rows:
        assert re.fullmatch(r"[0-9.]+ (us|ms|s)", row["median"]) and re.fullmatch(r"[0-9.]+x", row["ratio"])
        assert re.fullmatch(r"[0-9.]+x", row["paired"])
        if row["engine"] == "fastgru":
            assert row["ratio"] == row["paired"] == "1.00x"  # its own samples, round by round
        assert float(row["max diff"]) <= (INT8_TOLERANCE if "int8" in row["engine"] else TOLERANCE)


def test_bench_times_each_thread_count_in_its_own_worker(files):
    status, out, err = run_module("bench", files["torch"]["path"], "--batch", "2", "--seq-len", "4",
                                  "--threads", "1,2", "--budget", "0.01", "--int8", "--against", "torch")
    assert status == 0, err
    assert "| engine | version | median | p90 | ratio | round by round | max diff | what runs |" in out
    assert "CPU: " in out and f"kernel table {fastgru._core.best_isa()}" in out
    rows = _table_rows(out)
    engines = ["fastgru", "fastgru int8", "torch"]
    _check_rows(rows[:3], engines)
    _check_rows(rows[3:], engines)
    assert "1 thread;" in out and "2 threads;" in out
    # stderr is a pipe here: a plain line per step, none per round of timing
    assert "fastgru bench, 2 threads: building torch" in err and "round" not in err


@pytest.mark.parametrize("name, against, engines", [
    ("keras", None, ["fastgru", "keras"]),
    ("onnx", None, ["fastgru", "onnxruntime"]),
    ("onnx-chain", "none", ["fastgru"]),
    ("learned", "onnxruntime,torch", ["fastgru", "onnxruntime", "torch"]),  # the GRU exported by torch.onnx
])
def test_bench_runs_the_peers_of_each_file(files, run_main, name, against, engines):
    status, out, err = run_main("bench", *_args(files, name), "--seq-len", "5", "--budget", "0.01",
                                *(["--against", against] if against else []))
    assert status == 0, err
    rows = _table_rows(out)
    _check_rows(rows, engines)
    assert name != "learned" or "torch.onnx.export" in rows[1]["what"]


def test_bench_names_the_package_a_peer_needs(files, run_main, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    status, _, err = run_main("bench", files["onnx"]["path"], "--against", "onnxruntime", "--budget", "0.01")
    assert status == 2 and "pip install onnxruntime" in _one_line_error(err, "onnxruntime")
    status, out, err = run_main("bench", files["torch"]["path"], "--seq-len", "3", "--budget", "0.01")
    assert status == 0, err
    assert "not run: onnxruntime: needs onnxruntime, which is not installed: pip install onnxruntime" in out
    _check_rows(_table_rows(out), ["fastgru", "torch"])


def test_bench_refuses_peers_that_do_not_apply(files, run_main):
    status, _, err = run_main("bench", files["torch"]["path"], "--against", "keras")
    assert status == 2 and "does not apply" in _one_line_error(err, files["torch"]["path"])
    status, _, err = run_main("bench", files["keras"]["path"], "--against", "torch")
    assert status == 2 and "torch.nn.GRU runs bare GRUs" in err
    status, _, err = run_main("bench", files["keras"]["path"], "--against", "tensorflow")
    assert status == 2 and "unknown peer" in err


def test_the_progress_line_rewrites_itself_only_on_a_terminal():
    import io

    from fastgru.cli.bench import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, tty in ((Terminal(), True), (io.StringIO(), False)):
        progress = Progress("bench", stream)
        progress.step("building torch")
        progress.rounds(1, 7)
        progress.close()
        text = stream.getvalue()
        if tty:
            assert text == "\r\033[Kbench: building torch\r\033[Kbench: timing, round 1 of at most 7\r\033[K"
        else:
            assert text == "bench: building torch\n"


# ----------------------------------------------------------------------------------------- packaging


def test_the_console_script_is_fastgru_cli_main():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["fastgru"].partition(":")
    assert (module, function) == ("fastgru.cli", "main")
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert {"fastgru.cli", "fastgru.benchmark"} <= set(packages)
    assert run_module("--version")[1].strip() == f"fastgru {fastgru.__version__}"


def test_workers_import_the_same_fastgru(tmp_path, monkeypatch):
    """A source tree goes first on the workers' PYTHONPATH; a site-packages folder never does (it would
    come before the standard library)."""
    import site

    from fastgru.cli.bench import _worker_env

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    tree = tmp_path / "src"
    env = _worker_env(str(tree / "fastgru" / "__init__.py"))
    assert env["PYTHONPATH"] == os.pathsep.join([os.path.realpath(tree), "/elsewhere"])
    installed = Path(site.getsitepackages()[0])
    assert _worker_env(str(installed / "fastgru" / "__init__.py"))["PYTHONPATH"] == "/elsewhere"
