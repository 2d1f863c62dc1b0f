"""Pickle, copy and deepcopy of every object `fastgru.load` can return, and of streams.

The objects come from files that the frameworks themselves wrote (torch.save, safetensors, Keras .keras
files of a GRU layer and of a whole model with a head, an ONNX GRU node and a chain of two) and from
fastgru's own files (every variant, float32 and float64, int8, a learned initial state, an int8 Model),
each loaded with `fastgru.load`: whatever class `load` returns for a source (a `fastgru.GRU` or a
`fastgru.Model`), now or later, is what is pickled here.

What is pinned down: a round trip is bit-exact for every pickle protocol; the pickle carries exactly the
bytes `save()` writes and calls nothing but `fastgru.io.native.loads`; a model pickled under one kernel
table runs under another; copies share the packed weights; damaged pickles raise and never crash; a
model travels to a spawned process.
"""

from __future__ import annotations

import copy
import os
import pickle
import pickletools
import subprocess
import sys
import textwrap

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch needs no TensorFlow

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastgru  # noqa: E402
from conftest import random_weights  # noqa: E402
from fastgru import _core  # noqa: E402
from fastgru.io import native  # noqa: E402
from fastgru.spec import GRUSpec  # noqa: E402
from scoring_models import keras_classifier, onnx_chain  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]
INPUT = 3  # every model reads 3 features
STEPS = BATCH = 5  # x is (5, 5, 3): time-major and batch-major callers read it alike


def _write_torch(path, rng, dtype="float32", **options):
    torch = pytest.importorskip("torch")
    torch.manual_seed(int(rng.integers(1 << 30)))
    module = torch.nn.GRU(INPUT, 4, dtype=getattr(torch, dtype), **options)
    torch.save(module.state_dict(), path)


def _write_safetensors(path, rng):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(int(rng.integers(1 << 30)))
    safetensors_torch.save_file(torch.nn.GRU(INPUT, 6, num_layers=2).state_dict(), str(path))


def _write_keras(path, rng, bidirectional=False, **options):
    keras = pytest.importorskip("keras")
    layer = keras.layers.GRU(4, return_sequences=True, **options)
    if bidirectional:
        layer = keras.layers.Bidirectional(layer)
    model = keras.Sequential([keras.Input((None, INPUT)), layer])
    for variable in model.weights:
        variable.assign(rng.uniform(-0.8, 0.8, variable.shape).astype("float32"))
    model.save(path)


def _write_onnx(path, rng):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    hidden = 4
    arrays = {"W": rng.uniform(-0.7, 0.7, (1, 3 * hidden, INPUT)), "R": rng.uniform(-0.7, 0.7, (1, 3 * hidden, hidden)),
              "B": rng.uniform(-0.7, 0.7, (1, 6 * hidden))}
    node = helper.make_node("GRU", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=hidden, linear_before_reset=0)
    graph = helper.make_graph(
        [node], "gru", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("Y", "Y_h")],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in arrays.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))


def _write_native(path, rng, spec, int8=False, initial_state=False):
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng, scale=0.7))
    if initial_state:
        gru = gru.with_initial_state(rng.uniform(-1, 1, (spec.num_layers * spec.num_directions, spec.hidden_size)))
    (gru.quantize("int8") if int8 else gru).save(path)


def _write_keras_whole_model(path, rng):
    keras_classifier().save(path)  # Masking, GRU, Dense(softmax): a Model with a head


def _write_onnx_chain(path, rng):
    onnx = pytest.importorskip("onnx")
    onnx.save(onnx_chain(rng)[0], str(path))


