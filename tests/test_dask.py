"""fastgru.dask on a real local Dask cluster (``LocalCluster(n_workers=2, threads_per_worker=1,
processes=True)``), started once for this module, bound to 127.0.0.1 and inside a network namespace with
only the loopback interface (tools/loopback.py: required as root and in CI, where failing to create it
fails the module; a user without CAP_SYS_ADMIN runs on the 127.0.0.1 settings alone).

Results are compared with `score_sequences` run in this process on the same partitions, so they must be
equal bit for bit in every dtype; the model must reach each worker once, however many tasks use it."""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fastgru
from fastgru.batching import score_sequences
from fastgru.io import native

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
psutil = pytest.importorskip("psutil")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from loopback import confine, non_loopback_listeners, outside_route  # noqa: E402

import fastgru.dask  # noqa: E402
from scoring_models import WHOLE_MODELS, model_sequences  # noqa: E402

# Keras' torch backend converts tensors with np.array(x), which numpy 2 warns about (the whole models)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")
INPUT = 3
MODELS = {
    "float32-bidirectional-2layers": lambda: fastgru.GRU(INPUT, 8, num_layers=2, bidirectional=True, seed=1),
    "float64-reset-before": lambda: fastgru.GRU(INPUT, 6, dtype=np.float64, reset_after=False, seed=2),
    "int8": lambda: fastgru.GRU(INPUT, 12, seed=3).quantize("int8"),
    "float32-batch-first": lambda: fastgru.GRU(INPUT, 5, batch_first=True, seed=4),
}


@pytest.fixture(scope="module")
def confined():
    """Whether this module's cluster runs in the loopback-only namespace (entered for the module)."""
    restore = confine()
    try:
        yield restore is not None
    finally:
        if restore:
            restore()


@pytest.fixture(scope="module")
def client(confined):
    others = {p.pid for p in psutil.Process().children(recursive=True)}  # not the cluster's
    scratch = tempfile.TemporaryDirectory(prefix="fgdask")
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None, local_directory=scratch.name) as cluster, \
                distributed.Client(cluster) as client:
            # the workers (multiprocessing's resource tracker lives as long as this process, by design)
            workers = [p for p in psutil.Process().children(recursive=True) if p.pid not in others
                       and "multiprocessing.resource_tracker" not in " ".join(p.cmdline())]
            yield client
        for process in workers:
            try:
                process.wait(timeout=30)
            except psutil.NoSuchProcess:
                pass
        left = [p.pid for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, f"the cluster left processes behind: {left}"
    finally:
        scratch.cleanup()


def _sequences(seed=0, count=90, max_steps=25, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(1, max_steps)), INPUT)).astype(dtype) for _ in range(count)]


def _local(gru, sequences, chunk, outputs="h_n"):
    """One process, the same partitions: what each task computes, concatenated."""
    kinds = (outputs,) if isinstance(outputs, str) else outputs
    results = []
    for start in range(0, len(sequences), chunk):
        part = score_sequences(gru, sequences[start : start + chunk], outputs=kinds)
        values = [list(part[kind]) for kind in kinds]
        results += [v[0] if len(kinds) == 1 else tuple(v) for v in zip(*values)]
    return results


def _assert_same(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        for x, y in zip(a if isinstance(a, tuple) else (a,), e if isinstance(e, tuple) else (e,)):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)


def test_cluster_listens_on_loopback_only(client):
    pids = [os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))]
    assert len(client.scheduler_info()["workers"]) == 2
    assert not non_loopback_listeners(pids)
    assert all(address.startswith("tcp://127.0.0.1:") for address in client.scheduler_info()["workers"])


def test_nothing_outside_the_machine_is_reachable_from_the_cluster(client, confined):
    """In the namespace, this process and the workers have no route beyond loopback (required as root and
    in CI; a user without CAP_SYS_ADMIN gets a visible skip)."""
    if not confined:
        pytest.skip("no loopback-only namespace here (no CAP_SYS_ADMIN, outside CI): the cluster relies on its "
                    "127.0.0.1 settings, which test_cluster_listens_on_loopback_only checks")
    assert outside_route() is None
    assert set(client.run(outside_route).values()) == {None}


