"""Importing from Keras 3 (torch backend): GRU and Bidirectional(GRU) layers, stacked models, masks,
.keras / .weights.h5 / legacy .h5 files read without Keras, and tf.keras 2 .h5 files (built with h5py in
tf.keras 2's documented layout, since no tf.keras 2 can be installed here; see docs/sources.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch needs no TensorFlow

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastgru  # noqa: E402
from fastgru.io import UnsupportedModelError  # noqa: E402
from keras_files import keras3_reader_objects, write_tf_keras2_h5  # noqa: E402

from_keras = fastgru.Model.from_keras

keras = pytest.importorskip("keras")
# Keras' torch backend converts tensors with np.array(x), which numpy 2 warns about on every call.
# A Sequential passes a mask to its layers but warns that it does not pass one on.
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Layer '.*' \\(of type Sequential\\) was passed an input with a mask:UserWarning"),
]
TOLERANCE = 1e-5
BATCH, STEPS, FEATURES, UNITS = 4, 6, 5, 4

# Masked steps in the middle, at the end, at the start, and a sequence with none valid.
MASK = np.ones((BATCH, STEPS), dtype=bool)
MASK[0, 4:] = False
MASK[1, 2] = False
MASK[2, :] = False
MASK[3, :2] = False


def _to_numpy(value):
    if isinstance(value, (list, tuple)):
        return [_to_numpy(v) for v in value]
    return keras.ops.convert_to_numpy(value)


def _assert_same(actual, expected, what="output"):
    expected = _to_numpy(expected)
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{what}: {len(expected)} outputs expected"
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_same(a, e, f"{what}[{i}]")
        return
    assert np.shape(actual) == expected.shape, f"{what}: shape {np.shape(actual)} != {expected.shape}"
    diff = np.max(np.abs(np.asarray(actual, np.float64) - expected), initial=0.0)
    assert diff <= TOLERANCE, f"{what}: max |difference| {diff:.3g}"


def _randomize(layer, seed=0):
    """Random weights of a scale that drives the gates through their whole range (0.5: not saturated)."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.uniform(-0.8, 0.8, variable.shape).astype("float32"))
    return layer


def _built(layer, seed=0):
    layer.build((None, STEPS, FEATURES))
    return _randomize(layer, seed)


@pytest.fixture
def x(rng):
    return rng.standard_normal((BATCH, STEPS, FEATURES)).astype("float32")


LAYER_CONFIGS = [
    dict(),
    dict(return_sequences=True),
    dict(reset_after=False, return_sequences=True),
    dict(recurrent_activation="hard_sigmoid", return_sequences=True),
    dict(recurrent_activation="hard_sigmoid", reset_after=False),
    dict(go_backwards=True, return_sequences=True),
    dict(go_backwards=True, return_state=True),
    dict(return_sequences=True, return_state=True),
    dict(use_bias=False, return_sequences=True),
    dict(use_bias=False, reset_after=False, go_backwards=True),
    dict(zero_output_for_mask=True, return_sequences=True),
    dict(zero_output_for_mask=True),
]


def _id(config):
    return "-".join(f"{k}={v}" for k, v in config.items()) or "defaults"


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("config", LAYER_CONFIGS, ids=_id)
def test_gru_layer_matches_keras(x, config, masked):
    layer = _built(keras.layers.GRU(UNITS, **config))
    imported = fastgru.Model.from_keras(layer)
    assert isinstance(imported, fastgru.Model) and isinstance(imported.gru, fastgru.GRU)
    mask = MASK if masked else None
    _assert_same(imported(x, mask=mask), layer(x, mask=mask))


def test_keras3_hard_sigmoid_is_x_over_6(x):
    layer = _built(keras.layers.GRU(UNITS, recurrent_activation="hard_sigmoid"))
    assert from_keras(layer).gru.spec.gate_activation == "hard_sigmoid"


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
def test_bidirectional_matches_keras(x, merge_mode, return_sequences, masked):
    layer = keras.layers.Bidirectional(
        keras.layers.GRU(UNITS, return_sequences=return_sequences, return_state=True), merge_mode=merge_mode)
    layer = _built(layer)
    mask = MASK if masked else None
    _assert_same(from_keras(layer)(x, mask=mask), layer(x, mask=mask))


def test_bidirectional_reset_before_hard_sigmoid_without_bias(x):
    inner = keras.layers.GRU(UNITS, return_sequences=True, reset_after=False, use_bias=False,
                             recurrent_activation="hard_sigmoid")
    layer = _built(keras.layers.Bidirectional(inner))
    _assert_same(from_keras(layer)(x, mask=MASK), layer(x, mask=MASK))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["gru", "bidirectional"])