def _write_torch_learned_state(path, rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(int(rng.integers(1 << 30)))
    state = {f"rnn.{name}": value for name, value in torch.nn.GRU(INPUT, 4, num_layers=2).state_dict().items()}
    torch.save({**state, "h0": torch.randn(2, 1, 4)}, path)  # a learned h0, as nn.Parameter(L*D, 1, H) saves


def _write_native_int8_model(path, rng):
    fastgru.Model.from_keras(keras_classifier()).quantize("int8").save(path)


# One entry per kind of object `fastgru.load` returns: file name -> writer(path, rng).
SOURCES = {
    "torch-float32.pt": lambda p, rng: _write_torch(p, rng),
    "torch-float64-bidirectional-2layers.pt": lambda p, rng: _write_torch(p, rng, "float64", num_layers=2,
                                                                         bidirectional=True),
    "torch-batch-first-no-bias.pth": lambda p, rng: _write_torch(p, rng, batch_first=True, bias=False),
    "torch-2layers.safetensors": _write_safetensors,
    "keras-gru.keras": lambda p, rng: _write_keras(p, rng),
    "keras-bidirectional-reset-before-hard-sigmoid.keras": lambda p, rng: _write_keras(
        p, rng, bidirectional=True, reset_after=False, recurrent_activation="hard_sigmoid"),
    "onnx-reset-before.onnx": _write_onnx,
    "native-float64-3layers-keras2-clip.fastgru": lambda p, rng: _write_native(
        p, rng, GRUSpec(INPUT, 5, num_layers=3, gate_activation="hard_sigmoid_keras2", clip=1.5, dtype="float64")),
    "native-reset-before-bidirectional.fastgru": lambda p, rng: _write_native(
        p, rng, GRUSpec(INPUT, 7, bidirectional=True, reset_after=False)),
    "native-int8.fastgru": lambda p, rng: _write_native(p, rng, GRUSpec(INPUT, 9), int8=True),
    "native-int8-bidirectional-2layers.fastgru": lambda p, rng: _write_native(
        p, rng, GRUSpec(INPUT, 9, num_layers=2, bidirectional=True), int8=True),
    "keras-whole-model-with-head.keras": _write_keras_whole_model,
    "onnx-chain-of-two-nodes.onnx": _write_onnx_chain,
    "torch-learned-initial-state.pt": _write_torch_learned_state,
    "native-learned-initial-state-int8.fastgru": lambda p, rng: _write_native(
        p, rng, GRUSpec(INPUT, 6, num_layers=2), int8=True, initial_state=True),
    "native-int8-model.fastgru": _write_native_int8_model,
}
# What fastgru.load needs to be told for a source (the file cannot say it).
LOAD_OPTIONS = {"onnx-chain-of-two-nodes.onnx": {"node_name": ["gru0", "gru1"]},
                "torch-learned-initial-state.pt": {"initial_state": "h0"}}
# What each source loads as: fastgru.Model for whole models and their conventions, fastgru.GRU otherwise.
MODEL_SOURCES = {"keras-gru.keras", "keras-bidirectional-reset-before-hard-sigmoid.keras",
                 "keras-whole-model-with-head.keras", "onnx-reset-before.onnx", "onnx-chain-of-two-nodes.onnx",
                 "native-int8-model.fastgru"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The source files, written once per module (a source whose framework is missing is skipped)."""
    folder = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(7)
    written = {}
    for name, writer in SOURCES.items():
        try:
            writer(folder / name, rng)
            written[name] = folder / name
        except pytest.skip.Exception:
            pass
    return written


@pytest.fixture(params=sorted(SOURCES))
def loaded(request, files):
    """``(source name, the object fastgru.load returns for it)``."""
    if request.param not in files:
        pytest.skip(f"{request.param}: its framework is not installed")
    return request.param, fastgru.load(files[request.param], **LOAD_OPTIONS.get(request.param, {}))


def _x(dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((STEPS, BATCH, INPUT)).astype(dtype)


def _outputs(model, x):
    """Every array a call returns, in order, whatever the calling convention."""
    result = model(x)
    flat = []
    stack = [result]
    while stack:
        item = stack.pop(0)
        if isinstance(item, (tuple, list)):
            stack[:0] = list(item)
        else:
            flat.append(np.asarray(item))
    return flat


def _assert_bit_exact(actual_model, expected_model, x=None):
    x = _x() if x is None else x
    actual, expected = _outputs(actual_model, x), _outputs(expected_model, x)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_array_equal(a, e)


def _grus(model):
    """The GRUs an object holds: itself, or a Model's."""
    return model.grus if isinstance(model, fastgru.Model) else (model,)


def test_every_source_was_written(files):
    """The installed test extras cover every source: none of the cases below was skipped for lack of one."""
    assert sorted(files) == sorted(SOURCES)


def test_each_source_loads_as_what_it_holds(loaded):
    """The sources cover both classes `fastgru.load` returns, int8 and learned initial states."""
    name, model = loaded
    assert type(model) is (fastgru.Model if name in MODEL_SOURCES else fastgru.GRU)
    assert (model.weight_format == "int8") == ("int8" in name)
    assert all(gru.initial_state is not None for gru in _grus(model)) == ("learned-initial-state" in name)
    if name == "keras-whole-model-with-head.keras":
        assert [type(layer).__name__ for layer in model.layers] == ["Masking", "KerasRecurrent", "Dense"]
    if name == "onnx-chain-of-two-nodes.onnx":
        assert model.convention == "onnx" and model.gru.spec.num_layers == 2


def _description(model):
    """What fastgru's file stores for the object, with the arrays as bytes (comparable with ==)."""
    config, arrays = model._portable()
    return config, {key: (value.dtype.str, value.shape, value.tobytes()) for key, value in arrays.items()}


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip_is_bit_exact(loaded, protocol):
    name, model = loaded
    clone = pickle.loads(pickle.dumps(model, protocol=protocol))
    assert type(clone) is type(model) and clone is not model
    assert _description(clone) == _description(model)  # layers, specs, weight formats, initial states
    assert [gru.weight_format for gru in _grus(clone)] == [gru.weight_format for gru in _grus(model)]
    _assert_bit_exact(clone, model)


def test_pickle_carries_the_bytes_save_writes(loaded, tmp_path):
    name, model = loaded
    model.save(tmp_path / "saved.fastgru")
    function, arguments = model.__reduce__()
    assert function is native.loads
    assert arguments == ((tmp_path / "saved.fastgru").read_bytes(),)
    assert arguments[0] == native.dumps(model)


def _globals(data: bytes) -> list[tuple[str, str]]:
    """The (module, name) pairs a pickle looks up, in order; protocol 2, which has no bytes opcode,
    spells bytes as _codecs.encode, which is left out."""
    names, strings = [], []
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            names.append(tuple(argument.split(" ")))
        elif "UNICODE" in opcode.name:
            strings.append(argument)
        elif opcode.name == "STACK_GLOBAL":
            names.append(tuple(strings[-2:]))
    return [name for name in names if name != ("_codecs", "encode")]


def test_unpickling_calls_nothing_but_fastgrus_loader(loaded):
    """The pickle names one global, fastgru.io.native.loads, and holds bytes: no numpy reconstructor,
    no class to instantiate."""
    name, model = loaded
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert _globals(pickle.dumps(model, protocol=protocol)) == [("fastgru.io.native", "loads")], protocol


@pytest.mark.parametrize("pickled_under, run_under", [("generic", "auto"), ("auto", "generic")])
def test_a_model_pickled_under_one_kernel_table_runs_under_another(loaded, pickled_under, run_under):
    """The pickle holds the portable weights, never the packed panels of one kernel table."""
    name, model = loaded
    try:
        _core.set_backend(isa=pickled_under)
        data = pickle.dumps(model)
        _core.set_backend(isa=run_under)
        clone = pickle.loads(data)
        _assert_bit_exact(clone, model)  # both under run_under
    finally:
        _core.set_backend()


def test_copy_and_deepcopy_share_the_packed_model(loaded):
    """A model is immutable, so copies share its packed weights (no memory, no packing) and are new
    objects; deepcopy never reaches the C object, which cannot be copied."""
    name, model = loaded
    with pytest.raises(TypeError):
        copy.deepcopy(_grus(model)[0]._model)  # what a naive deepcopy would meet
    for clone in (copy.copy(model), copy.deepcopy(model)):
        assert type(clone) is type(model) and clone is not model
        for gru, original in zip(_grus(clone), _grus(model), strict=True):
            assert gru is not original and gru._model is original._model
            assert gru.initial_state is original.initial_state  # read-only arrays are shared too
        _assert_bit_exact(clone, model)
    pair = copy.deepcopy([model, model])
    assert pair[0] is pair[1] and pair[0] is not model


@pytest.mark.parametrize("kind", ["GRU", "Model"])
def test_copies_have_their_own_num_threads(kind):
    gru = fastgru.GRU(3, 4, seed=0, num_threads=1)
    model = gru if kind == "GRU" else fastgru.Model.from_keras(keras_classifier())
    model.num_threads = 1
    for clone in (copy.copy(model), copy.deepcopy(model)):
        clone.num_threads = 2
        assert model.num_threads == 1 and clone.num_threads == 2


def test_num_threads_is_not_pickled():
    """A model sent to another process follows that process's thread budget (fastgru.threads)."""
    gru = fastgru.GRU(3, 4, seed=0, num_threads=1)
    clone = pickle.loads(pickle.dumps(gru))
    assert clone._num_threads is None and clone.num_threads == fastgru.get_num_threads()
    model = fastgru.Model.from_keras(keras_classifier())
    model.num_threads = 1
    assert all(gru._num_threads is None for gru in pickle.loads(pickle.dumps(model)).grus)


# ------------------------------------------------------------------ streams

STREAM_SPECS = {
    "float32": (GRUSpec(INPUT, 6, num_layers=2), False),
    "float64": (GRUSpec(INPUT, 6, dtype="float64"), False),
    "int8": (GRUSpec(INPUT, 6, num_layers=2), True),
}


@pytest.mark.parametrize("kind", sorted(STREAM_SPECS))
@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_a_stream_pickles_and_copies_with_its_state(rng, kind, how):
    spec, int8 = STREAM_SPECS[kind]
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng, scale=0.7))
    gru = gru.quantize("int8") if int8 else gru
    frames = rng.standard_normal((8, 2, INPUT)).astype(spec.dtype)
    stream = gru.stream(2, h0=rng.uniform(-1, 1, (spec.num_layers, 2, spec.hidden_size)), num_threads=1)
    for frame in frames[:4]:
        stream.step(frame)
    clone = {"pickle": lambda s: pickle.loads(pickle.dumps(s)), "copy": copy.copy, "deepcopy": copy.deepcopy}[how](stream)
    assert isinstance(clone, fastgru.GRUStream) and clone.batch_size == 2
    np.testing.assert_array_equal(clone.state, stream.state)
    continued = [clone.step(frame).copy() for frame in frames[4:]]
    assert not np.array_equal(clone.state, stream.state)  # independent: the original did not move
    expected = [stream.step(frame).copy() for frame in frames[4:]]
    for a, e in zip(continued, expected):
        np.testing.assert_array_equal(a, e)
    if how != "pickle":
        assert clone._num_threads == 1


