"""Whole Keras models as fastgru.Model: every supported layer, in front of and behind GRUs, and realistic
chains of them, against ``model.predict`` of Keras 3 (torch backend), masks included (Masking and
Embedding(mask_zero=True) masks through GRUs into mask-aware pooling); files Keras wrote (.keras, .h5),
loaded with and without Keras installed; and the refusal of everything else."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastgru
from fastgru.io import UnsupportedModelError
from keras_cases import (FEATURES, MASK, STEPS, UNITS, WARNINGS, assert_same, inputs, predict, randomize,
                         sequential, to_numpy)

keras = pytest.importorskip("keras")
L = keras.layers
pytestmark = [pytest.mark.filterwarnings(w) for w in WARNINGS]


def _activations():
    from keras.src.activations import ALL_OBJECTS_DICT

    # threshold needs arguments a Dense layer cannot pass: not usable as a layer activation
    return sorted(set(ALL_OBJECTS_DICT) - {"threshold"})


@pytest.mark.parametrize("where", ["dense", "activation_layer"])
@pytest.mark.parametrize("activation", _activations())
def test_every_builtin_activation_matches_keras(rng, activation, where):
    """Pre-activations of about +-3 cross every kink and saturation of the functions."""
    if where == "dense":
        head = [L.Dense(8, activation=activation)]
    else:
        head = [L.Dense(8), L.Activation(activation)]
    model = sequential(L.GRU(UNITS, return_sequences=True), *head, seed=3)
    x = inputs(rng)
    assert_same(fastgru.Model.from_keras(model)(x), predict(model, x))


def _identity_layers():
    return [L.Dropout(0.5), L.SpatialDropout1D(0.5), L.GaussianNoise(1.0), L.GaussianDropout(0.5), L.AlphaDropout(0.5),
            L.ActivityRegularization(l1=0.1), L.Identity()]


# Each case: the layers after the front; every case runs behind each front (plain, masking, embedding).
LAYER_CASES = {
    "gru-sequences": lambda: [L.GRU(UNITS, return_sequences=True)],
    "gru-last-dense": lambda: [L.GRU(UNITS), L.Dense(3)],
    "gru-return-state": lambda: [L.GRU(UNITS, return_sequences=True, return_state=True)],
    "gru-go-backwards-dense": lambda: [L.GRU(UNITS, go_backwards=True, return_sequences=True), L.Dense(2)],
    "gru-zero-output-for-mask": lambda: [L.GRU(UNITS, return_sequences=True, zero_output_for_mask=True), L.Dense(2)],
    **{f"bidirectional-{mode}": (lambda mode=mode: [L.Bidirectional(L.GRU(UNITS, return_sequences=True),
                                                                     merge_mode=mode), L.Dense(3)])
       for mode in ("concat", "sum", "ave", "mul")},
    "bidirectional-none": lambda: [L.Bidirectional(L.GRU(UNITS, return_sequences=True), merge_mode=None)],
    "bidirectional-last": lambda: [L.Bidirectional(L.GRU(UNITS)), L.Dense(2)],
    "time-distributed-dense": lambda: [L.GRU(UNITS, return_sequences=True), L.TimeDistributed(L.Dense(3, "relu"))],
    **{f"identity-{type(layer).__name__}": (lambda layer=layer: [L.GRU(UNITS, return_sequences=True), layer,
                                                                 L.Dense(2)]) for layer in _identity_layers()},
    "layer-normalization": lambda: [L.GRU(UNITS, return_sequences=True), L.LayerNormalization()],
    "layer-normalization-no-center": lambda: [L.GRU(UNITS, return_sequences=True), L.LayerNormalization(center=False)],
    "layer-normalization-no-scale": lambda: [L.GRU(UNITS, return_sequences=True), L.LayerNormalization(scale=False)],
    "layer-normalization-rms": lambda: [L.GRU(UNITS, return_sequences=True), L.LayerNormalization(rms_scaling=True)],
    "layer-normalization-time-and-features": lambda: [L.GRU(UNITS, return_sequences=True),
                                                      L.LayerNormalization(axis=[1, 2])],
    "batch-normalization": lambda: [L.GRU(UNITS, return_sequences=True), L.BatchNormalization()],
    "batch-normalization-plain": lambda: [L.GRU(UNITS), L.BatchNormalization(center=False, scale=False, epsilon=0.1)],
    "batch-normalization-first": lambda: [L.BatchNormalization(), L.GRU(UNITS, return_sequences=True)],
    "global-average-pooling": lambda: [L.GRU(UNITS, return_sequences=True), L.GlobalAveragePooling1D()],
    "global-average-pooling-keepdims": lambda: [L.GRU(UNITS, return_sequences=True),
                                                L.GlobalAveragePooling1D(keepdims=True)],
    "global-average-pooling-channels-first": lambda: [L.GRU(UNITS, return_sequences=True),
                                                      L.GlobalAveragePooling1D(data_format="channels_first")],
    "global-max-pooling": lambda: [L.GRU(UNITS, return_sequences=True), L.GlobalMaxPooling1D()],
    "global-max-pooling-keepdims": lambda: [L.GRU(UNITS, return_sequences=True), L.GlobalMaxPooling1D(keepdims=True)],
    "flatten": lambda: [L.GRU(UNITS, return_sequences=True), L.Flatten(), L.Dense(2)],
    "flatten-channels-first": lambda: [L.GRU(UNITS, return_sequences=True), L.Flatten(data_format="channels_first")],
    "dense-before-gru": lambda: [L.Dense(4, activation="tanh"), L.GRU(UNITS, return_sequences=True)],
    "masking-after-gru": lambda: [L.GRU(UNITS, return_sequences=True), L.Masking(0.0), L.GRU(UNITS)],
}
FRONTS = ["plain", "masking", "embedding"]
# Keras itself fails on a mask with channels_first pooling (it expands the mask on the wrong axis).
UNMASKED_ONLY = {"global-average-pooling-channels-first"}


@pytest.mark.parametrize("case, front", [(case, front) for case in sorted(LAYER_CASES) for front in FRONTS
                                         if front == "plain" or case not in UNMASKED_ONLY])
def test_layer_matches_keras(rng, case, front):
    model = sequential(*LAYER_CASES[case](), front=front, seed=hash(case) % 1000)
    x = inputs(rng, front)
    imported = fastgru.Model.from_keras(model)
    assert_same(imported(x), predict(model, x))


def test_gru_fed_a_mask_by_the_caller_matches_keras(rng):
    model = sequential(L.GRU(UNITS, return_sequences=True), L.GlobalAveragePooling1D(), L.Dense(2))
    x = inputs(rng)
    assert_same(fastgru.Model.from_keras(model)(x, mask=MASK), model(x, mask=MASK))


def test_float64_model_computes_in_float64(rng):
    model = randomize(keras.Sequential([keras.Input((STEPS, FEATURES), dtype="float64"),
                                        L.GRU(UNITS, return_sequences=True, dtype="float64"),
                                        L.BatchNormalization(dtype="float64"), L.Dense(3, "softmax", dtype="float64")]))
    imported = fastgru.Model.from_keras(model)
    x = inputs(rng).astype("float64")  # float32 values: Keras rounds some float64 numpy inputs to floatx
    output = imported(x)
    assert output.dtype == np.float64 and imported.dtype == np.float64
    # Keras' own float64 GRU agrees with fastgru's to 3e-16, but its float64 Dense and BatchNormalization
    # come out about 1e-7 off an exact float64 computation (measured): float64 here, 1e-6 there.
    assert_same(imported.layers[0].call(x, None)[0], predict(keras.Sequential(model.layers[:1]), x), tolerance=1e-12)
    assert_same(output, predict(model, x), tolerance=1e-6)


# ---------------------------------------------------------------------------------------------
# realistic models


def _classifier(front, units=128):
    """The common classifier: GRU then a softmax Dense on the last state."""
    return sequential(L.GRU(units, activation="tanh"), L.Dense(5, activation="softmax"), front=front, seed=1)


def _tagger(front, units=64):
    """The common tagger: GRU(return_sequences) then a Dense per step."""
    return sequential(L.GRU(units, return_sequences=True), L.Dense(1, activation="sigmoid"), front=front, seed=2)


def _deep(front):
    return sequential(L.Bidirectional(L.GRU(UNITS, return_sequences=True)), L.Dropout(0.3),
                      L.GRU(UNITS, return_sequences=True, reset_after=False), L.GRU(UNITS, return_sequences=True),
                      L.LayerNormalization(), L.GlobalAveragePooling1D(), L.Dense(8, "relu"), L.Dense(3, "softmax"),
                      front=front, seed=4)


def _functional_keyword_spotter():
    inputs_ = keras.Input((STEPS, FEATURES))
    masked = L.Masking(0.0)(inputs_)
    hidden = L.GRU(16, return_sequences=True, name="encoder")(masked)
    hidden = L.GRU(16, return_sequences=True, name="encoder_2")(hidden)
    normalized = L.BatchNormalization()(hidden)
    scores = L.TimeDistributed(L.Dense(4, activation="softmax"))(normalized)
    return randomize(keras.Model(inputs_, scores, name="spotter"), 5)


REALISTIC = {"classifier": _classifier, "tagger": _tagger, "deep": _deep}


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("name", sorted(REALISTIC))
def test_realistic_model_matches_keras(rng, name, front):
    model = REALISTIC[name](front)
    x = inputs(rng, front)
    imported = fastgru.Model.from_keras(model)
    assert_same(imported(x), predict(model, x))


def test_stacked_gru_layers_run_as_one_multilayer_gru():
    imported = fastgru.Model.from_keras(_deep("masking"))
    recurrent = [layer for layer in imported.layers if layer.grus]
    assert [layer.gru.spec.num_layers for layer in recurrent] == [1, 1, 1]  # reset_after differs: no merge
    imported = fastgru.Model.from_keras(_functional_keyword_spotter())
    assert [layer.class_name for layer in imported.layers] == ["Masking", "KerasGRU", "BatchNormalization",
                                                                "TimeDistributed"]
    assert imported.layers[1].gru.spec.num_layers == 2 and imported.layers[1].keras_layers == ["encoder", "encoder_2"]


def _functional_text_classifier():
    ids = keras.Input((STEPS,), dtype="int32")
    embedded = L.Embedding(20, FEATURES, mask_zero=True)(ids)  # its mask becomes NotEqual ops in the graph
    hidden = L.Bidirectional(L.GRU(UNITS, return_sequences=True))(embedded)
    return randomize(keras.Model(ids, L.Dense(3, "softmax")(L.GlobalAveragePooling1D()(hidden))), 6)


@pytest.mark.parametrize("build, front", [(_functional_keyword_spotter, "masking"),
                                          (_functional_text_classifier, "embedding")], ids=["masking", "embedding"])
def test_functional_chain_matches_keras(rng, tmp_path, build, front):
    model = build()
    x = inputs(rng, front)
    assert_same(fastgru.Model.from_keras(model)(x), predict(model, x))
    model.save(tmp_path / "functional.keras")
    assert_same(fastgru.load(tmp_path / "functional.keras")(x), predict(model, x))


def test_repr_lists_the_layers():
    text = repr(fastgru.Model.from_keras(_classifier("embedding")))
    assert text.splitlines()[0].startswith("fastgru.Model('sequential")
    for expected in ("Embedding(20, 5, mask_zero=True)", "GRU(5 -> 128)", "Dense(128 -> 5, activation='softmax')"):
        assert expected in text, text


# ---------------------------------------------------------------------------------------------
# files


def _save_cases(tmp_path, rng, models):
    """Saves each model as .keras and legacy .h5; returns the cases for _load_without_keras."""
    cases = []
    for name, (model, front) in models.items():
        x = inputs(rng, front)
        data = tmp_path / f"{name}.npz"
        expected = predict(model, x)
        outputs = expected if isinstance(expected, list) else [expected]
        np.savez(data, x=x, **{f"y{i}": y for i, y in enumerate(outputs)})
        for suffix in (".keras", ".h5"):
            path = tmp_path / f"{name}{suffix}"
            model.save(path)
            cases.append({"path": str(path), "data": str(data)})
    return cases


def _load_without_keras(cases, tmp_path):
    """Loads each file in a fresh interpreter where keras, tensorflow and torch cannot be imported, and
    compares with what Keras computed (stored next to the inputs)."""
    script = textwrap.dedent(f"""
        import json, sys
        for name in ("keras", "tensorflow", "torch", "onnx"):
            sys.modules[name] = None
        import numpy as np, fastgru
        for case in json.load(open({str(tmp_path / 'cases.json')!r})):
            data = np.load(case["data"])
            out = fastgru.load(case["path"])(data["x"])
            out = out if isinstance(out, list) else [out]
            for i, actual in enumerate(out):
                expected = data[f"y{{i}}"]
                assert actual.shape == expected.shape, (case["path"], actual.shape, expected.shape)
                finite = ~np.isnan(expected)
                assert (np.isnan(actual) == ~finite).all(), case["path"]
                diff = float(np.abs(actual[finite].astype(np.float64) - expected[finite]).max(initial=0))
                assert diff <= 1e-5, (case["path"], diff)
        print("ok")
    """)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_keras_files_of_whole_models_load_without_keras(rng, tmp_path):
    models = {f"{name}-{front}": (REALISTIC[name](front), front) for name in REALISTIC for front in FRONTS}
    models["spotter"] = (_functional_keyword_spotter(), "masking")
    every_layer = [L.GRU(UNITS, return_sequences=True), L.TimeDistributed(L.Dense(4)), L.LayerNormalization(),
                   *_identity_layers(), L.BatchNormalization(), L.Bidirectional(L.GRU(UNITS, return_sequences=True),
                                                                                 merge_mode="ave"),
                   L.GlobalMaxPooling1D(keepdims=True), L.Flatten(), L.Activation("gelu")]
    models["every-layer"] = (sequential(*every_layer, front="embedding", seed=6), "embedding")
    _load_without_keras(_save_cases(tmp_path, rng, models), tmp_path)


def test_keras_file_matches_the_model_in_memory(rng, tmp_path):
    model = _deep("embedding")
    model.save(tmp_path / "deep.keras")
    x = inputs(rng, "embedding")
    from_file, in_memory = fastgru.load(tmp_path / "deep.keras"), fastgru.Model.from_keras(model)
    np.testing.assert_array_equal(from_file(x), in_memory(x))
    assert repr(from_file).replace("deep.keras", "") == repr(in_memory).replace("deep.keras", "")


# ---------------------------------------------------------------------------------------------
# what is refused


@keras.saving.register_keras_serializable(package="fastgru_tests")
class _Scale(L.Layer):
    def call(self, x):
        return 2 * x


def _residual():
    x = keras.Input((STEPS, FEATURES))
    hidden = L.GRU(FEATURES, return_sequences=True)(x)
    return keras.Model(x, L.Add(name="residual")([x, hidden]))


def _two_heads():
    x = keras.Input((STEPS, FEATURES))
    first = L.GRU(UNITS, return_sequences=True, name="first")(x)
    return keras.Model(x, L.Average()([L.Dense(2, name="left")(first), L.Dense(2, name="right")(first)]))


def _explicit_mask():
    x = keras.Input((STEPS, FEATURES))
    ids = keras.Input((STEPS,), dtype="int32")
    return keras.Model([x, ids], L.GRU(UNITS)(x, mask=keras.ops.not_equal(ids, 0)))


REFUSED = {
    "lambda": (lambda: sequential(L.GRU(UNITS), L.Lambda(lambda t: t * 2, name="double")),
               r"layer 'double' is a Lambda.*supported layers: InputLayer, Masking, Embedding"),
    "custom-class": (lambda: sequential(L.GRU(UNITS), _Scale(name="scale")), r"layer 'scale' is a custom class"),
    "lstm": (lambda: sequential(L.LSTM(UNITS, name="lstm")), r"layer 'lstm' is a LSTM"),
    "conv": (lambda: sequential(L.Conv1D(3, 2, name="conv"), L.GRU(UNITS)), r"layer 'conv' is a Conv1D"),
    "time-distributed-conv": (lambda: sequential(L.GRU(UNITS, return_sequences=True),
                                                 L.TimeDistributed(L.Reshape((3, 2)), name="td")),
                              r"'td' is a TimeDistributed\(Reshape\)"),
    "residual-branch": (_residual, r"'residual' is a Add, which fastgru does not import"),
    "two-heads": (_two_heads, r"'right' takes its input from 'first', not from the layer before it \('left'\)"),
    "explicit-mask": (_explicit_mask, r"2 inputs.*single chain"),
    "stateful": (lambda: keras.Sequential([keras.Input((STEPS, FEATURES), batch_size=2),
                                           L.GRU(UNITS, stateful=True, name="g")]), r"'g'.*stateful=True"),
    "relu-gru": (lambda: sequential(L.GRU(UNITS, activation="relu", name="g")), r"'g'.*activation='relu'"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_other_layers_and_branches_are_refused_with_the_layer_named(case):
    build, message = REFUSED[case]
    with pytest.raises(UnsupportedModelError, match=message):
        fastgru.Model.from_keras(build())


def test_refused_layer_of_a_file_names_the_file(tmp_path):
    sequential(L.GRU(UNITS), L.Lambda(lambda t: t * 2, name="double")).save(tmp_path / "lambda.h5")
    with pytest.raises(UnsupportedModelError, match=r"lambda\.h5: layer 'double' is a Lambda"):
        fastgru.load(tmp_path / "lambda.h5")


def test_unknown_activation_is_refused():
    @keras.saving.register_keras_serializable(package="fastgru_tests")
    def scaled_tanh(x):
        return 2 * keras.ops.tanh(x)

    with pytest.raises(UnsupportedModelError, match=r"'head'.*activation='.*scaled_tanh' is not a built-in"):
        fastgru.Model.from_keras(sequential(L.GRU(UNITS), L.Dense(2, activation=scaled_tanh, name="head")))


def test_model_without_gru_is_refused():
    with pytest.raises(ValueError, match="no GRU"):
        fastgru.Model.from_keras(sequential(L.Dense(3)))


@pytest.mark.parametrize("bad, error, message", [
    (lambda x: x[0], ValueError, r"\(a GRU\) expects \(batch, time, features\) input, got shape \(7, 3\)"),
    (lambda x: x[..., :2], ValueError, r"expects 5 features"),
    (lambda x: x.astype(complex), TypeError, r"real numbers"),
], ids=["rank", "features", "complex"])
def test_bad_inputs_raise_clear_errors(rng, bad, error, message):
    model = fastgru.Model.from_keras(sequential(L.Dense(3), L.GRU(UNITS)))
    with pytest.raises(error, match=message):
        model(bad(inputs(rng)))


@pytest.mark.parametrize("ids, error, message", [
    (np.full((2, STEPS), 20), ValueError, r"token ids must lie in 0..19.*max 20"),
    (np.full((2, STEPS), -1), ValueError, r"min -1"),
    (np.full((2, STEPS), 1.5), ValueError, r"whole numbers"),
    (np.full((2, STEPS), True), TypeError, r"integers"),
], ids=["too-large", "negative", "fraction", "bool"])
def test_bad_token_ids_raise_clear_errors(ids, error, message):
    model = fastgru.Model.from_keras(_classifier("embedding", units=4))
    with pytest.raises(error, match=rf"layer 'embedding.*{message}"):
        model(ids)


def test_float_token_ids_holding_integers_are_accepted(rng):
    model = _classifier("embedding", units=4)
    ids = inputs(rng, "embedding")
    assert_same(fastgru.Model.from_keras(model)(ids.astype("float32")), predict(model, ids))


def test_mask_and_call_arguments_are_checked(rng):
    model = fastgru.Model.from_keras(sequential(L.GRU(UNITS)))
    x = inputs(rng)
    with pytest.raises(ValueError, match=r"mask must be \(batch, time\) = \(4, 7\)"):
        model(x, mask=MASK.T)
    with pytest.raises(TypeError, match=r"mask must be boolean"):
        model(x, mask=MASK.astype(float))
    with pytest.raises(TypeError, match=r"keras model is called as model\(x, mask=None, initial_state=None\)"):
        model(x, lengths=[1, 2, 3, 4])
    with pytest.raises(TypeError, match=r"called as model\(x, mask, initial_state\); got 4 positional"):
        model(x, MASK, None, None)
    with pytest.raises(ValueError, match="initial_state goes to the model's GRU layer.*has 2"):
        fastgru.Model.from_keras(sequential(L.GRU(3, return_sequences=True), L.LayerNormalization(), L.GRU(3)))(
            x, initial_state=[np.zeros((4, 3))])


def test_inputs_are_never_modified(rng):
    model = fastgru.Model.from_keras(_deep("masking"))
    x = inputs(rng, "masking")
    before = x.copy()
    model(x, mask=MASK)
    np.testing.assert_array_equal(x, before)


def test_outputs_do_not_alias_the_input(rng):
    model = fastgru.Model([fastgru.layers.Identity("dropout", "Dropout")])
    x = inputs(rng)
    assert not np.shares_memory(model(x), x)


def test_keras_gate_order_maps_to_torchs():
    """Keras stores z, r, h side by side; fastgru's rows are r, z, n (PyTorch's)."""
    layer = L.GRU(UNITS)
    layer.build((None, STEPS, FEATURES))
    randomize(layer)
    weight_hh = fastgru.Model.from_keras(layer).gru.weights["weight_hh_l0"]
    z, r, h = np.split(to_numpy(layer.cell.recurrent_kernel), 3, axis=1)
    np.testing.assert_array_equal(weight_hh, np.concatenate([r.T, z.T, h.T]))
