"""fastgru.batching (scoring many sequences of different lengths, grouped by length, with a GRU or a whole
Model), and the parts of fastgru.ray and fastgru.dask that need no cluster: GRUPredictor called on numpy
batches as Ray Data calls it, fastgru.dask on Dask's local schedulers, and what `import fastgru` leaves
unimported."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastgru
from fastgru.batching import as_model, length_groups, score_sequences
from fastgru.io import native
from scoring_models import INPUT, WHOLE_MODELS, alone_of_model, model_sequences

pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*does not support masking.*:UserWarning")]
MODELS = {
    "float32": lambda: fastgru.GRU(INPUT, 8, seed=1),
    "float32-bidirectional-2layers": lambda: fastgru.GRU(INPUT, 8, num_layers=2, bidirectional=True, seed=2),
    "float32-batch-first-reset-before": lambda: fastgru.GRU(INPUT, 6, batch_first=True, reset_after=False, seed=3),
    "float64": lambda: fastgru.GRU(INPUT, 7, dtype=np.float64, num_layers=2, seed=4),
    "int8": lambda: fastgru.GRU(INPUT, 12, seed=5).quantize("int8"),
    "learned-initial-state": lambda: fastgru.GRU(INPUT, 5, seed=6).with_initial_state(np.linspace(-0.5, 0.5, 5)),
}


def _sequences(seed=0, count=40, max_steps=30, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(1, max_steps)), INPUT)).astype(dtype) for _ in range(count)]


def _alone(gru, sequence):
    """(h_n (L*D, H), output (T, D*H)) of a call on the sequence as a batch of one."""
    x = sequence[None] if gru.spec.batch_first else sequence[:, None]
    output, h_n = gru(x)
    return h_n[:, 0], (output[0] if gru.spec.batch_first else output[:, 0])


@pytest.mark.parametrize("max_rows", [1, 5, 64])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_result_is_that_of_a_call_on_the_sequence_alone(name, max_rows):
    """Bit for bit in float64 and int8 and for groups of one; float32 groups of several may round a row
    differently in the last bit (rows share 4- or 8-row tiles in the vector kernels)."""
    gru = MODELS[name]()
    sequences = _sequences()
    result = score_sequences(gru, sequences, outputs=("h_n", "output"), max_rows=max_rows)
    assert result["h_n"].shape == (len(sequences), gru.spec.num_layers * gru.spec.num_directions, gru.hidden_size)
    assert len(result["output"]) == len(sequences)
    exact = gru.dtype != np.float32 or gru.weight_format == "int8" or max_rows == 1
    for sequence, h_n, output in zip(sequences, result["h_n"], result["output"]):
        expected_h_n, expected_output = _alone(gru, sequence)
        assert output.shape == expected_output.shape and output.dtype == gru.dtype
        if exact:
            np.testing.assert_array_equal(h_n, expected_h_n)
            np.testing.assert_array_equal(output, expected_output)
        else:
            np.testing.assert_allclose(h_n, expected_h_n, rtol=0, atol=1e-6)
            np.testing.assert_allclose(output, expected_output, rtol=0, atol=1e-6)


def test_groups_are_sorted_by_length_and_bounded():
    lengths = np.array([5, 1, 9, 1, 3, 7, 2])
    groups = length_groups(lengths, max_rows=3)
    assert [list(g) for g in groups] == [[1, 3, 6], [4, 0, 5], [2]]


def test_input_forms_give_the_same_results():
    """A list, a tuple, Ray's object column, one (N, T, I) array, nested lists: the same numbers."""
    gru = MODELS["float64"]()
    x = np.random.default_rng(1).standard_normal((6, 9, INPUT))
    expected = score_sequences(gru, list(x))["h_n"]
    column = np.empty(6, dtype=object)
    for i, row in enumerate(x):
        column[i] = row
    for form in (x, tuple(x), column, [row.tolist() for row in x]):
        np.testing.assert_array_equal(score_sequences(gru, form)["h_n"], expected)


def test_sequences_are_converted_to_the_models_dtype():
    gru = MODELS["float64"]()
    x = np.random.default_rng(1).standard_normal((6, 9, INPUT)).astype(np.float32)
    np.testing.assert_array_equal(score_sequences(gru, list(x))["h_n"], score_sequences(gru, x.astype(np.float64))["h_n"])