def test_a_stream_unpickles_through_fastgrus_code_alone():
    stream = fastgru.GRU(INPUT, 4, seed=1).stream(2)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert _globals(pickle.dumps(stream, protocol=protocol)) == [
            ("fastgru.model", "_restore_stream"), ("fastgru.io.native", "loads")], protocol


def test_a_damaged_stream_state_raises(rng):
    stream = fastgru.GRU(INPUT, 4, seed=1).stream(2, h0=rng.uniform(-1, 1, (1, 2, 4)))
    function, (gru, batch_size, state, crc) = stream.__reduce__()
    for arguments in [(gru, batch_size, state[:-1] + bytes([state[-1] ^ 1]), crc), (gru, batch_size, state, crc ^ 1),
                      (gru, 3, state, crc), (gru, batch_size, state[:-4], crc), ("gru", batch_size, state, crc)]:
        with pytest.raises(ValueError, match="damaged pickle of a fastgru.GRUStream"):
            function(*arguments)


def test_streams_of_one_model_pickled_together_share_it(rng):
    gru = fastgru.GRU(INPUT, 4, seed=1)
    first, second = pickle.loads(pickle.dumps([gru.stream(1), gru.stream(3)]))
    assert first._gru is second._gru


def _keras_stream_model(*layers):
    from scoring_models import _keras  # Keras models on the torch backend, random weights

    return fastgru.Model.from_keras(_keras(*layers, seed=5))