def test_initial_state_matches_keras(x, rng, bidirectional):
    layer = keras.layers.GRU(UNITS, return_sequences=True, return_state=True)
    layer = _built(keras.layers.Bidirectional(layer) if bidirectional else layer)
    states = [rng.standard_normal((BATCH, UNITS)).astype("float32") for _ in range(1 + bidirectional)]
    imported = from_keras(layer)
    _assert_same(imported(x, initial_state=states), layer(x, initial_state=states))
    _assert_same(imported(x, mask=MASK, initial_state=states), layer(x, mask=MASK, initial_state=states))


def _stacked_sequential():
    model = keras.Sequential([
        keras.Input((STEPS, FEATURES)),
        keras.layers.GRU(UNITS, return_sequences=True, reset_after=False, name="first"),
        keras.layers.GRU(UNITS, return_sequences=True, reset_after=False, name="second"),
        keras.layers.GRU(UNITS, reset_after=False, name="third"),
    ])
    return _randomize(model, 1)


def _masked_bidirectional_functional():
    inputs = keras.Input((STEPS, FEATURES))
    masked = keras.layers.Masking(0.0)(inputs)
    hidden = keras.layers.Bidirectional(keras.layers.GRU(UNITS, return_sequences=True, name="encoder_rnn"))(masked)
    outputs = keras.layers.Bidirectional(keras.layers.GRU(UNITS, return_sequences=True), merge_mode="sum")(hidden)
    return _randomize(keras.Model(inputs, outputs), 2)


def _padded(x):
    """x with the steps MASK marks as padding zeroed, so that a Masking(0.0) layer finds MASK."""
    return np.where(MASK[..., None], x, 0.0).astype("float32")


def test_stacked_sequential_imports_as_one_multilayer_gru(x):
    model = _stacked_sequential()
    imported = from_keras(model)
    assert (imported.gru.spec.num_layers, imported.gru.spec.reset_after) == (3, False)
    _assert_same(imported(x), model(x))


def test_masking_model_with_stacked_bidirectional_matches_keras(x):
    model = _masked_bidirectional_functional()
    imported = from_keras(model)
    assert (imported.gru.spec.num_layers, imported.gru.spec.bidirectional) == (2, True)
    _assert_same(imported(_padded(x)), model(_padded(x)))


def test_layer_option_picks_one_gru_layer_of_a_model(x):
    inputs = keras.Input((STEPS, FEATURES))
    hidden = keras.layers.GRU(UNITS, return_sequences=True, name="rnn")(inputs)
    model = _randomize(keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden)))
    picked = from_keras(model, layer="rnn")
    assert [layer.name for layer in picked.layers] == ["rnn"]
    _assert_same(picked(x), keras.Model(inputs, hidden)(x))
    with pytest.raises(ValueError, match=r"no GRU layer named 'head'; GRU layers: \['rnn'\]"):
        from_keras(model, layer="head")


def test_branching_model_is_refused():
    inputs = keras.Input((STEPS, FEATURES))
    first = keras.layers.GRU(UNITS, return_sequences=True, name="first")(inputs)
    second = keras.layers.GRU(UNITS, return_sequences=True, name="second")(inputs)  # not fed by `first`
    model = keras.Model(inputs, [first, second])
    with pytest.raises(UnsupportedModelError, match="2 outputs.*single chain"):
        from_keras(model)


@pytest.mark.parametrize("config, message", [
    (dict(activation="relu"), "activation='relu'"),
    (dict(recurrent_activation="tanh"), "recurrent_activation='tanh'"),
    (dict(stateful=True), "stateful=True"),
], ids=["activation", "recurrent_activation", "stateful"])
def test_unsupported_attributes_are_named(config, message):
    layer = keras.layers.GRU(UNITS, **config)
    layer.build((2 if config.get("stateful") else None, STEPS, FEATURES))
    with pytest.raises(UnsupportedModelError, match=message):
        from_keras(layer)


def test_stacked_layers_that_differ_run_as_separate_grus(x):
    model = _randomize(keras.Sequential([
        keras.Input((STEPS, FEATURES)), keras.layers.GRU(UNITS, return_sequences=True),
        keras.layers.GRU(UNITS + 1, return_sequences=True), keras.layers.GRU(UNITS + 1, reset_after=False)]))
    imported = from_keras(model)
    assert [gru.spec.hidden_size for gru in imported.grus] == [UNITS, UNITS + 1, UNITS + 1]
    _assert_same(imported(x, mask=MASK), model(x, mask=MASK))


# ---------------------------------------------------------------------------------------------
# files, read without Keras


