"""fastgru.ray on a real local Ray cluster (``ray.init(num_cpus=2)``), started once for this module.

The cluster runs confined to the loopback interface: in a network namespace of its own (tools/loopback.py:
required as root and in CI, where failing to create it fails the module; a user without CAP_SYS_ADMIN
runs on the 127.0.0.1 settings alone), and with Ray told to use 127.0.0.1 in any case; its temporary files
go to a temporary directory, no usage statistics are sent, its authentication token lives in the
environment (not in ~/.ray), and every process it started is gone after ``ray.shutdown()``.
"""

from __future__ import annotations

import logging
import os
import pickle
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import fastgru
from fastgru.batching import score_sequences
from fastgru.io import native

# Before Ray is imported: it reads its configuration (the authentication mode among it) at import.
RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",  # never report usage statistics
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node address 127.0.0.1 instead of the routed interface
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(16),  # else Ray writes a token to ~/.ray/auth_token
}
if "ray" not in sys.modules:
    os.environ.update(RAY_ENVIRONMENT)
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
psutil = pytest.importorskip("psutil")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import loopback  # noqa: E402
from loopback import confine, non_loopback_listeners, outside_route  # noqa: E402

ray.cloudpickle.register_pickle_by_value(loopback)  # Ray's workers cannot import tools/: send its code

import fastgru.ray  # noqa: E402
from scoring_models import keras_classifier  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
INPUT = 3