def _layers():
    return pytest.importorskip("keras").layers


# Model streams whose state lives in different layers: GRU states and each row's last unmasked output
# (Masking, masked rows), a stack of GRUs with pooling sums and counts, running maxima, int8 GRUs, ONNX nodes.
MODEL_STREAMS = {
    "masking-gru-head": lambda: _keras_stream_model(_layers().Masking(0.0), _layers().GRU(5),
                                                    _layers().Dense(3, activation="softmax")),
    "gru-stack-average-pooling": lambda: _keras_stream_model(
        _layers().Masking(0.0), _layers().GRU(4, return_sequences=True), _layers().GRU(4, return_sequences=True),
        _layers().GlobalAveragePooling1D()),
    "max-pooling-int8": lambda: _keras_stream_model(_layers().GRU(4, return_sequences=True),
                                                    _layers().GlobalMaxPooling1D()).quantize("int8"),
    "return-state": lambda: _keras_stream_model(_layers().Masking(0.0), _layers().GRU(4, return_state=True)),
    "onnx-chain": lambda: fastgru.Model.from_onnx(onnx_chain()[0], node_name=["gru0", "gru1"]),
}


def _frames(rng, count=8, batch=3):
    """Frames with masked rows (all zeros) here and there, so that masked rows keep their own state."""
    frames = rng.standard_normal((count, batch, INPUT)).astype(np.float32)
    frames[1, 0] = frames[5, 2] = frames[6, 0] = 0.0
    return frames