def _run_without_keras(cases, tmp_path):
    """Loads each (path, options) in a fresh interpreter where keras, torch and tensorflow cannot be
    imported, runs it on the stored input and compares with the stored Keras output."""
    script = textwrap.dedent(f"""
        import json, sys
        for name in ("keras", "torch", "tensorflow", "onnx"):
            sys.modules[name] = None
        import numpy as np, fastgru
        for case in json.load(open({str(tmp_path / 'cases.json')!r})):
            data = np.load(case["data"])
            model = fastgru.load(case["path"], **case["options"])
            mask = data["mask"] if "mask" in data else None
            out = model(data["x"], mask=mask)
            out = out if isinstance(out, list) else [out]
            expected = [data[f"y{{i}}"] for i in range(len(out))]
            diff = max(float(np.abs(np.asarray(a, np.float64) - e).max()) for a, e in zip(out, expected))
            assert diff <= {TOLERANCE}, (case["path"], diff)
        print("ok")
    """)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def _case(tmp_path, name, path, model, x, options=None, mask=None):
    expected = _to_numpy(model(x, mask=mask) if mask is not None else model(x))
    expected = expected if isinstance(expected, list) else [expected]
    data = {"x": x, **{f"y{i}": y for i, y in enumerate(expected)}}
    if mask is not None:
        data["mask"] = mask
    np.savez(tmp_path / f"{name}.npz", **data)
    return {"path": str(path), "options": options or {}, "data": str(tmp_path / f"{name}.npz")}


def test_keras_files_load_without_keras(x, tmp_path):
    cases = []
    functional = _masked_bidirectional_functional()
    sequential = _stacked_sequential()
    backwards = _built(keras.layers.GRU(UNITS, go_backwards=True, recurrent_activation="hard_sigmoid",
                                        return_sequences=True))
    backwards_model = keras.Sequential([keras.Input((STEPS, FEATURES)), backwards])
    for label, model, data in (("functional", functional, _padded(x)), ("sequential", sequential, x),
                               ("backwards", backwards_model, x)):
        model.save(tmp_path / f"{label}.keras")
        model.save(tmp_path / f"{label}.h5")  # Keras 3 writing the legacy format
        for suffix in (".keras", ".h5"):
            cases.append(_case(tmp_path, label + suffix, tmp_path / f"{label}{suffix}", model, data))
    cases.append(_case(tmp_path, "backwards-masked", tmp_path / "backwards.keras", backwards, x, mask=MASK))
    # .weights.h5 holds no config: Keras' defaults apply unless overridden
    single = keras.Sequential([keras.Input((STEPS, FEATURES)), _built(keras.layers.GRU(UNITS, return_sequences=True))])
    single.save_weights(tmp_path / "single.weights.h5")
    cases.append(_case(tmp_path, "weights", tmp_path / "single.weights.h5", single, x, {"return_sequences": True}))
    sequential.save_weights(tmp_path / "stacked.weights.h5")  # pick one layer: its input is the layer before's output
    hidden = _to_numpy(keras.Model(sequential.inputs[0], sequential.layers[1].output)(x))
    cases.append(_case(tmp_path, "weights-layer", tmp_path / "stacked.weights.h5", sequential.layers[2], hidden,
                       {"layer": "third", "reset_after": False}))
    _run_without_keras(cases, tmp_path)