def test_empty_and_zero_length_sequences():
    gru = MODELS["float32-bidirectional-2layers"]()
    empty = score_sequences(gru, [], outputs=("h_n", "output"))
    assert empty["h_n"].shape == (0, 4, 8) and empty["output"] == []
    sequences = [np.zeros((0, INPUT)), np.ones((4, INPUT)), np.zeros((0, INPUT))]
    result = score_sequences(gru, sequences, outputs=("h_n", "output"))
    assert not result["h_n"][[0, 2]].any() and result["h_n"][1].any()
    assert [o.shape for o in result["output"]] == [(0, 16), (4, 16), (0, 16)]
    np.testing.assert_array_equal(result["h_n"][1], _alone(gru, sequences[1].astype(np.float32))[0])


def test_a_zero_length_sequence_ends_in_the_learned_initial_state():
    gru = MODELS["learned-initial-state"]()
    result = score_sequences(gru, [np.zeros((0, INPUT)), np.ones((3, INPUT))])["h_n"]
    np.testing.assert_array_equal(result[0], gru.initial_state)
    np.testing.assert_array_equal(result[0], _alone(gru, np.zeros((0, INPUT), np.float32))[0])


def test_inputs_are_not_modified():
    gru = MODELS["float32"]()
    sequences = _sequences(count=5)
    copies = [s.copy() for s in sequences]
    score_sequences(gru, sequences, outputs="output")
    for a, b in zip(sequences, copies):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("sequences, error, message", [
    ([np.zeros((3, 2))], ValueError, r"sequence 0 must have shape \(T, 3\)"),
    ([np.zeros((3, 3)), np.zeros(3)], ValueError, "sequence 1"),
    ([np.zeros((2, 3, 3))], ValueError, "sequence 0"),
    ([np.zeros((3, 3), complex)], TypeError, "sequence 0 must hold real numbers"),
    ([np.array([["a", "b", "c"]])], TypeError, "real numbers"),
    (np.zeros((4, 3)), ValueError, "3-D"),
    ("abc", TypeError, "list of"),
    (5, TypeError, "list of"),
])
def test_bad_sequences_raise_naming_the_row(sequences, error, message):
    with pytest.raises(error, match=message):
        score_sequences(MODELS["float32"](), sequences)


def test_bad_options_raise():
    gru = MODELS["float32"]()
    for outputs in ("state", (), ("h_n", "h_n"), ("h_n", 3)):
        with pytest.raises(ValueError, match="outputs"):
            score_sequences(gru, [], outputs=outputs)
    for max_rows in (0, -1, 2.0, True, "8"):
        with pytest.raises(ValueError, match="max_rows"):
            score_sequences(gru, [], max_rows=max_rows)


def test_only_a_gru_or_a_model_is_scored():
    stream = MODELS["float32"]().stream(1)
    for other in (42, stream, pickle.dumps(stream), {"gru": MODELS["float32"]()}):
        with pytest.raises(TypeError, match=r"fastgru\.GRU or fastgru\.Model"):
            as_model(other)
    with pytest.raises(TypeError, match=r"fastgru\.GRU or fastgru\.Model"):
        score_sequences(stream, [])


def test_as_model_reads_paths_and_bytes(tmp_path):
    gru = MODELS["int8"]()
    gru.save(tmp_path / "model.fastgru")
    x = np.random.default_rng(2).standard_normal((5, 2, INPUT))
    for source in (gru, tmp_path / "model.fastgru", str(tmp_path / "model.fastgru"), native.dumps(gru),
                   bytearray(native.dumps(gru)), pickle.dumps(gru), pickle.dumps(gru, protocol=2)):
        loaded = as_model(source)
        assert loaded.weight_format == "int8"
        np.testing.assert_array_equal(loaded(x)[1], gru(x)[1])


def test_as_model_refuses_damaged_bytes():
    data = native.dumps(MODELS["float32"]())
    with pytest.raises(ValueError, match="damaged fastgru data"):
        as_model(data[:-1] + bytes([data[-1] ^ 1]))
    pickled = pickle.dumps(MODELS["float32"]())
    for damaged in (pickled[:40], b"\x80\x05garbage", b""):
        with pytest.raises(ValueError):
            as_model(damaged)


# ------------------------------------------------------------------ whole models (fastgru.Model)

@pytest.fixture(scope="module")
def whole_models():
    """name -> fastgru.Model, built once (Keras models on the torch backend, an ONNX node chain)."""
    return {name: build() for name, build in WHOLE_MODELS.items()}


