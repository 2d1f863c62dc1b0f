"""The thread budget (fastgru.threads): call argument > the model's num_threads > fastgru.set_num_threads >
OMP_NUM_THREADS > physical cores, read when a call runs, for a GRU and for every GRU of a whole Model; and
threadpoolctl, which sees and limits fastgru through its registration of third-party controllers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastgru
from fastgru import _core, model, threads

X = np.zeros((3, 2, 4), np.float32)


@pytest.fixture(autouse=True)
def clean_budget(monkeypatch):
    """No process-wide setting, no OMP_NUM_THREADS, a fresh parse cache; restored after each test."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_omp_parsed", {})
    fastgru.set_num_threads(None)
    yield
    fastgru.set_num_threads(None)


@pytest.fixture
def used(monkeypatch):
    """The thread counts that calls asked their pool for, in order."""
    counts = []
    original = model._thread_pool

    def recording(num_threads):
        counts.append(num_threads)
        return original(num_threads)

    monkeypatch.setattr(model, "_thread_pool", recording)
    return counts


def test_default_is_the_physical_cores(used):
    gru = fastgru.GRU(4, 8, seed=0)
    gru(X)
    assert used == [fastgru.default_num_threads()] and gru.num_threads == fastgru.default_num_threads()
    assert fastgru.get_num_threads() == fastgru.default_num_threads()


def test_each_level_overrides_the_ones_below(used, monkeypatch):
    free = fastgru.GRU(4, 8, seed=0)
    pinned = fastgru.GRU(4, 8, seed=0, num_threads=5)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    free(X), pinned(X)
    fastgru.set_num_threads(2)
    free(X), pinned(X), free(X, num_threads=4), pinned(X, num_threads=4)
    assert used == [3, 5, 2, 5, 4, 4]


def test_a_model_built_before_follows_later_settings(used, monkeypatch):
    """Nothing is frozen when the model is built: the setting and the environment are read at each call."""
    gru = fastgru.GRU(4, 8, seed=0)
    for value in ("1", "2", "7"):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        gru(X)
    fastgru.set_num_threads(4)
    gru(X)
    fastgru.set_num_threads(None)
    gru(X)
    assert used == [1, 2, 7, 4, 7]


def test_num_threads_can_be_assigned_and_cleared(used):
    gru = fastgru.GRU(4, 8, seed=0)
    gru.num_threads = 3
    gru(X)
    fastgru.set_num_threads(2)
    gru(X)
    gru.num_threads = None
    gru(X)
    assert used == [3, 3, 2]
    with pytest.raises(ValueError, match="num_threads"):
        gru.num_threads = 0


def test_quantize_keeps_the_models_own_num_threads():
    assert fastgru.GRU(4, 8, seed=0, num_threads=3).quantize().num_threads == 3
    unpinned = fastgru.GRU(4, 8, seed=0).quantize()
    fastgru.set_num_threads(2)
    assert unpinned.num_threads == 2


def test_a_stream_settles_its_threads_when_created(monkeypatch):
    pools = []
    real_pool = _core.Pool
    monkeypatch.setattr(_core, "Pool", lambda n: pools.append(n) or real_pool(n))
    gru = fastgru.GRU(4, 8, seed=0)
    fastgru.set_num_threads(3)
    stream = gru.stream(2)
    fastgru.set_num_threads(1)
    stream.step(np.zeros((2, 4)))
    gru.stream(2, num_threads=2)
    gru.stream(2)  # one thread: no pool
    assert pools == [3, 2]


def _whole_model(**options):
    """A Keras-convention Model of two GRU layers and a head, built from fastgru's layers (no Keras needed)."""
    from fastgru.layers import Dense, KerasRecurrent

    first = fastgru.GRU(4, 8, batch_first=True, seed=0, **options)
    second = fastgru.GRU(8, 6, batch_first=True, seed=1, **options)
    return fastgru.Model([KerasRecurrent("gru_1", first, return_sequences=True), KerasRecurrent("gru_2", second),
                          Dense("dense", np.ones((6, 2)))])


def test_a_models_grus_follow_the_same_order(used, monkeypatch):
    """Every GRU layer of a Model: the call's num_threads, the model's, set_num_threads, OMP_NUM_THREADS."""
    model = _whole_model()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    model(X)
    fastgru.set_num_threads(2)
    model(X), model(X, num_threads=4)
    model.num_threads = 5
    assert model.num_threads == 5 and [gru.num_threads for gru in model.grus] == [5, 5]
    model(X), model(X, num_threads=1)
    model.num_threads = None
    model(X)
    assert used == [3, 3, 2, 2, 4, 4, 5, 5, 1, 1, 2, 2]
    pinned = _whole_model(num_threads=3)
    pinned(X)
    assert used[-2:] == [3, 3]
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="num_threads"):
            model(X, num_threads=bad)
        with pytest.raises(ValueError, match="num_threads"):
            model.num_threads = bad


def test_a_model_stream_settles_its_threads_when_created(monkeypatch):
    pools = []
    real_pool = _core.Pool
    monkeypatch.setattr(_core, "Pool", lambda n: pools.append(n) or real_pool(n))
    model = _whole_model()
    fastgru.set_num_threads(3)
    stream = model.stream(2)
    fastgru.set_num_threads(1)
    stream.step(np.zeros((2, 4)))
    model.stream(2, num_threads=2)
    assert pools == [3, 3, 2, 2]


def test_results_do_not_depend_on_the_budget(monkeypatch):
    gru = fastgru.GRU(4, 64, num_layers=2, seed=0)
    x = np.random.default_rng(0).standard_normal((30, 5, 4))
    expected = gru(x, num_threads=1)
    for setting in (2, 3):
        fastgru.set_num_threads(setting)
        for actual, reference in zip(gru(x), expected):
            np.testing.assert_array_equal(actual, reference)