def test_workers_follow_their_thread_budget(client):
    """Dask's nannies set OMP_NUM_THREADS=1 in each worker; fastgru follows it."""
    budgets = client.run(lambda: (os.environ.get("OMP_NUM_THREADS"), fastgru.get_num_threads()))
    assert set(budgets.values()) == {("1", 1)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_list_of_variable_length_sequences_scores_as_one_process(client, name):
    gru = MODELS[name]()
    sequences = _sequences()
    actual = fastgru.dask.score(gru, sequences, partition_size=16, outputs=("h_n", "output"))
    _assert_same(actual, _local(gru, sequences, 16, ("h_n", "output")))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_bag_scores_as_one_process(client, name):
    gru = MODELS[name]()
    sequences = _sequences(seed=1)
    bag = db.from_sequence(sequences, partition_size=20)
    result = fastgru.dask.score(native.dumps(gru), bag)  # the model as bytes works as well
    assert isinstance(result, db.Bag)
    _assert_same(result.compute(), _local(gru, sequences, 20))


@pytest.mark.parametrize("output", ["h_n", "output"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_dask_array_scores_as_one_process(client, name, output):
    gru = MODELS[name]()
    x = np.random.default_rng(2).standard_normal((30, 9, INPUT)).astype(gru.dtype)
    result = fastgru.dask.score(gru, da.from_array(x, chunks=(7, 3, INPUT)), outputs=output)
    assert isinstance(result, da.Array) and result.dtype == gru.dtype
    computed = result.compute()
    expected = np.concatenate([np.stack(score_sequences(gru, x[start : start + 7], outputs=output)[output])
                               for start in range(0, 30, 7)])
    assert computed.shape == expected.shape == result.shape
    np.testing.assert_array_equal(computed, expected)


@pytest.mark.parametrize("name", ["keras-masking-classifier", "onnx-chain"])
def test_a_whole_model_scores_as_one_process(client, name):
    """A Model (a Keras model with its head; an ONNX chain, whose results are (Y, Y_h) per sequence): a list
    and a Bag give what this process computes on the same partitions, bit for bit."""
    model = WHOLE_MODELS[name]()
    sequences = model_sequences(model, seed=6, count=60, max_steps=6)
    _assert_same(fastgru.dask.score(model, sequences, partition_size=16), _local(model, sequences, 16, "output"))
    bag = fastgru.dask.score(model, db.from_sequence(sequences, partition_size=20))
    _assert_same(bag.compute(), _local(model, sequences, 20, "output"))


def test_the_model_reaches_each_worker_once_not_once_per_task(client):
    """Counts, in each worker process, the calls of fastgru's unpickler (fastgru.io.native.loads, which
    every pickled model goes through) while 12 tasks of a bag and 10 of a list use one model."""

    def install_counter():
        import functools

        import fastgru.io.native as native_module

        if not hasattr(native_module, "_test_counted"):
            original = native_module.loads

            @functools.wraps(original)
            def loads(*args, **kwargs):
                native_module._test_counted += 1
                return original(*args, **kwargs)

            native_module.loads = loads
        native_module._test_counted = 0

    client.run(install_counter)
    count = lambda: __import__("fastgru.io.native").io.native._test_counted  # noqa: E731
    gru = fastgru.GRU(INPUT, 16, seed=11)
    bag = db.from_sequence(_sequences(seed=3, count=120), npartitions=12)
    assert len(fastgru.dask.score(gru, bag).compute()) == 120
    assert set(client.run(count).values()) == {1}
    assert len(fastgru.dask.score(gru, _sequences(seed=4, count=100), partition_size=10)) == 100
    assert set(client.run(count).values()) == {2}  # a second call sends it once more, once per worker


def test_a_damaged_pickle_raises_in_the_task_and_the_worker_lives_on(client):
    gru = fastgru.GRU(INPUT, 4, seed=8)
    good = pickle.dumps(gru)
    pids = client.run(os.getpid)

    def run(data):
        model = pickle.loads(data)
        return model(np.ones((2, 1, INPUT), model.dtype))[1]

    for damaged in (good[: len(good) // 2], good[:-40] + bytes(40), good[:60] + bytes([good[60] ^ 1]) + good[61:]):
        with pytest.raises((ValueError, pickle.UnpicklingError, EOFError)):
            client.submit(run, damaged, pure=False).result()
    np.testing.assert_array_equal(client.submit(run, good, pure=False).result(),
                                  gru(np.ones((2, 1, INPUT), np.float32))[1])
    assert client.run(os.getpid) == pids  # the same worker processes, none restarted


def test_damaged_model_bytes_are_refused_before_anything_is_sent(client):
    data = bytearray(native.dumps(fastgru.GRU(INPUT, 4, seed=9)))
    data[-3] ^= 0x04  # a weight byte: only the checksum can tell
    with pytest.raises(ValueError, match="damaged fastgru data"):
        fastgru.dask.score(bytes(data), _sequences(count=4))


def test_wrong_inputs_raise_before_anything_is_sent(client):
    gru = fastgru.GRU(INPUT, 4, seed=10)
    with pytest.raises(ValueError, match="outputs"):
        fastgru.dask.score(gru, _sequences(count=3), outputs="state")
    with pytest.raises(ValueError, match=r"\(N, T, 3\)"):
        fastgru.dask.score(gru, da.zeros((4, 5, 2), chunks=2))
    with pytest.raises(ValueError, match="one output"):
        fastgru.dask.score(gru, da.zeros((4, 5, 3), chunks=2), outputs=("h_n", "output"))
    with pytest.raises(TypeError, match="dask Bag"):
        fastgru.dask.score(gru, np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="partition_size"):
        fastgru.dask.score(gru, _sequences(count=3), partition_size=0)
    with pytest.raises(ValueError, match="sequence 1"):
        fastgru.dask.score(gru, [np.zeros((3, 3)), np.zeros((3, 4))])