@pytest.mark.parametrize("max_rows", [1, 3, 64])
@pytest.mark.parametrize("name", sorted(WHOLE_MODELS))
def test_a_models_result_is_that_of_a_call_on_the_sequence_alone(whole_models, name, max_rows):
    """Equal-length groups: whatever the layers do with masks or with the whole sequence, each row is what
    the model returns for that sequence alone (float32 groups of several: to the last bit, as for a GRU)."""
    model = whole_models[name]
    sequences = model_sequences(model, seed=5, count=24, max_steps=6)  # few lengths: groups of several
    result = score_sequences(model, sequences, max_rows=max_rows)
    assert sorted(result) == ["output"] and len(result["output"]) == len(sequences)
    for sequence, actual in zip(sequences, result["output"]):
        expected = alone_of_model(model, sequence)
        assert type(actual) is type(expected)
        for a, e in zip(*((actual, expected) if isinstance(expected, tuple) else ((actual,), (expected,)))):
            assert a.shape == e.shape and a.dtype == e.dtype
            np.testing.assert_allclose(a, e, rtol=0, atol=0 if max_rows == 1 else 1e-6)


def test_a_model_groups_only_equal_lengths():
    assert [list(g) for g in length_groups(np.array([3, 1, 3, 2, 3, 1]), max_rows=2, equal=True)] == [
        [1, 5], [3], [0, 2], [4]]


def test_a_model_takes_outputs_output_only(whole_models):
    model = whole_models["keras-masking-classifier"]
    for outputs in ("h_n", ("h_n", "output"), "state"):
        with pytest.raises(ValueError, match="outputs"):
            score_sequences(model, [], outputs=outputs)
    assert score_sequences(model, [], outputs="output") == {"output": []}


