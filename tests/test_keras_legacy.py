"""Legacy Keras files (Keras 2 / tf.keras 2 ``.h5``, built with h5py in the layout they write, see
tests/keras_files.py) mean what they meant: whole models with heads, and weights-only files, whose GRU
defaults follow the file's keras_version (hard_sigmoid before Keras 2.3, reset_after by Keras and
TensorFlow version), refused where the version does not settle a default that matters."""

from __future__ import annotations

import numpy as np
import pytest

import fastgru
from fastgru.io import UnsupportedModelError
from fastgru.io.keras import gru_defaults
from keras_cases import UNITS, WARNINGS, assert_same, inputs, predict, sequential
from keras_files import keras3_reader_objects, write_tf_keras2_h5

keras = pytest.importorskip("keras")
L = keras.layers
pytestmark = [pytest.mark.filterwarnings(w) for w in WARNINGS]


def _keras2_hard_sigmoid(x):
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


HEADED = {
    "classifier": lambda: sequential(L.GRU(UNITS, activation="tanh"), L.Dense(3, activation="softmax"),
                                     front="masking", seed=1),
    "tagger": lambda: sequential(L.GRU(UNITS, return_sequences=True), L.Dense(1, activation="sigmoid"),
                                 front="embedding", seed=2),
    "every-layer": lambda: sequential(
        L.Bidirectional(L.GRU(UNITS, return_sequences=True)), L.Dropout(0.2), L.LayerNormalization(),
        L.GRU(UNITS, return_sequences=True, reset_after=False), L.BatchNormalization(),
        L.TimeDistributed(L.Dense(4, activation="relu")), L.GlobalAveragePooling1D(), L.Activation("tanh"),
        L.Dense(2), front="masking", seed=3),
    "max-pool-flatten": lambda: sequential(L.GRU(UNITS, return_sequences=True), L.GlobalMaxPooling1D(keepdims=True),
                                           L.Flatten(), L.Dense(2, "softmax"), seed=4),
}


@pytest.mark.parametrize("name", sorted(HEADED))
def test_tf_keras2_h5_of_whole_models_is_what_keras_reads(rng, tmp_path, name):
    """Keras 3's own legacy loader reads the hand-built tf.keras 2 file into a model that computes what the
    original does (so the layout, weight order and configs are right), and fastgru's import matches both."""
    model = HEADED[name]()
    front = "embedding" if isinstance(model.layers[0], L.Embedding) else "masking"
    path = tmp_path / "tf_keras2.h5"
    write_tf_keras2_h5(path, model, input_dtype="int32" if front == "embedding" else "float32")
    x = inputs(rng, front)
    with keras.saving.custom_object_scope(keras3_reader_objects()):
        restored = keras.models.load_model(path, compile=False)
    assert_same(predict(restored, x), predict(model, x), "Keras 3 reading the file")
    assert_same(fastgru.load(path)(x), predict(model, x), "fastgru reading the file")


def test_tf_keras2_dense_hard_sigmoid_is_keras2s(rng, tmp_path):
    model = sequential(L.GRU(UNITS, return_sequences=True), L.Dense(3, activation="hard_sigmoid"), seed=5)
    path = tmp_path / "tf_keras2.h5"
    write_tf_keras2_h5(path, model)
    keras2 = sequential(L.GRU(UNITS, return_sequences=True), L.Dense(3, activation=_keras2_hard_sigmoid), seed=5)
    x = 3 * inputs(rng)
    assert fastgru.load(path).layers[1].activation == "hard_sigmoid_keras2"
    assert_same(fastgru.load(path)(x), predict(keras2, x))
    assert np.abs(fastgru.load(path)(x) - predict(model, x)).max() > 1e-3  # Keras 3's hard_sigmoid differs


# ---------------------------------------------------------------------------------------------
# weights-only files: the defaults follow the version


@pytest.mark.parametrize("version, recurrent_activation, reset_after", [
    ("2.0.8", "hard_sigmoid", False),
    ("2.2.4", "hard_sigmoid", False),
    ("2.3.1", "sigmoid", False),
    ("2.1.6-tf", "hard_sigmoid", False),
    ("2.2.4-tf", None, None),
    ("2.4.0", "sigmoid", True),
    ("2.13.1", "sigmoid", True),
    ("3.5.0", "sigmoid", True),
    (None, None, None),
])
def test_gru_defaults_follow_the_keras_version(version, recurrent_activation, reset_after):
    assert gru_defaults(version) == {"recurrent_activation": recurrent_activation, "reset_after": reset_after}


def _weights_only_file(tmp_path, version, recurrent_activation, reset_after, use_bias=True, head=False):
    """A weights-only file of a GRU (and a Dense head) as the Keras of ``version`` computed it, and the
    Keras 3 model that computes the same, for comparison."""
    activation = _keras2_hard_sigmoid if recurrent_activation == "hard_sigmoid" else "sigmoid"
    layers = [L.GRU(UNITS, return_sequences=True, recurrent_activation=activation, reset_after=reset_after,
                    use_bias=use_bias)] + ([L.Dense(2)] if head else [])
    model = sequential(*layers, seed=7)
    path = tmp_path / "weights.h5"
    write_tf_keras2_h5(path, model, keras_version=version or "", weights_only=True)
    if version is None:
        import h5py

        with h5py.File(path, "r+") as file:
            del file.attrs["keras_version"]
    return path, model