def _step_values(value):
    return [np.array(v, copy=True) for v in (value if isinstance(value, list) else [value])]


@pytest.mark.parametrize("name", sorted(MODEL_STREAMS))
@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_a_model_stream_pickles_and_copies_with_its_state(rng, name, how):
    """Stopped mid-sequence and continued as a pickle or copy, a ModelStream gives what the original gives
    from there on, and the two are independent."""
    model = MODEL_STREAMS[name]()
    frames = _frames(rng)
    stream = model.stream(3, num_threads=1)
    for frame in frames[:4]:
        stream.step(frame)
    clone = {"pickle": lambda s: pickle.loads(pickle.dumps(s)), "copy": copy.copy, "deepcopy": copy.deepcopy}[how](stream)
    assert isinstance(clone, fastgru.ModelStream) and clone.batch_size == 3 and clone is not stream
    continued = [_step_values(clone.step(frame)) for frame in frames[4:]]
    expected = [_step_values(stream.step(frame)) for frame in frames[4:]]
    for a, e in zip(continued, expected):
        for a_part, e_part in zip(a, e, strict=True):
            np.testing.assert_array_equal(a_part, e_part)
    fresh = model.stream(3)
    first = [_step_values(fresh.step(frame)) for frame in frames[4:5]][0]
    assert not all(np.array_equal(f, c) for f, c in zip(first, continued[0]))  # the state mattered
    if how != "pickle":
        assert clone._num_threads == 1
        assert (clone._model is stream._model) == (how == "copy")


def test_a_model_stream_unpickles_through_fastgrus_code_alone():
    stream = MODEL_STREAMS["masking-gru-head"]().stream(2)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert _globals(pickle.dumps(stream, protocol=protocol)) == [
            ("fastgru.whole_model", "_restore_model_stream"), ("fastgru.io.native", "loads")], protocol


def test_a_damaged_model_stream_state_raises(rng):
    stream = MODEL_STREAMS["gru-stack-average-pooling"]().stream(2)
    stream.step(rng.standard_normal((2, INPUT)))
    function, (model, batch_size, state, crc) = stream.__reduce__()
    flipped = state[:-1] + bytes([state[-1] ^ 1])
    for arguments in [(model, batch_size, flipped, crc), (model, batch_size, state, crc ^ 1),
                      (model, 3, state, crc), (model, True, state, crc), (model, batch_size, state[:-4], crc),
                      ("model", batch_size, state, crc), (model, batch_size, bytearray(state), crc)]:
        with pytest.raises(ValueError, match="damaged pickle of a fastgru.ModelStream"):
            function(*arguments)


# ------------------------------------------------------------------ damage