def test_weights_file_with_several_grus_lists_them(tmp_path):
    _stacked_sequential().save_weights(tmp_path / "stacked.weights.h5")
    with pytest.raises(ValueError, match=r"stacked\.weights\.h5.*no model config.*layer=.*'first', 'second', 'third'"):
        fastgru.load(tmp_path / "stacked.weights.h5")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_corrupted_keras_files_name_the_file(tmp_path, suffix, damage, rng):
    path = tmp_path / f"model{suffix}"
    _stacked_sequential().save(path)
    data = path.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # the format's magic number, then noise
        data = data[:8] + rng.integers(0, 256, len(data) - 8, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    with pytest.raises(ValueError, match=path.name):
        fastgru.load(path)


def test_missing_and_misshaped_tensors_name_file_and_tensor(tmp_path):
    import h5py

    path = tmp_path / "model.h5"
    _stacked_sequential().save(path)
    with h5py.File(path, "r+") as file:
        layer = file["model_weights/second"]
        name = next(n.decode() if isinstance(n, bytes) else n for n in layer.attrs["weight_names"]
                    if "recurrent_kernel" in str(n))
        del layer[name]
        layer[name] = np.zeros((UNITS, 2 * UNITS), "float32")
    with pytest.raises(ValueError, match=rf"model\.h5.*{name}.*shape \(4, 8\)"):
        fastgru.load(path)
    with h5py.File(path, "r+") as file:
        del file["model_weights/second"][name]
    with pytest.raises(ValueError, match=rf"model\.h5.*missing tensor.*{name}"):
        fastgru.load(path)


# ---------------------------------------------------------------------------------------------
# tf.keras 2 .h5 files (model.save("m.h5") in TensorFlow 2.x)


def _keras2_hard_sigmoid(x):
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def test_tf_keras2_h5_layout_is_what_keras_reads(x, tmp_path):
    """Keras 3's own legacy loader accepts the hand-built tf.keras 2 file and restores the same model."""
    model = keras.Sequential([
        keras.Input((STEPS, FEATURES)),
        keras.layers.Bidirectional(keras.layers.GRU(UNITS, return_sequences=True)),
        keras.layers.Bidirectional(keras.layers.GRU(UNITS, return_sequences=True), merge_mode="ave"),
    ])
    model = _randomize(model, 3)
    path = tmp_path / "tf_keras2.h5"
    write_tf_keras2_h5(path, model)
    with keras.saving.custom_object_scope(keras3_reader_objects()):
        restored = keras.models.load_model(path, compile=False)
    _assert_same(_to_numpy(restored(x)), model(x), "Keras 3 reading the file")
    imported = fastgru.load(path)
    assert imported.gru.spec.num_layers == 2 and imported.gru.spec.bidirectional
    _assert_same(imported(x, mask=MASK), model(x, mask=MASK), "fastgru reading the file")


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_tf_keras2_hard_sigmoid_is_keras2s(x, tmp_path, reset_after):
    """keras_version 2.x in the file means hard_sigmoid = clip(0.2 x + 0.5): compare with Keras 3 running
    that exact function, and check Keras 3's own hard_sigmoid would differ."""
    model = keras.Sequential([keras.Input((STEPS, FEATURES)), keras.layers.GRU(
        UNITS, return_sequences=True, recurrent_activation="hard_sigmoid", reset_after=reset_after)])
    model = _randomize(model, 4)
    path = tmp_path / "tf_keras2.h5"
    write_tf_keras2_h5(path, model)
    keras2_layer = keras.layers.GRU(UNITS, return_sequences=True, recurrent_activation=_keras2_hard_sigmoid,
                                    reset_after=reset_after)
    keras2_layer.build((None, STEPS, FEATURES))
    keras2_layer.set_weights(model.layers[0].get_weights())
    imported = fastgru.load(path)
    assert imported.gru.spec.gate_activation == "hard_sigmoid_keras2"
    _assert_same(imported(x), keras2_layer(x))
    assert np.abs(imported(x) - _to_numpy(model(x))).max() > 1e-3  # Keras 3's hard_sigmoid is another function
    assert fastgru.load(path, keras_version="3.0").gru.spec.gate_activation == "hard_sigmoid"


def test_tf_keras2_weights_only_h5(x, tmp_path):
    """tf.keras 2's save_weights("w.h5"): the same groups at the root, no model_config."""
    import h5py

    model = keras.Sequential([keras.Input((STEPS, FEATURES)), keras.layers.GRU(UNITS, return_sequences=True)])
    model = _randomize(model, 5)
    full = tmp_path / "full.h5"
    write_tf_keras2_h5(full, model)
    weights_only = tmp_path / "weights.h5"
    with h5py.File(full, "r") as source, h5py.File(weights_only, "w") as target:
        for key, value in source["model_weights"].attrs.items():
            target.attrs[key] = value
        for name in source["model_weights"]:
            source.copy(source["model_weights"][name], target, name)
    _assert_same(fastgru.load(weights_only, return_sequences=True)(x), model(x))


def test_tf_keras2_time_major_is_refused(tmp_path):
    import h5py

    model = _randomize(keras.Sequential([keras.Input((STEPS, FEATURES)), keras.layers.GRU(UNITS)]))
    path = tmp_path / "time_major.h5"
    write_tf_keras2_h5(path, model)
    with h5py.File(path, "r+") as file:
        config = file.attrs["model_config"]
        config = config.decode() if isinstance(config, bytes) else config
        file.attrs["model_config"] = config.replace('"time_major": false', '"time_major": true')
    with pytest.raises(UnsupportedModelError, match="time_major=True"):
        fastgru.load(path)


def test_legacy_h5_with_chunked_name_attributes(x, tmp_path):
    """Keras splits long layer_names/weight_names attributes into layer_names0, layer_names1, ..."""
    import h5py

    model = _randomize(keras.Sequential([keras.Input((STEPS, FEATURES)), keras.layers.GRU(UNITS, return_sequences=True),
                                         keras.layers.GRU(UNITS, return_sequences=True)]), 6)
    path = tmp_path / "chunked.h5"
    write_tf_keras2_h5(path, model)
    with h5py.File(path, "r+") as file:
        group = file["model_weights"]
        names = list(group.attrs.pop("layer_names"))
        group.attrs["layer_names0"], group.attrs["layer_names1"] = names[:1], names[1:]
        layer = group[names[1].decode() if isinstance(names[1], bytes) else names[1]]
        weight_names = list(layer.attrs.pop("weight_names"))
        layer.attrs["weight_names0"], layer.attrs["weight_names1"] = weight_names[:2], weight_names[2:]
    _assert_same(fastgru.load(path)(x), model(x))
