"""One model shared by many Python threads: results identical to serial calls, streams owned
one per thread, the GIL released while the core computes, and worker threads that end with their
callers.

A GRU is immutable after construction and every calling thread gets its own workspace and worker pool
(fastgru.model), so concurrent calls must give exactly, bit for bit, what the same calls give one after
another."""

from __future__ import annotations

import gc
import os
import threading
import time

import numpy as np
import pytest

import fastgru
from conftest import random_inputs, random_weights
from fastgru.spec import GRUSpec

THREADS = 8


def _run_in_threads(work, count=THREADS):
    """Runs work(index) in `count` threads started together; returns the results, re-raising any error."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def main(index):
        try:
            barrier.wait(timeout=60)
            results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_threads_sharing_a_model_get_the_serial_results(rng, reset_after, dtype):
    spec = GRUSpec(5, 40, 2, True, reset_after=reset_after, dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    # each thread its own inputs (some with lengths, some with a mask, shapes differ) and thread count
    calls = []
    for index in range(THREADS):
        steps, batch = 20 + 7 * index, 1 + index
        x, h0, lengths = random_inputs(spec, rng, steps, batch, with_h0=index % 2 == 0, with_lengths=index % 3 == 0)
        mask = rng.random((steps, batch)) < 0.7 if index % 3 == 1 else None
        calls.append((x, h0, lengths, mask, 1 + index % 3))
    serial = [gru(x, h0, lengths, mask=mask, num_threads=n) for x, h0, lengths, mask, n in calls]

    def work(index):
        x, h0, lengths, mask, num_threads = calls[index]
        return [gru(x, h0, lengths, mask=mask, num_threads=num_threads) for _ in range(3)]

    for index, repeats in enumerate(_run_in_threads(work)):
        for output, h_n in repeats:
            np.testing.assert_array_equal(output, serial[index][0], err_msg=f"thread {index}: output")
            np.testing.assert_array_equal(h_n, serial[index][1], err_msg=f"thread {index}: h_n")


def test_threads_calling_with_the_same_input_agree(rng):
    """The same call from every thread at once: shared read-only inputs are never written."""
    spec = GRUSpec(4, 33, 1, True, dtype="float32")
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x, h0, lengths = random_inputs(spec, rng, 60, 9, with_h0=True, with_lengths=True)
    x, h0 = x.astype(np.float32), h0.astype(np.float32)  # C-contiguous in the model dtype: no copy made
    x.flags.writeable = h0.flags.writeable = False
    expected_output, expected_h_n = gru(x, h0, lengths, num_threads=2)
    results = _run_in_threads(lambda index: gru(x, h0, lengths, num_threads=1 + index % 2))
    for output, h_n in results:
        np.testing.assert_array_equal(output, expected_output)
        np.testing.assert_array_equal(h_n, expected_h_n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_threads_running_backward_on_a_shared_model_get_the_serial_gradients(rng, reset_after, dtype):
    """A backward builds the row-major weights its GEMMs need from the model's panels into its own
    workspace: concurrent backward calls (and forwards and weight reads beside them) on one model give
    exactly the serial gradients."""
    spec = GRUSpec(7, 21, 2, True, reset_after=reset_after, dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    weights = gru.weights
    calls = []
    for index in range(THREADS):
        x, h0, lengths = random_inputs(spec, rng, 5 + 3 * index, 1 + index % 4, with_h0=index % 2 == 0,
                                       with_lengths=index % 3 == 0)
        calls.append((x, h0, lengths, rng.standard_normal((x.shape[0], x.shape[1], 2 * spec.hidden_size))))

    def gradients(index):
        x, h0, lengths, grad_output = calls[index]
        # one thread per call: no worker pools, which would outlive these threads a moment and blur the
        # thread counts of the pool tests after this one
        _, _, tape = gru.forward(x, h0, lengths, return_tape=True, num_threads=1)
        return gru.backward(tape, grad_output)

    serial = [gradients(index) for index in range(THREADS)]

    def work(index):
        results = [gradients(index) for _ in range(2)]
        read = gru.weights
        assert all(read[name].tobytes() == value.tobytes() for name, value in weights.items())
        return results

    for index, repeats in enumerate(_run_in_threads(work)):
        for grads in repeats:
            for name, value in serial[index].items():
                np.testing.assert_array_equal(grads[name], value, err_msg=f"thread {index}: {name}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_stream_per_thread_gets_the_serial_results(rng, dtype):
    spec = GRUSpec(6, 24, 2, False, reset_after=dtype == "float32", dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    sequences = [rng.standard_normal((50, 1 + index % 4, 6)) for index in range(THREADS)]

    def run_stream(index):
        sequence = sequences[index]
        stream = gru.stream(sequence.shape[1], num_threads=1 + index % 2)
        return np.stack([stream.step(x_t).copy() for x_t in sequence]), stream.state

    serial = [run_stream(index) for index in range(THREADS)]
    for index, (outputs, state) in enumerate(_run_in_threads(run_stream)):
        np.testing.assert_array_equal(outputs, serial[index][0], err_msg=f"stream of thread {index}")
        np.testing.assert_array_equal(state, serial[index][1], err_msg=f"state of thread {index}")
        # and a stream is the sequence call, step by step
        output, h_n = gru(sequences[index], num_threads=1)
        np.testing.assert_allclose(outputs, output, rtol=0, atol=1e-6 if dtype == "float32" else 1e-13)


def test_streams_and_sequences_mixed_on_one_model(rng):
    spec = GRUSpec(3, 16, 1, False, dtype="float64")
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x = rng.standard_normal((40, 2, 3))
    expected_output, _ = gru(x)

    def work(index):
        if index % 2:
            return gru(x, num_threads=1 + index % 3)[0]
        stream = gru.stream(2)
        return np.stack([stream.step(x_t).copy() for x_t in x])

    for output in _run_in_threads(work):
        np.testing.assert_allclose(output, expected_output, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# the GIL


def _long_call():
    """A model and input whose forward takes at least ~0.15 s on one thread here (doubling T until it does)."""
    gru = fastgru.GRU(64, 256, dtype=np.float32, seed=0)
    steps = 200
    while True:
        x = np.random.default_rng(0).standard_normal((steps, 16, 64)).astype(np.float32)
        start = time.perf_counter()
        gru(x, num_threads=1)
        if time.perf_counter() - start >= 0.15 or steps >= 200 * 64:
            return gru, x
        steps *= 2


def test_python_threads_run_while_the_core_computes():
    """A Python thread keeps ticking during a long forward call in another thread: the call does not
    hold the GIL. Holding it, the ticker could not run at all until the call returned."""
    gru, x = _long_call()
    ticks, done = [], threading.Event()
    interval = {}

    def compute():
        interval["start"] = time.perf_counter()
        gru(x, num_threads=1)
        interval["end"] = time.perf_counter()
        done.set()

    worker = threading.Thread(target=compute)
    worker.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.002)
    worker.join()
    during = [t for t in ticks if interval["start"] < t < interval["end"]]
    duration = interval["end"] - interval["start"]
    # the ticker wants one tick per ~2 ms; ask for a fraction of that, since the machine may be busy
    assert len(during) >= max(3, duration / 0.002 / 10), (
        f"{len(during)} ticks during a {duration:.3f} s call: the GIL seems held during compute")


def test_two_long_calls_overlap_in_time():
    """Two threads each make a long single-threaded call; the calls' intervals, timed inside the
    threads, overlap for most of their length. With the GIL held they would run one after the other."""
    gru, x = _long_call()
    intervals = _run_in_threads(lambda index: (time.perf_counter(), gru(x, num_threads=1), time.perf_counter()), 2)
    (start_a, (output_a, _), end_a), (start_b, (output_b, _), end_b) = intervals
    np.testing.assert_array_equal(output_a, output_b)
    overlap = min(end_a, end_b) - max(start_a, start_b)
    shorter = min(end_a - start_a, end_b - start_b)
    assert overlap >= 0.5 * shorter, (
        f"calls [{start_a:.3f}, {end_a:.3f}] and [{start_b:.3f}, {end_b:.3f}] overlap {overlap:.3f} s of {shorter:.3f} s")


# ---------------------------------------------------------------------------------------------
# worker threads do not outlive their callers


def _task_files(name: str) -> dict[str, str]:
    """The file /proc/self/task/<tid>/<name> of every thread of this process, by thread id."""
    texts = {}
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/{name}") as file:
                texts[task] = file.read()
        except FileNotFoundError:  # the thread ended while we listed them
            pass
    return texts


def _fastgru_workers() -> int:
    """fastgru's worker threads in this process (pool.c names them). Counting every thread instead
    let a thread of some other library, ending while the test counted, fail it (seen once in CI)."""
    return sum(comm.strip() == "fastgru-worker" for comm in _task_files("comm").values())


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_worker_pools_end_with_their_threads(rng):
    """Each calling thread gets its own pool of worker threads; when the caller ends, they are joined."""
    spec = GRUSpec(3, 32, 1, True, dtype="float32")
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x = rng.standard_normal((10, 4, 3))
    before = _fastgru_workers()
    for _ in range(3):
        _run_in_threads(lambda index: gru(x, num_threads=3))
    deadline = time.monotonic() + 10
    while _fastgru_workers() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fastgru_workers() <= before, f"{_fastgru_workers() - before} worker threads left behind"


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_streams_release_their_pools(rng):
    spec = GRUSpec(3, 8, 1, False, dtype="float32")
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    gc.collect()  # pools that earlier tests left to the collector go now, not within this count
    before = _fastgru_workers()
    streams = [gru.stream(2, num_threads=3) for _ in range(4)]
    for stream in streams:
        stream.step(np.zeros((2, 3)))
    assert _fastgru_workers() == before + 8, "each stream of 3 threads owns 2 workers"
    del streams, stream
    gc.collect()
    assert _fastgru_workers() == before, "a freed stream joins its workers"


def test_models_built_and_dropped_in_threads(rng):
    """Building, calling and freeing models from many threads at once."""
    spec = GRUSpec(4, 12, 2, True, dtype="float64")
    weights = random_weights(spec, rng)
    x = rng.standard_normal((8, 3, 4))
    expected_output, _ = fastgru.GRU.from_spec(spec, weights)(x)

    def work(index):
        outputs = []
        for _ in range(5):
            gru = fastgru.GRU.from_spec(spec, weights, num_threads=1 + index % 2)
            outputs.append(gru(x)[0])
            del gru
        return outputs

    for outputs in _run_in_threads(work):
        for output in outputs:
            np.testing.assert_array_equal(output, expected_output)


def _thread_affinities() -> dict[str, str]:
    affinities = {}
    for task, status in _task_files("status").items():
        for line in status.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                affinities[task] = line.split(":", 1)[1].strip()
    return affinities


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux /proc and two allowed CPUs")
def test_woken_workers_keep_the_process_cpu_affinity(rng):
    """A worker that wakes up on its caller's CPU moves itself off it by narrowing its affinity for a
    moment (pool.c); it must restore the full mask, or it would stay pinned for the rest of the
    process. Sleeping between calls (longer than the workers' spin) makes every call wake them."""
    spec = GRUSpec(256, 256, 1, False, dtype="float32")  # big enough for the steps to run in parallel
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x = rng.standard_normal((20, 1, 256)).astype(np.float32)
    expected = gru(x, num_threads=1)[0]
    before = _thread_affinities()
    for _ in range(12):
        time.sleep(0.05)
        np.testing.assert_array_equal(gru(x, num_threads=2)[0], expected)
    after = _thread_affinities()
    allowed = before[str(threading.get_native_id())]
    assert after[str(threading.get_native_id())] == allowed
    assert len(after) >= 2, "the 2-thread calls run a worker"
    assert set(after.values()) == {allowed}, after