@pytest.mark.parametrize("version, recurrent_activation, reset_after", [
    ("2.2.4", "hard_sigmoid", False),  # Keras before 2.3: hard_sigmoid
    ("2.3.1", "sigmoid", False),  # Keras 2.3: sigmoid, still reset_after=False
    ("2.1.6-tf", "hard_sigmoid", False),  # tf.keras under TensorFlow 1
    ("2.4.0", "sigmoid", True),  # tf.keras under TensorFlow 2
])
def test_weights_only_file_means_what_its_keras_computed(rng, tmp_path, version, recurrent_activation, reset_after):
    path, model = _weights_only_file(tmp_path, version, recurrent_activation, reset_after)
    x = 3 * inputs(rng)
    imported = fastgru.load(path, return_sequences=True)
    assert imported.gru.spec.gate_activation == ("hard_sigmoid_keras2" if recurrent_activation == "hard_sigmoid"
                                                 else "sigmoid")
    assert imported.gru.spec.reset_after == reset_after
    assert_same(imported(x), predict(model, x))


def test_early_keras2_file_is_not_read_with_sigmoid(rng, tmp_path):
    """The bug this guards against: an early Keras 2 file read with sigmoid gates is off by order 1e-1."""
    path, model = _weights_only_file(tmp_path, "2.2.4", "hard_sigmoid", False)
    x = 3 * inputs(rng)
    wrong = fastgru.load(path, return_sequences=True, recurrent_activation="sigmoid")(x)
    assert np.abs(wrong - predict(model, x)).max() > 0.05
    assert_same(fastgru.load(path, return_sequences=True)(x), predict(model, x))


@pytest.mark.parametrize("version", ["2.2.4-tf", None], ids=["tf-keras-2.2.4", "no-version"])
def test_unsettled_default_is_refused_naming_the_option(rng, tmp_path, version):
    path, model = _weights_only_file(tmp_path, version, "sigmoid", True)
    with pytest.raises(ValueError, match=r"weights\.h5: layer 'gru.*recurrent_activation.*pass recurrent_activation="):
        fastgru.load(path)
    x = inputs(rng)
    assert_same(fastgru.load(path, return_sequences=True, recurrent_activation="sigmoid")(x), predict(model, x))


def test_unsettled_reset_after_without_bias_is_refused(rng, tmp_path):
    path, model = _weights_only_file(tmp_path, "2.2.4-tf", "sigmoid", True, use_bias=False)
    with pytest.raises(ValueError, match=r"no bias.*pass reset_after=True or reset_after=False"):
        fastgru.load(path, recurrent_activation="sigmoid")
    imported = fastgru.load(path, recurrent_activation="sigmoid", reset_after=True, return_sequences=True)
    x = inputs(rng)
    assert_same(imported(x), predict(model, x))


def test_hard_sigmoid_without_version_is_refused(tmp_path):
    path, _ = _weights_only_file(tmp_path, None, "hard_sigmoid", False)
    with pytest.raises(ValueError, match=r"'hard_sigmoid' means 0.2x\+0.5 in Keras 2.*pass keras_version="):
        fastgru.load(path, recurrent_activation="hard_sigmoid")
    assert fastgru.load(path, recurrent_activation="hard_sigmoid", keras_version="2").gru.spec.gate_activation == \
        "hard_sigmoid_keras2"


def test_full_config_without_reset_after_is_keras_2_0s_reset_before(rng, tmp_path):
    """Keras < 2.1 configs have no reset_after key: the GRU was reset-before, which the bias confirms."""
    import h5py
    import json

    model = sequential(L.GRU(UNITS, return_sequences=True, reset_after=False), seed=8)
    path = tmp_path / "keras20.h5"
    write_tf_keras2_h5(path, model, keras_version="2.0.8")
    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        del config["config"]["layers"][1]["config"]["reset_after"]
        file.attrs["model_config"] = json.dumps(config)
    imported = fastgru.load(path)
    assert not imported.gru.spec.reset_after
    x = inputs(rng)
    assert_same(imported(x), predict(model, x))


def test_weights_only_file_with_other_layers_imports_the_gru_alone(rng, tmp_path):
    """A save_weights file holds no config: the Dense head cannot be rebuilt (its activation is unknown).
    fastgru.load says so; the GRU alone imports without layer=, and the messages count GRU layers only."""
    path, model = _weights_only_file(tmp_path, "2.13.1", "sigmoid", True, head=True)
    with pytest.raises(UnsupportedModelError, match=r"layers \['dense.*'\] have weights but no options.*"
                                                    r"fastgru.GRU.from_keras\(path\) imports the GRU alone"):
        fastgru.load(path)
    gru = fastgru.GRU.from_keras(path)
    x = inputs(rng)
    expected = predict(keras.Sequential(model.layers[:1]), x)
    assert_same(gru(x)[0], expected)
    layer = model.layers[0].name
    assert_same(fastgru.load(path, layer=layer, return_sequences=True)(x), expected)


def test_messages_about_several_grus_count_only_gru_layers(tmp_path):
    model = sequential(L.GRU(UNITS, return_sequences=True), L.Dense(3), L.GRU(UNITS), seed=9)
    path = tmp_path / "weights.h5"
    write_tf_keras2_h5(path, model, weights_only=True)
    names = [layer.name for layer in model.layers if isinstance(layer, L.GRU)]
    listed = rf"\['{names[0]}', '{names[1]}'\]"
    with pytest.raises(ValueError, match=rf"2 GRU layers.*no model config.*layer= one of {listed}"):
        fastgru.GRU.from_keras(path)
    assert fastgru.GRU.from_keras(path, layer=names[1]).spec.input_size == 3


def test_tf_keras2_masked_bidirectional_matches(rng, tmp_path):
    model = sequential(L.Bidirectional(L.GRU(UNITS, return_sequences=True)), L.GlobalAveragePooling1D(),
                       front="masking", seed=10)
    path = tmp_path / "tf_keras2.h5"
    write_tf_keras2_h5(path, model)
    x = inputs(rng, "masking")
    assert_same(fastgru.load(path)(x), predict(model, x))