def test_bad_sequences_for_a_model_name_the_row(whole_models):
    with pytest.raises(ValueError, match=r"sequence 1 must have shape \(T, 3\)"):
        score_sequences(whole_models["keras-masking-classifier"], [np.zeros((2, INPUT)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"sequence 0 must have shape \(T,\) \(token ids"):
        score_sequences(whole_models["keras-embedding-tagger"], [np.zeros((2, INPUT), int)])


def test_a_model_passes_num_threads_to_its_grus(whole_models, monkeypatch):
    from fastgru import model as model_module

    counts = []
    original = model_module._thread_pool
    monkeypatch.setattr(model_module, "_thread_pool", lambda n: counts.append(n) or original(n))
    model = whole_models["onnx-chain"]
    score_sequences(model, model_sequences(model, count=3), max_rows=64, num_threads=2)
    assert counts and set(counts) == {2}


# ------------------------------------------------------------------ fastgru.ray without a cluster

def test_predictor_scores_a_numpy_batch_as_ray_data_hands_it():
    from fastgru.ray import GRUPredictor

    gru = MODELS["float32-bidirectional-2layers"]()
    sequences = _sequences(count=9)
    column = np.empty(9, dtype=object)
    for i, s in enumerate(sequences):
        column[i] = s
    batch = {"id": np.arange(9), "x": column}
    scored = GRUPredictor(gru, outputs=("h_n", "output"))(batch)
    assert sorted(scored) == ["h_n", "id", "output"]
    expected = score_sequences(gru, sequences, outputs=("h_n", "output"))
    np.testing.assert_array_equal(scored["h_n"], expected["h_n"])
    assert scored["output"].dtype == object and scored["output"].shape == (9,)
    for a, b in zip(scored["output"], expected["output"]):
        np.testing.assert_array_equal(a, b)
    equal = GRUPredictor(gru, outputs="output", keep_input=True)({"x": np.ones((4, 6, INPUT), np.float32)})
    assert sorted(equal) == ["output", "x"] and equal["output"].shape == (4,) and equal["output"][0].shape == (6, 16)


@pytest.mark.parametrize("name, columns", [("keras-masking-classifier", ["output"]),
                                           ("keras-return-state", ["output_0", "output_1"]),
                                           ("onnx-chain", ["output_0", "output_1"])])
def test_predictor_scores_a_model_into_one_column_per_array_it_returns(whole_models, name, columns):
    from fastgru.ray import GRUPredictor

    model = whole_models[name]
    sequences = model_sequences(model, count=7)
    column = np.empty(7, dtype=object)
    for i, s in enumerate(sequences):
        column[i] = s
    scored = GRUPredictor(model)({"id": np.arange(7), "x": column})
    assert sorted(scored) == sorted(["id", *columns])
    for row, sequence in enumerate(sequences):
        expected = alone_of_model(model, sequence)
        expected = expected if isinstance(expected, tuple) else (expected,)
        for name_, e in zip(columns, expected):
            assert scored[name_].dtype == object
            np.testing.assert_allclose(scored[name_][row], e, rtol=0, atol=1e-6)


def test_predictor_refuses_bad_batches_and_options():
    from fastgru.ray import GRUPredictor

    predictor = GRUPredictor(MODELS["float32"]())
    with pytest.raises(KeyError, match="no column 'x'"):
        predictor({"features": np.ones((2, 3, INPUT))})
    with pytest.raises(ValueError, match="already has column"):
        predictor({"x": np.ones((2, 3, INPUT)), "h_n": np.zeros(2)})
    with pytest.raises(TypeError, match="numpy batches"):
        predictor([np.ones((3, INPUT))])
    with pytest.raises(ValueError, match="outputs"):
        GRUPredictor(MODELS["float32"](), outputs="state")
    with pytest.raises(ValueError, match="max_rows"):
        GRUPredictor(MODELS["float32"](), max_rows=0)


# ------------------------------------------------------------------ fastgru.dask without a client

def test_dask_on_the_local_schedulers():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    db = pytest.importorskip("dask.bag")
    import fastgru.dask

    gru = MODELS["float64"]()
    sequences = _sequences(seed=3, count=30)
    expected = score_sequences(gru, sequences, max_rows=64)["h_n"]
    for scheduler in ("sync", "threads"):
        with dask.config.set(scheduler=scheduler):
            assert isinstance(fastgru.dask.share(gru), dask.delayed(0).__class__)
            np.testing.assert_array_equal(np.stack(fastgru.dask.score(gru, sequences, partition_size=7)), expected)
            bag = fastgru.dask.score(gru, db.from_sequence(sequences, npartitions=3))
            np.testing.assert_array_equal(np.stack(bag.compute()), expected)
            x = np.random.default_rng(4).standard_normal((10, 5, INPUT))
            array = fastgru.dask.score(gru, da.from_array(x, chunks=(4, 5, INPUT)), outputs="output").compute()
            np.testing.assert_array_equal(array, np.stack(score_sequences(gru, x, outputs="output")["output"]))


@pytest.mark.parametrize("name", ["keras-masking-classifier", "keras-embedding-tagger"])
def test_dask_scores_a_model_on_the_local_schedulers(whole_models, name):
    """A list, a Bag and a dask array (whose result shape the model's output gives: (N, classes) for a
    classifier, (N, T, 1) for a tagger) give the one-process results."""
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    db = pytest.importorskip("dask.bag")
    import fastgru.dask

    model = whole_models[name]
    sequences = model_sequences(model, seed=3, count=12)
    expected = score_sequences(model, sequences)["output"]
    equal = np.stack(model_sequences(model, seed=4, count=10, steps=5))  # (10, 5, ...) one length
    with dask.config.set(scheduler="sync"):
        for result in (fastgru.dask.score(model, sequences, partition_size=5),
                       fastgru.dask.score(model, db.from_sequence(sequences, npartitions=3)).compute()):
            for a, e in zip(result, expected):  # other partitions, other groups: float32's last bit
                np.testing.assert_allclose(a, e, rtol=0, atol=1e-6)
        chunks = (4,) + equal.shape[1:]
        array = fastgru.dask.score(model, da.from_array(equal, chunks=chunks)).compute()
        np.testing.assert_allclose(array, np.stack(score_sequences(model, equal)["output"]), rtol=0, atol=1e-6)


def test_dask_arrays_refuse_models_with_several_outputs(whole_models):
    da = pytest.importorskip("dask.array")
    import fastgru.dask

    for name in ("keras-return-state", "onnx-chain"):
        with pytest.raises(ValueError, match="Bag or a list"):
            fastgru.dask.score(whole_models[name], da.zeros((4, 5, INPUT), chunks=2))


def test_import_fastgru_imports_no_framework():
    code = ("import sys, fastgru, fastgru.ray, fastgru.dask, fastgru.batching; "
            "print(sorted(set(sys.modules) & {'ray', 'dask', 'distributed', 'threadpoolctl', 'torch', 'keras', 'onnx'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