@pytest.mark.parametrize("value, expected", [
    ("3", 3), (" 3 ", 3), ("3,2", 3), ("3, 1", 3), ("1024", 1024), ("", None), ("  ", None)])
def test_omp_num_threads_valid_values(monkeypatch, used, value, expected):
    """As in OpenMP, a list gives one number per nesting level; fastgru nests nothing and takes the first."""
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert threads.omp_num_threads() == expected
        fastgru.GRU(4, 8, seed=0)(X)
    assert used == [fastgru.default_num_threads() if expected is None else expected]


@pytest.mark.parametrize("value", ["0", "-2", "abc", "2.5", "4,", ",4", "4,0", "1025", "5000", "\u0663", "4 2"])
def test_invalid_omp_num_threads_is_ignored_with_one_warning(monkeypatch, used, value):
    """libgomp ignores an invalid value with a message; fastgru warns once per value and uses the cores."""
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    gru = fastgru.GRU(4, 8, seed=0)
    with pytest.warns(RuntimeWarning, match="OMP_NUM_THREADS") as record:
        gru(X)
    assert repr(value) in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gru(X)  # no second warning for the same value
    assert used == [fastgru.default_num_threads()] * 2


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2", 2.0, 1025])
def test_set_num_threads_refuses_what_no_pool_can_be(value):
    with pytest.raises(ValueError, match="num_threads"):
        fastgru.set_num_threads(value)
    assert fastgru.get_num_threads() == fastgru.default_num_threads()  # unchanged


def test_set_num_threads_accepts_numpy_integers_and_none():
    fastgru.set_num_threads(np.int64(2))
    assert fastgru.get_num_threads() == 2 and type(fastgru.get_num_threads()) is int
    fastgru.set_num_threads(None)
    assert fastgru.get_num_threads() == fastgru.default_num_threads()


# ------------------------------------------------------------------ threadpoolctl

threadpoolctl = pytest.importorskip("threadpoolctl")


def _fastgru_entries():
    return [info for info in threadpoolctl.threadpool_info() if info["internal_api"] == "fastgru"]


def test_threadpool_info_lists_fastgru():
    (entry,) = _fastgru_entries()
    assert entry["user_api"] == "fastgru" and entry["version"] == fastgru.__version__
    assert os.path.realpath(entry["filepath"]) == os.path.realpath(_core.__file__)
    assert entry["num_threads"] == fastgru.get_num_threads()
    fastgru.set_num_threads(3)
    assert _fastgru_entries()[0]["num_threads"] == 3


@pytest.mark.parametrize("user_api", [None, "fastgru"])
def test_threadpool_limits_limits_a_model_built_before(used, user_api):
    gru = fastgru.GRU(4, 8, seed=0)
    pinned = fastgru.GRU(4, 8, seed=0, num_threads=2)
    fastgru.set_num_threads(2)
    with threadpoolctl.threadpool_limits(1, user_api=user_api):
        assert _fastgru_entries()[0]["num_threads"] == 1
        gru(X), pinned(X)
    gru(X)
    assert used == [1, 2, 2]


def test_threadpool_limits_limits_a_models_call(used):
    model = _whole_model()
    fastgru.set_num_threads(2)
    with threadpoolctl.threadpool_limits(1):
        model(X)
    model(X)
    assert used == [1, 1, 2, 2]


def test_threadpool_limits_of_another_api_leaves_fastgru_alone(used):
    gru = fastgru.GRU(4, 8, seed=0)
    fastgru.set_num_threads(2)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        gru(X)
    with threadpoolctl.threadpool_limits({"fastgru": 1}):
        gru(X)
    assert used == [2, 1]


def test_threadpool_limits_restores_the_number_in_force_on_entry(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with threadpoolctl.threadpool_limits(1):
        assert fastgru.get_num_threads() == 1
    assert fastgru.get_num_threads() == 3


def _python(code: str, **env) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_import_fastgru_does_not_import_threadpoolctl_and_registers_when_it_is():
    out = _python("""
        import sys
        import fastgru
        print("threadpoolctl" in sys.modules)
        from threadpoolctl import threadpool_info, threadpool_limits
        gru = fastgru.GRU(4, 8)
        with threadpool_limits(1):
            print([(i["user_api"], i["num_threads"]) for i in threadpool_info() if i["internal_api"] == "fastgru"],
                  gru.num_threads)
        print(any(type(finder).__module__ == "fastgru._threadpoolctl" for finder in sys.meta_path))
    """, OMP_NUM_THREADS="2")
    assert out.splitlines() == ["False", "[('fastgru', 1)] 1", "False"]


def test_threadpoolctl_imported_before_fastgru_sees_it_too():
    out = _python("""
        import threadpoolctl
        import fastgru
        print([i["num_threads"] for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastgru"])
    """, OMP_NUM_THREADS="2")
    assert out == "[2]"


def test_fastgru_works_where_threadpoolctl_is_not_installed():
    out = _python("""
        import sys

        class NotInstalled:  # hides threadpoolctl as an environment without it would
            def find_spec(self, name, path=None, target=None):
                if name == "threadpoolctl":
                    raise ModuleNotFoundError("No module named 'threadpoolctl'", name=name)
        sys.meta_path.insert(0, NotInstalled())
        import fastgru
        try:
            import threadpoolctl
        except ModuleNotFoundError as error:
            print("missing", error.name)
        import numpy as np
        print(fastgru.GRU(4, 8)(np.zeros((2, 1, 4)))[1].shape)
    """)
    assert out.splitlines() == ["missing threadpoolctl", "(1, 1, 8)"]