def _ray_processes(root_pid: int):
    """The processes below ``root_pid``, without multiprocessing's resource tracker (started by the first
    use of multiprocessing in this process, by design alive until this process exits)."""
    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "multiprocessing.resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU local Ray cluster for the module; afterwards, checks that it left no process behind."""
    home_ray = Path.home() / ".ray"
    had_home_ray = home_ray.exists()
    temp = tempfile.mkdtemp(prefix="fgray")  # short: Ray's socket paths must fit in 107 bytes
    started = []
    others = {p.pid for p in _ray_processes(os.getpid())}  # children of earlier tests: not Ray's
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in RAY_ENVIRONMENT.items():
                patch.setenv(name, os.environ.get(name, value))  # the values Ray was imported with
            restore = confine()
            try:
                ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, object_store_memory=200 << 20,
                         logging_level=logging.ERROR, log_to_driver=False)
                started = _ray_processes(os.getpid())
                context = ray.data.DataContext.get_current()
                context.enable_progress_bars = False
                context.execution_options.preserve_order = True
                yield {"confined": restore is not None}
            finally:
                started = list({p.pid: p for p in started + _ray_processes(os.getpid())}.values())  # actors too
                ray.shutdown()
                if restore:
                    restore()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in started):
            time.sleep(0.2)
        left = [(p.pid, p.name()) for p in started if _alive(p)]
        assert not left, f"ray.shutdown() left processes behind: {left}"
        assert had_home_ray or not home_ray.exists(), "Ray wrote to ~/.ray"
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _alive(process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cluster_listens_on_loopback_only(cluster):
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert ray.cluster_resources()["CPU"] == 2
    listeners = non_loopback_listeners([os.getpid(), *(p.pid for p in _ray_processes(os.getpid()))])
    assert not listeners, listeners


def test_nothing_outside_the_machine_is_reachable_from_the_cluster(cluster):
    """In the namespace, the driver and Ray's workers have no route beyond loopback (as root and in CI the
    namespace is required, so this runs there; a user without CAP_SYS_ADMIN gets a visible skip)."""
    if not cluster["confined"]:
        pytest.skip("no loopback-only namespace here (no CAP_SYS_ADMIN, outside CI): the clusters rely on their "
                    "127.0.0.1 settings, which test_cluster_listens_on_loopback_only checks")
    assert outside_route() is None
    assert ray.get([ray.remote(outside_route).remote() for _ in range(4)]) == [None] * 4


MODELS = {
    "float32-bidirectional-2layers": lambda: fastgru.GRU(INPUT, 8, num_layers=2, bidirectional=True, seed=1),
    "float64-reset-before": lambda: fastgru.GRU(INPUT, 6, dtype=np.float64, reset_after=False, seed=2),
    "int8": lambda: fastgru.GRU(INPUT, 12, seed=3).quantize("int8"),
    "float32-batch-first": lambda: fastgru.GRU(INPUT, 5, batch_first=True, seed=4),
}
# How the model reaches the actors; each model goes once through each of these over the parametrisation.
SOURCES = ["object", "object_ref", "bytes", "path"]


def _rows(seed=0, count=70, max_steps=25):
    rng = np.random.default_rng(seed)
    return [{"id": i, "x": rng.standard_normal((int(rng.integers(1, max_steps)), INPUT)).astype(np.float32)}
            for i in range(count)]


def _assert_matches(actual, expected, dtype):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    if dtype == np.float32:  # batch composition moves the last bit (fastgru.batching.score_sequences)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("name, source", list(zip(sorted(MODELS), SOURCES)))
def test_map_batches_scores_variable_lengths_as_one_process_does(cluster, tmp_path, name, source):
    gru = MODELS[name]()
    model = {"object": lambda: gru, "object_ref": lambda: ray.put(gru), "bytes": lambda: native.dumps(gru),
             "path": lambda: (gru.save(tmp_path / "m.fastgru"), str(tmp_path / "m.fastgru"))[1]}[source]()
    rows = _rows()
    dataset = ray.data.from_items(rows)
    scored = dataset.map_batches(fastgru.ray.GRUPredictor, batch_size=16, compute=ray.data.ActorPoolStrategy(size=2),
                                 fn_constructor_kwargs={"model": model, "outputs": ("h_n", "output")})
    result = scored.take_all()
    assert [row["id"] for row in result] == list(range(len(rows)))
    assert sorted(result[0]) == ["h_n", "id", "output"]  # the input column is dropped, the id passes through
    expected = score_sequences(gru, [row["x"] for row in rows], outputs=("h_n", "output"))
    for row, h_n, output in zip(result, expected["h_n"], expected["output"]):
        _assert_matches(row["h_n"], h_n, gru.dtype)
        _assert_matches(row["output"], output, gru.dtype)


@pytest.mark.parametrize("source", ["object", "keras_file"])
def test_map_batches_scores_a_whole_model_as_one_process_does(cluster, tmp_path, source):
    """A Keras model with Masking and a softmax head (a fastgru.Model, or its .keras file read in the actors
    without Keras): each row gets what the model returns for its sequence alone."""
    keras_model = keras_classifier()
    model = fastgru.Model.from_keras(keras_model)
    if source == "keras_file":
        keras_model.save(tmp_path / "classifier.keras")
    rows = _rows(seed=2, count=40, max_steps=6)  # few lengths: groups of several rows
    scored = ray.data.from_items(rows).map_batches(
        fastgru.ray.GRUPredictor, batch_size=16, compute=ray.data.ActorPoolStrategy(size=2),
        fn_constructor_kwargs={"model": model if source == "object" else str(tmp_path / "classifier.keras")})
    result = scored.take_all()
    assert [row["id"] for row in result] == list(range(len(rows))) and sorted(result[0]) == ["id", "output"]
    expected = score_sequences(model, [row["x"] for row in rows])["output"]
    for row, output in zip(result, expected):
        assert output.shape == (4,)
        _assert_matches(row["output"], output, np.float32)


def test_each_actor_loads_the_model_once(cluster):
    """Ray builds the callable class once per actor: every batch of one actor sees the same model."""

    class Recording(fastgru.ray.GRUPredictor):  # defined here, so Ray pickles it by value
        def __call__(self, batch):
            scored = super().__call__(batch)
            scored["actor"] = np.array([f"{os.getpid()}-{id(self.model)}"] * len(batch["id"]))
            scored["threads"] = np.array([fastgru.get_num_threads()] * len(batch["id"]))
            return scored

    gru = fastgru.GRU(INPUT, 8, seed=5)
    scored = ray.data.from_items(_rows(count=120)).map_batches(
        Recording, batch_size=8, compute=ray.data.ActorPoolStrategy(size=2), fn_constructor_kwargs={"model": ray.put(gru)})
    result = scored.take_all()
    actors = {row["actor"] for row in result}
    assert 1 <= len(actors) <= 2 and len({actor.split("-")[0] for actor in actors}) == len(actors)
    assert {row["threads"] for row in result} == {1}  # Ray sets OMP_NUM_THREADS=1 for a 1-CPU actor


def test_equal_length_blocks_arrive_as_one_array(cluster):
    """A block whose sequences share one length is a fixed-shape tensor column: a (B, T, I) array."""
    gru = fastgru.GRU(INPUT, 4, seed=6)
    x = np.random.default_rng(1).standard_normal((20, 7, INPUT)).astype(np.float32)
    result = ray.data.from_numpy(x).map_batches(
        fastgru.ray.GRUPredictor, batch_size=10, compute=ray.data.ActorPoolStrategy(size=1),
        fn_constructor_kwargs={"model": gru, "column": "data", "keep_input": True}).take_all()
    h_n = np.stack([row["h_n"] for row in result])
    _assert_matches(h_n, score_sequences(gru, x)["h_n"], np.float32)
    np.testing.assert_array_equal(np.stack([row["data"] for row in result]), x)


def test_damaged_model_bytes_raise_in_the_actor(cluster):
    data = bytearray(native.dumps(fastgru.GRU(INPUT, 4, seed=7)))
    data[-2] ^= 0x10
    scored = ray.data.from_items(_rows(count=4)).map_batches(
        fastgru.ray.GRUPredictor, compute=ray.data.ActorPoolStrategy(size=1),
        fn_constructor_kwargs={"model": bytes(data)})
    with pytest.raises(Exception, match="damaged fastgru data"):
        scored.take_all()


def test_a_task_given_a_damaged_pickle_raises_and_its_worker_lives_on(cluster):
    @ray.remote
    class Loader:
        def pid(self):
            return os.getpid()

        def run(self, data):
            model = pickle.loads(data)
            return model(np.ones((2, 1, INPUT), model.dtype))[1]

    gru = fastgru.GRU(INPUT, 4, seed=8)
    good = pickle.dumps(gru)
    loader = Loader.remote()
    pid = ray.get(loader.pid.remote())
    for damaged in (good[: len(good) // 2], good[:-40] + bytes(40), good[:60] + bytes([good[60] ^ 1]) + good[61:]):
        with pytest.raises(Exception) as raised:
            ray.get(loader.run.remote(damaged))
        assert isinstance(raised.value, ray.exceptions.RayTaskError), type(raised.value)
        assert not isinstance(raised.value, ray.exceptions.ActorDiedError)
    np.testing.assert_array_equal(ray.get(loader.run.remote(good)), gru(np.ones((2, 1, INPUT), np.float32))[1])
    assert ray.get(loader.pid.remote()) == pid  # the same worker process, alive
    function = ray.remote(lambda data: pickle.loads(data).hidden_size)
    with pytest.raises(ray.exceptions.RayTaskError, match="damaged fastgru data|truncated|pickle"):
        ray.get(function.remote(good[:-40] + bytes(40)))
    assert ray.get(function.remote(good)) == 4