def test_damaged_model_bytes_raise_value_error(loaded):
    """Any truncation or changed byte of the model's bytes is caught: by the safetensors framing, or
    else by the CRC-32 over the whole file."""
    name, model = loaded
    data = native.dumps(model)
    rng = np.random.default_rng(3)
    cuts = sorted({0, 1, 7, 8, 9, len(data) // 2, len(data) - 1, *rng.integers(0, len(data), 20).tolist()})
    for cut in cuts:
        with pytest.raises(ValueError, match=r"fastgru model bytes"):
            native.loads(data[:cut])
    for position in sorted({*rng.integers(0, len(data), 40).tolist(), len(data) - 1, 9, 20}):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[position] ^= flip
            with pytest.raises(ValueError, match=r"fastgru model bytes"):
                native.loads(bytes(damaged))


def test_damage_to_the_checksum_itself_is_caught():
    data = native.dumps(fastgru.GRU(3, 4, seed=0))
    at = data.index(b'"crc32":"') + len(b'"crc32":"')
    stored = data[at : at + 8]
    for replacement in (b"00000000", b"zzzzzzzz", stored.upper(), bytes(reversed(stored))):
        if replacement == stored:
            continue
        with pytest.raises(ValueError, match="damaged fastgru data"):
            native.loads(data[:at] + replacement + data[at + 8 :])


def test_files_without_a_checksum_still_load(rng, tmp_path):
    """Files written before fastgru stored a CRC-32 have none; they load unchecked."""
    import json

    from fastgru.io.safetensors import write_safetensors

    spec = GRUSpec(3, 4)
    weights = random_weights(spec, rng)
    write_safetensors(tmp_path / "old.fastgru", {k: v.astype(np.float32) for k, v in weights.items()},
                      {"format": "fastgru", "format_version": "1", "spec": json.dumps(spec.to_dict())})
    assert fastgru.load(tmp_path / "old.fastgru").spec == spec


_FUZZ = r"""
import pickle, sys
import numpy as np
import fastgru
from fastgru.spec import GRUSpec

models = [fastgru.GRU(3, 5, num_layers=2, bidirectional=True, seed=1),
          fastgru.GRU(3, 4, dtype=np.float64, reset_after=False, seed=2),
          fastgru.GRU(3, 6, seed=3).quantize("int8"),
          fastgru.GRU(3, 4, seed=4).stream(2)]
models += pickle.loads(open(sys.argv[1], "rb").read())  # a Model and a ModelStream, made by the test
x = np.random.default_rng(0).standard_normal((4, 2, 3))
rng = np.random.default_rng(11)
raised = equal = 0
for model in models:
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        data = pickle.dumps(model, protocol=protocol)
        cases = [data[:cut] for cut in range(0, len(data), max(1, len(data) // 150))]
        for _ in range(400):
            damaged = bytearray(data)
            for position in rng.integers(0, len(data), rng.integers(1, 4)):
                damaged[position] = rng.integers(0, 256)
            cases.append(bytes(damaged))
        for case in cases:
            try:
                clone = pickle.loads(case)
            except Exception:
                raised += 1
                continue
            # a change that pickle ignores (e.g. the protocol byte) must give the very same model
            if isinstance(model, fastgru.GRUStream):
                assert type(clone) is fastgru.GRUStream and np.array_equal(clone.state, model.state)
                same = [clone.step(x[0].astype(clone._gru.dtype)).copy()], [model.__copy__().step(x[0].astype(model._gru.dtype)).copy()]
            elif isinstance(model, fastgru.ModelStream):
                assert type(clone) is fastgru.ModelStream
                same = [clone.step(x[0]).copy()], [model.__copy__().step(x[0]).copy()]
            else:
                assert type(clone) is type(model), type(clone)
                same = clone(x.astype(clone.dtype)), model(x.astype(model.dtype))
            for a, b in zip(*same):
                assert np.array_equal(a, b), "a damaged pickle loaded as a different model"
            equal += 1
print(f"raised {raised} equal {equal}")
"""


def test_damaged_pickles_raise_and_never_crash(tmp_path, rng):
    """Thousands of truncated and garbled pickles of float, int8, Model and stream objects, in a child
    process so that a crash would show as its exit status: each raises an exception or, where pickle
    itself ignores the change, loads the very same model."""
    model = MODEL_STREAMS["masking-gru-head"]()
    stream = model.stream(2)
    stream.step(rng.standard_normal((2, INPUT)))
    (tmp_path / "models.pickle").write_bytes(pickle.dumps([model, stream]))
    script = tmp_path / "fuzz.py"
    script.write_text(_FUZZ)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "models.pickle")], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    raised, equal = (int(n) for n in result.stdout.split()[1::2])
    assert raised > 3000, result.stdout


# ------------------------------------------------------------------ other processes

def _run_model(model, x):
    return _outputs(model, x)


def test_pickled_models_run_in_a_spawned_process(files):
    """multiprocessing's spawn start method pickles the model to a fresh interpreter."""
    import multiprocessing

    models = {name: fastgru.load(path, **LOAD_OPTIONS.get(name, {})) for name, path in sorted(files.items())}
    x = _x()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        results = pool.starmap(_run_model, [(model, x) for model in models.values()])
    for (name, model), result in zip(models.items(), results):
        for actual, expected in zip(result, _outputs(model, x)):
            np.testing.assert_array_equal(actual, expected, err_msg=name)


def test_unpickling_needs_no_framework(files, tmp_path):
    """A model loaded from a torch or Keras file unpickles where only numpy and fastgru are imported."""
    pickled = tmp_path / "models.pickle"
    models = [fastgru.load(path, **LOAD_OPTIONS.get(name, {})) for name, path in sorted(files.items())
              if "keras" in name or "torch" in name]
    pickled.write_bytes(pickle.dumps(models))
    code = textwrap.dedent(f"""
        import pickle, sys
        models = pickle.loads(open({str(pickled)!r}, "rb").read())
        frameworks = sorted(set(sys.modules) & {{"torch", "keras", "onnx", "safetensors", "h5py"}})
        print(len(models), frameworks)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[0] == str(len(models)) and result.stdout.strip().endswith("[]"), result.stdout
