"""Importing ONNX GRU nodes: every attribute against onnxruntime and onnx.reference.ReferenceEvaluator,
the GRU backend test cases that ONNX defines for the operator, and models exported by torch.onnx.export."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import fastgru
from conftest import covering_rows
from fastgru.io import UnsupportedModelError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

TOLERANCE = 1e-5
STEPS, BATCH, INPUT, HIDDEN = 5, 3, 4, 3
LENGTHS = np.array([5, 2, 4], dtype=np.int32)


def _gru_model(rng, direction="forward", linear_before_reset=0, layout=0, bias=True, clip=None,
               activations=None, alpha=None, beta=None, weights_as_inputs=False):
    """One GRU node with random initializers; X, sequence_lens and initial_h are graph inputs."""
    directions = 2 if direction == "bidirectional" else 1
    arrays = {
        "W": rng.uniform(-1, 1, (directions, 3 * HIDDEN, INPUT)).astype(np.float32),
        "R": rng.uniform(-1, 1, (directions, 3 * HIDDEN, HIDDEN)).astype(np.float32),
        "B": rng.uniform(-1, 1, (directions, 6 * HIDDEN)).astype(np.float32),
    }
    if not bias:
        del arrays["B"]
    attributes = dict(hidden_size=HIDDEN, direction=direction, linear_before_reset=linear_before_reset, layout=layout)
    optional = {"clip": clip, "activations": activations, "activation_alpha": alpha, "activation_beta": beta}
    for name, value in optional.items():
        if value is not None:
            attributes[name] = value
    node = helper.make_node("GRU", ["X", "W", "R", "B" if bias else "", "sequence_lens", "initial_h"], ["Y", "Y_h"],
                            name="the_gru", **attributes)
    inputs = [helper.make_tensor_value_info(name, kind, None) for name, kind in
              (("X", TensorProto.FLOAT), ("sequence_lens", TensorProto.INT32), ("initial_h", TensorProto.FLOAT))]
    initializers = [numpy_helper.from_array(value, name) for name, value in arrays.items()]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape)
                   for name, value in arrays.items()]
        initializers = []
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("Y", "Y_h")]
    graph = helper.make_graph([node], "gru", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model, arrays


def _run_onnxruntime(model, x, lengths, h0, layout):
    """onnxruntime refuses layout=1 ("not supported"): run the same node with layout=0 on transposed data."""
    if layout:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        for attribute in model.graph.node[0].attribute:
            if attribute.name == "layout":
                attribute.i = 0
        x, h0 = x.transpose(1, 0, 2), h0.transpose(1, 0, 2)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y, y_h = session.run(None, {"X": x, "sequence_lens": lengths, "initial_h": h0})
    return (y.transpose(2, 0, 1, 3), y_h.transpose(1, 0, 2)) if layout else (y, y_h)


def _assert_close(actual, expected, what):
    assert np.shape(actual) == np.shape(expected), f"{what}: shape {np.shape(actual)} != {np.shape(expected)}"
    diff = np.max(np.abs(np.asarray(actual, np.float64) - expected), initial=0.0)
    assert diff <= TOLERANCE, f"{what}: max |difference| {diff:.3g}"


ACTIVATIONS = {
    "default": {},
    "hard_sigmoid_onnx": dict(activations=["HardSigmoid", "Tanh"]),
    "hard_sigmoid_keras3": dict(activations=["HardSigmoid", "Tanh"], alpha=[1 / 6], beta=[0.5]),
}
NODE_CASES = covering_rows({
    "direction": ["forward", "reverse", "bidirectional"],
    "linear_before_reset": [0, 1],
    "layout": [0, 1],
    "bias": [True, False],
    "clip": [None, 0.8],
    "activations": list(ACTIVATIONS),
}, strength=2)


def _case_id(case):
    return "-".join(f"{k}={v}" for k, v in case.items())


@pytest.mark.parametrize("case", NODE_CASES, ids=[_case_id(c) for c in NODE_CASES])
def test_gru_node_matches_onnxruntime_and_reference(rng, case):
    options = dict(case)
    activations = ACTIVATIONS[options.pop("activations")]
    if activations and case["direction"] == "bidirectional":  # one (f, g) pair per direction
        activations = {k: v * 2 for k, v in activations.items()}
    model, _ = _gru_model(rng, **options, **activations)
    imported = fastgru.Model.from_onnx(model)
    assert isinstance(imported, fastgru.Model) and isinstance(imported.gru, fastgru.GRU)
    directions = 2 if case["direction"] == "bidirectional" else 1
    layout = case["layout"]
    x = rng.standard_normal((BATCH, STEPS, INPUT) if layout else (STEPS, BATCH, INPUT)).astype(np.float32)
    h0 = rng.standard_normal((BATCH, directions, HIDDEN) if layout else (directions, BATCH, HIDDEN)).astype(np.float32)
    full = np.full(BATCH, STEPS, dtype=np.int32)
    for lengths in (full, LENGTHS):
        y, y_h = imported(x, lengths, h0)
        expected_y, expected_h = _run_onnxruntime(model, x, lengths, h0, layout)
        _assert_close(y, expected_y, f"Y vs onnxruntime, lengths={lengths}")
        _assert_close(y_h, expected_h, f"Y_h vs onnxruntime, lengths={lengths}")
    # The reference evaluator ignores sequence_lens, clip and activations: compare where it implements them.
    if case["clip"] is None and not activations:
        expected_y, expected_h = ReferenceEvaluator(model).run(None, {"X": x, "sequence_lens": full, "initial_h": h0})
        y, y_h = imported(x, None, h0)
        _assert_close(y, expected_y, "Y vs ReferenceEvaluator")
        _assert_close(y_h, expected_h, "Y_h vs ReferenceEvaluator")


@functools.lru_cache(maxsize=None)
def _backend_cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():  # generating the cases runs every operator's case module
        warnings.simplefilter("ignore")
        return [case for case in collect_testcases("GRU") if case.name.startswith("test_gru")]


def _export(torch, module, x, path, dynamo):
    with warnings.catch_warnings():  # deprecation and tracer warnings from the exporters
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(path), dynamo=dynamo, verbose=False,
                          input_names=["x"], output_names=["output", "h_n"])


def test_onnx_backend_gru_cases_are_all_found():
    names = {case.name for case in _backend_cases()}
    assert {"test_gru_defaults", "test_gru_with_initial_bias", "test_gru_seq_length", "test_gru_batchwise",
            "test_gru_reverse", "test_gru_bidirectional"} <= names


@pytest.mark.parametrize("case", _backend_cases(), ids=lambda case: case.name)
def test_onnx_backend_gru_case(case):
    """ONNX's own test cases for the operator (onnx/backend/test/case/node/gru.py): their weights are graph
    inputs whose values come with the case, so they are handed over with values=."""
    (inputs, outputs), = case.data_sets
    graph = case.model.graph
    names = [name for name in graph.node[0].input if name]
    feeds = dict(zip(names, inputs))
    imported = fastgru.Model.from_onnx(case.model, values={name: feeds[name] for name in names[1:]})
    y, y_h = imported(feeds["X"])
    produced = dict(zip(graph.node[0].output, (y, y_h)))
    for name, expected in zip([name for name in graph.node[0].output if name], outputs):
        _assert_close(produced[name], expected, f"{case.name} {name}")


# ---------------------------------------------------------------------------------------------
# models exported from PyTorch


@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
def test_torch_onnx_export_of_two_layers_matches(rng, tmp_path, bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.GRU(INPUT, HIDDEN, num_layers=2, bidirectional=bidirectional).eval()
    x = rng.standard_normal((STEPS, BATCH, INPUT)).astype(np.float32)
    path = tmp_path / "gru.onnx"
    _export(torch, module, x, path, dynamo=False)
    exported = onnx.load(str(path))
    gru_nodes = [node.name for node in exported.graph.node if node.op_type == "GRU"]
    assert len(gru_nodes) == 2
    with pytest.raises(ValueError, match=rf"2 GRU nodes.*{gru_nodes[0]}.*{gru_nodes[1]}"):
        fastgru.Model.from_onnx(exported)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected_output, expected_h = session.run(None, {"x": x})
    with torch.no_grad():
        torch_output, torch_h = module(torch.from_numpy(x))
    imported = fastgru.load(path, node_name=gru_nodes)  # the two nodes stacked into one 2-layer GRU
    assert imported.gru.spec.num_layers == 2 and imported.gru.spec.reset_after
    output, h_n = imported.gru(x)
    _assert_close(output, expected_output, "output vs onnxruntime")
    _assert_close(h_n, expected_h, "h_n vs onnxruntime")
    _assert_close(output, torch_output.numpy(), "output vs torch")
    _assert_close(h_n, torch_h.numpy(), "h_n vs torch")
    first_layer = fastgru.Model.from_onnx(str(path), node_name=gru_nodes[0])
    _assert_close(first_layer.gru(x)[1], torch_h.numpy()[: 1 + bidirectional], "first node alone")


def test_torch_dynamo_export_matches(rng, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    module = torch.nn.GRU(INPUT, HIDDEN, bidirectional=True).eval()
    x = rng.standard_normal((STEPS, BATCH, INPUT)).astype(np.float32)
    path = tmp_path / "dynamo.onnx"
    _export(torch, module, x, path, dynamo=True)  # its graph bakes initial_h as a zeros initializer
    with torch.no_grad():
        expected, expected_h = module(torch.from_numpy(x))
    output, h_n = fastgru.load(path).gru(x)
    _assert_close(output, expected.numpy(), "output")
    _assert_close(h_n, expected_h.numpy(), "h_n")


# ---------------------------------------------------------------------------------------------
# sources, refusals and bad files


def test_path_bytes_and_model_give_the_same_model(rng, tmp_path):
    model, _ = _gru_model(rng, direction="bidirectional", linear_before_reset=1)
    path = tmp_path / "gru.onnx"
    onnx.save(model, str(path))
    x = rng.standard_normal((STEPS, BATCH, INPUT)).astype(np.float32)
    expected = fastgru.Model.from_onnx(model)(x)
    for source in (str(path), path, model.SerializeToString()):
        for actual, wanted in zip(fastgru.Model.from_onnx(source)(x), expected):
            np.testing.assert_array_equal(actual, wanted)


def test_weights_given_at_run_time_are_refused_unless_supplied(rng):
    model, arrays = _gru_model(rng, weights_as_inputs=True)
    with pytest.raises(ValueError, match=r"input W \('W'\) is computed at run time"):
        fastgru.Model.from_onnx(model)
    x = rng.standard_normal((STEPS, BATCH, INPUT)).astype(np.float32)
    h0 = np.zeros((1, BATCH, HIDDEN), np.float32)
    feeds = {"X": x, "sequence_lens": LENGTHS, "initial_h": h0, **arrays}
    expected_y, _ = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    _assert_close(fastgru.Model.from_onnx(model, values=arrays)(x, LENGTHS)[0], expected_y, "Y")


@pytest.mark.parametrize("attributes, message", [
    (dict(activations=["Relu", "Tanh"]), r"activations=\['Relu', 'Tanh'\].*'Relu'"),
    (dict(activations=["Sigmoid", "Relu"]), r"activations=\['Sigmoid', 'Relu'\].*candidate"),
    (dict(activations=["HardSigmoid", "Tanh"], alpha=[0.3]), r"HardSigmoid alpha=0\.3"),
    (dict(direction="bidirectional", activations=["Sigmoid", "Tanh", "HardSigmoid", "Tanh"]),
     "differ between directions"),
], ids=["gate_relu", "candidate_relu", "hard_sigmoid_alpha", "mixed_directions"])
def test_unsupported_activations_are_named(rng, attributes, message):
    model, _ = _gru_model(rng, **attributes)
    with pytest.raises(UnsupportedModelError, match=message):
        fastgru.Model.from_onnx(model)


def test_several_gru_nodes_need_a_name(rng):
    model, _ = _gru_model(rng)
    second = onnx.NodeProto.FromString(model.graph.node[0].SerializeToString())
    second.name, second.output[:] = "other_gru", ["Y2", "Y_h2"]
    model.graph.node.append(second)
    with pytest.raises(ValueError, match=r"2 GRU nodes.*'the_gru', 'other_gru'"):
        fastgru.Model.from_onnx(model)
    with pytest.raises(ValueError, match=r"no GRU node named 'nope'"):
        fastgru.Model.from_onnx(model, node_name="nope")
    assert fastgru.Model.from_onnx(model, node_name="other_gru").gru.spec.hidden_size == HIDDEN


def test_misshaped_weight_names_the_tensor(rng):
    model, arrays = _gru_model(rng)
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(arrays["R"][:, :, :2], "R"))
    with pytest.raises(ValueError, match=r"GRU node 'the_gru'.*tensor R \('R'\) has shape \(1, 9, 2\)"):
        fastgru.Model.from_onnx(model)


def test_constant_sequence_lens_is_refused(rng):
    model, _ = _gru_model(rng)
    model.graph.initializer.append(numpy_helper.from_array(LENGTHS, "sequence_lens"))
    with pytest.raises(UnsupportedModelError, match="sequence_lens is a constant"):
        fastgru.Model.from_onnx(model)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_bad_onnx_files_name_the_file(rng, tmp_path, damage):
    model, _ = _gru_model(rng)
    path = tmp_path / "broken.onnx"
    data = model.SerializeToString()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x08\x07" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="broken.onnx"):
        fastgru.load(path)


# ---------------------------------------------------------------------------------------------
# the GRU alone, streams and round trips of ONNX models


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_gru_from_onnx_is_the_gru_with_torch_semantics(rng, direction, layout):
    model, _ = _gru_model(rng, direction=direction, layout=layout, linear_before_reset=1)
    gru = fastgru.GRU.from_onnx(model)
    assert isinstance(gru, fastgru.GRU) and gru.spec.batch_first == bool(layout)
    x = rng.standard_normal((BATCH, STEPS, INPUT) if layout else (STEPS, BATCH, INPUT)).astype(np.float32)
    y, y_h = fastgru.Model.from_onnx(model)(x, LENGTHS)
    output, h_n = gru(x, lengths=LENGTHS)
    directions = 2 if direction == "bidirectional" else 1
    expected = y.reshape(BATCH, STEPS, directions * HIDDEN) if layout else \
        y.transpose(0, 2, 1, 3).reshape(STEPS, BATCH, directions * HIDDEN)
    np.testing.assert_array_equal(output, expected)
    np.testing.assert_array_equal(h_n, y_h.transpose(1, 0, 2) if layout else y_h)


def test_gru_from_onnx_refuses_a_reverse_node(rng):
    model, _ = _gru_model(rng, direction="reverse")
    with pytest.raises(UnsupportedModelError, match=r"'the_gru' has direction='reverse'.*fastgru.Model.from_onnx"):
        fastgru.GRU.from_onnx(model)


@pytest.mark.parametrize("layout", [0, 1])
def test_onnx_model_streams_one_step_of_y_at_a_time(rng, layout):
    model = fastgru.Model.from_onnx(_gru_model(rng, layout=layout)[0])
    x = rng.standard_normal((BATCH, STEPS, INPUT) if layout else (STEPS, BATCH, INPUT)).astype(np.float32)
    y, _ = model(x)
    stream = model.stream(BATCH)
    for step in range(STEPS):
        expected = y[:, step] if layout else y[step]  # (B, D, H) or (D, B, H), D = 1
        np.testing.assert_allclose(stream.step(x[:, step] if layout else x[step]),
                                   expected[:, None, 0] if layout else expected, rtol=0, atol=1e-6)
    for direction in ("reverse", "bidirectional"):
        with pytest.raises(ValueError, match=r"'the_gru' runs in .*cannot be streamed"):
            fastgru.Model.from_onnx(_gru_model(rng, direction=direction)[0]).stream(1)


def test_onnx_models_round_trip_bit_exactly(rng, tmp_path):
    import copy
    import pickle

    model = fastgru.Model.from_onnx(_gru_model(rng, direction="reverse", layout=1)[0])
    x = rng.standard_normal((BATCH, STEPS, INPUT)).astype(np.float32)
    expected = model(x, LENGTHS)
    model.save(tmp_path / "onnx.fastgru")
    for loaded in (fastgru.load(tmp_path / "onnx.fastgru"), pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        for actual, wanted in zip(loaded(x, LENGTHS), expected):
            np.testing.assert_array_equal(actual, wanted)
    quantized = model.quantize("int8")
    for actual, wanted in zip(pickle.loads(pickle.dumps(quantized))(x, LENGTHS), quantized(x, LENGTHS)):
        np.testing.assert_array_equal(actual, wanted)
