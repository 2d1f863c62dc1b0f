"""fastgru.batching (scoring many sequences of different lengths, grouped by length), and the parts of
fastgru.ray and fastgru.dask that need no cluster: GRUPredictor called on numpy batches as Ray Data
calls it, fastgru.dask on Dask's local schedulers, and what `import fastgru` leaves unimported."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastgru
from fastgru.batching import as_gru, length_groups, score_sequences
from fastgru.io import native

INPUT = 3
MODELS = {
    "float32": lambda: fastgru.GRU(INPUT, 8, seed=1),
    "float32-bidirectional-2layers": lambda: fastgru.GRU(INPUT, 8, num_layers=2, bidirectional=True, seed=2),
    "float32-batch-first-reset-before": lambda: fastgru.GRU(INPUT, 6, batch_first=True, reset_after=False, seed=3),
    "float64": lambda: fastgru.GRU(INPUT, 7, dtype=np.float64, num_layers=2, seed=4),
    "int8": lambda: fastgru.GRU(INPUT, 12, seed=5).quantize("int8"),
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


def test_only_a_plain_gru_is_scored():
    from fastgru.io.onnx import OnnxGRU

    wrapped = OnnxGRU(MODELS["float32"]())
    with pytest.raises(TypeError, match=r"pass its \.gru"):
        score_sequences(wrapped, [])
    with pytest.raises(TypeError, match=r"pass its \.gru"):
        as_gru(wrapped)
    with pytest.raises(TypeError, match="fastgru.GRU"):
        as_gru(42)
    with pytest.raises(TypeError, match="fastgru.GRU"):
        as_gru(pickle.dumps(MODELS["float32"]().stream(1)))


def test_as_gru_reads_paths_and_bytes(tmp_path):
    gru = MODELS["int8"]()
    gru.save(tmp_path / "model.fastgru")
    x = np.random.default_rng(2).standard_normal((5, 2, INPUT))
    for source in (gru, tmp_path / "model.fastgru", str(tmp_path / "model.fastgru"), native.dumps(gru),
                   bytearray(native.dumps(gru)), pickle.dumps(gru), pickle.dumps(gru, protocol=2)):
        loaded = as_gru(source)
        assert loaded.weight_format == "int8"
        np.testing.assert_array_equal(loaded(x)[1], gru(x)[1])


def test_as_gru_refuses_damaged_bytes():
    data = native.dumps(MODELS["float32"]())
    with pytest.raises(ValueError, match="damaged fastgru data"):
        as_gru(data[:-1] + bytes([data[-1] ^ 1]))
    pickled = pickle.dumps(MODELS["float32"]())
    for damaged in (pickled[:40], b"\x80\x05garbage", b""):
        with pytest.raises(ValueError):
            as_gru(damaged)


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


def test_import_fastgru_imports_no_framework():
    code = ("import sys, fastgru, fastgru.ray, fastgru.dask, fastgru.batching; "
            "print(sorted(set(sys.modules) & {'ray', 'dask', 'distributed', 'threadpoolctl', 'torch', 'keras', 'onnx'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
