"""Memory: long streams and many calls leave resident memory flat, a stream step allocates
nothing, and the forward workspace is bounded by a time chunk, not by the sequence length
(docs/errors.md, "Memory").

Resident memory is read from /proc/self/statm (Linux); the bounds are generous (a leak of even a few
bytes per call over 10^3..10^5 calls exceeds them, allocator noise does not)."""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastgru
from fastgru import _core
from conftest import random_weights, traced_allocations
from fastgru.spec import GRUSpec

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm (Linux)")

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
FLAT = 8 << 20  # bytes of resident growth allowed over a whole loop

# bytes of gate values of one input-projection chunk: derived from this CPU's L2 (src_c/cpu.c)
CHUNK_BYTES = _core.cpu_info()["chunk bytes"]


def _resident() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def _growth(run, warmup, repeats):
    """Resident bytes gained over `repeats` calls of run(i), after `warmup` calls have settled caches."""
    for i in range(warmup):
        run(i)
    before = _resident()
    for i in range(repeats):
        run(i)
    return _resident() - before


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_100k_stream_steps_keep_memory_flat(rng, dtype):
    spec = GRUSpec(8, 32, 2, False, reset_after=dtype == "float32", dtype=dtype)
    stream = fastgru.GRU.from_spec(spec, random_weights(spec, rng)).stream(4)
    inputs = [rng.standard_normal((4, 8)).astype(dtype) for _ in range(16)]
    listed = inputs[0].tolist()

    def step(i):
        stream.step(inputs[i % 16] if i % 100 else listed)  # the conversion path too, now and then

    growth = _growth(step, warmup=2000, repeats=100_000)
    assert growth < FLAT, f"resident memory grew by {growth / 2**20:.1f} MiB over 10^5 steps"
    assert np.isfinite(stream.state).all()


def test_stream_step_allocates_nothing(rng):
    """With input already a C-contiguous array of the model's dtype, a step allocates no memory at all
    (fastgru.model.GRUStream.step)."""
    spec = GRUSpec(8, 32, 2, False, dtype="float32")
    stream = fastgru.GRU.from_spec(spec, random_weights(spec, rng)).stream(4)
    x_t = rng.standard_normal((4, 8)).astype(np.float32)
    for _ in range(100):
        stream.step(x_t)
    kept, peak = traced_allocations(lambda: stream.step(x_t), 10_000)
    assert kept < 1024 and peak < 4096, f"{kept} bytes kept, peak +{peak}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_1000_sequence_calls_keep_memory_flat(rng, dtype):
    spec = GRUSpec(6, 48, 2, True, dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    shapes = [(1 + (7 * i) % 60, 1 + (5 * i) % 9) for i in range(32)]  # (T, B): the cached workspace resizes
    inputs = [(rng.standard_normal((steps, batch, 6)), rng.integers(1, steps + 1, batch),
               rng.standard_normal((4, batch, 48)), rng.random((steps, batch)) < 0.5) for steps, batch in shapes]

    def call(i):
        x, lengths, h0, mask = inputs[i % 32]
        if i % 4 == 0:
            gru(x)
        elif i % 4 == 1:
            gru(x, h0, lengths, num_threads=2)
        elif i % 4 == 2:
            gru(x, h0, mask=mask)
        else:
            gru.forward(x, h0, lengths, return_tape=True)

    growth = _growth(call, warmup=64, repeats=1000)
    assert growth < FLAT, f"resident memory grew by {growth / 2**20:.1f} MiB over 10^3 calls"


def test_failing_calls_and_dropped_models_keep_memory_flat(rng):
    """Errors raised after buffers were allocated, and models built and freed, leak nothing."""
    spec = GRUSpec(5, 40, 2, True, dtype="float32")
    weights = random_weights(spec, rng)
    gru = fastgru.GRU.from_spec(spec, weights)
    uni_spec = GRUSpec(5, 40, 2, False, dtype="float32")
    uni = fastgru.GRU.from_spec(uni_spec, random_weights(uni_spec, rng))
    x = rng.standard_normal((20, 3, 5))

    def call(i):
        if i % 3 == 0:
            fastgru.GRU.from_spec(spec, weights)(x[:2])
        elif i % 3 == 1:
            with pytest.raises(ValueError):
                gru(x, lengths=[0, 1, 2])
        else:
            with pytest.raises(ValueError):
                gru(x, num_threads=100_000)
            uni.stream(3, num_threads=2).step(x[0])  # a stream and its pool, built and dropped

    growth = _growth(call, warmup=30, repeats=1000)
    assert growth < FLAT, f"resident memory grew by {growth / 2**20:.1f} MiB over 10^3 calls"


# ---------------------------------------------------------------------------------------------
# the workspace bound (docs/errors.md, "Memory")


def workspace_bound(spec: GRUSpec, steps: int, batch: int) -> int:
    """The documented upper bound of the forward workspace in bytes.

    One input-projection chunk of gate values (chunk steps of B x D x 3H), two time-major copies of a
    chunk of input rows (batch-first gathering), the double-buffered state and reset-before scratch
    (5 x D x B x H), per-row and per-step bookkeeping (8 bytes each), 64-byte alignment of 9 segments,
    and for L >= 2 one intermediate layer output (T x B x D x H)."""
    elem = np.dtype(spec.dtype).itemsize
    D, H, I = spec.num_directions, spec.hidden_size, spec.input_size
    chunk = max(1, min(steps, CHUNK_BYTES // (batch * D * 3 * H * elem)))
    elements = chunk * batch * D * 3 * H + 2 * chunk * batch * max(I, D * H) + 5 * D * batch * H
    if spec.num_layers > 1:
        elements += steps * batch * D * H
    return elem * elements + 8 * (batch + steps + 1) + 9 * 64


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_workspace_is_bounded_by_a_time_chunk(bidirectional, reset_after, dtype):
    gru = fastgru.GRU(64, 512, 1, bidirectional, reset_after=reset_after, dtype=dtype, seed=0)
    spec = gru.spec
    workspace = gru._model.workspace_bytes(2000, 64)
    assert workspace <= workspace_bound(spec, 2000, 64)
    # the documented figure: under 16 MiB (float32: ~7 MiB), where all of T at once would be T x B x 3H
    assert workspace < 16 << 20, f"{workspace / 2**20:.1f} MiB"
    whole_sequence = 2000 * 64 * spec.num_directions * 3 * 512 * np.dtype(dtype).itemsize
    assert workspace < whole_sequence / 50
    # 100 times longer: only the 8-byte-per-step bookkeeping grows
    assert gru._model.workspace_bytes(200_000, 64) - workspace <= 8 * 198_000 + 64


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (3, 7, 2, 5, 9), (64, 512, 1, 2000, 64), (16, 300, 3, 100, 3),
                                   (700, 20, 2, 50, 1000), (1, 2000, 1, 10, 200)],
                         ids=lambda s: "I{}-H{}-L{}-T{}-B{}".format(*s))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_workspace_never_exceeds_the_documented_bound(shape, bidirectional):
    input_size, hidden_size, layers, steps, batch = shape
    gru = fastgru.GRU(input_size, hidden_size, layers, bidirectional, reset_after=False, dtype=np.float64, seed=0)
    assert gru._model.workspace_bytes(steps, batch) <= workspace_bound(gru.spec, steps, batch)


def test_forward_at_b64_t2000_h512_runs_in_bounded_memory(tmp_path):
    """The real call, in a fresh process: peak resident memory beyond the inputs and outputs the caller
    holds stays within the workspace bound plus slack, not T x B x 3H x 4 bytes (786 MB) more."""
    script = textwrap.dedent("""
        import resource, numpy as np, fastgru
        def resident():
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * resource.getpagesize()
        def peak_resident():  # VmHWM, not ru_maxrss: that one keeps the parent's peak across fork + exec
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
        gru = fastgru.GRU(16, 512, dtype=np.float32, seed=0)
        x = np.random.default_rng(0).standard_normal((2000, 64, 16)).astype(np.float32)
        gru(x[:2])  # load everything once
        before = resident()
        output, h_n = gru(x)
        peak = peak_resident()
        assert np.isfinite(output).all() and output.shape == (2000, 64, 512)
        print(peak - before, output.nbytes + h_n.nbytes, gru._model.workspace_bytes(2000, 64))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr[-3000:]
    extra, results, workspace = map(int, result.stdout.split())
    # one chunk of gate values plus its gathered inputs (2/3 of a chunk here: I = 16 < 3H) and the
    # states: bounded by the CPU's chunk, whatever T is
    assert workspace < 2 * CHUNK_BYTES
    assert extra - results < workspace + (48 << 20), (
        f"peak grew {extra / 2**20:.0f} MiB for {results / 2**20:.0f} MiB of results and a "
        f"{workspace / 2**20:.1f} MiB workspace")


# ---------------------------------------------------------------------------------------------
# what a model holds (docs/errors.md, "Memory"; README, "Memory")


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_models_of_two_mib_and_more_are_advised_for_huge_pages(precision):
    """A model whose memory reaches 2 MiB is advised for transparent huge pages where the kernel has them
    (its batch-1 steps stream W_hh through fewer TLB entries); a smaller one never is, and a model
    rebuilt from a pickle is as its original."""
    kernel_has_them = os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled")
    for hidden in (64, 512, 1024):
        gru = fastgru.GRU(hidden, hidden, seed=0)
        if precision == "int8":
            gru = gru.quantize("int8")
        large = gru.packed_bytes >= _core.HUGE_PAGE_BYTES
        assert gru._model.huge_pages == (large and kernel_has_them), (hidden, gru.packed_bytes)
        assert pickle.loads(pickle.dumps(gru))._model.huge_pages == gru._model.huge_pages
    assert _core.HUGE_PAGE_BYTES == 2 << 20


def test_models_hold_their_weights_once(tmp_path):
    """Resident memory grows by about packed_bytes per model built, in a fresh process: the weights once,
    as the core's panels, with no second row-major copy in the core and no copy in Python (which
    together made three); int8 models built by quantize() keep nothing of the float32 model."""
    script = textwrap.dedent("""
        import gc, resource, numpy as np, fastgru
        from fastgru.spec import GRUSpec
        def resident():
            gc.collect()
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * resource.getpagesize()
        spec = GRUSpec(384, 384, 1, False, dtype="float32")
        rng = np.random.default_rng(0)
        weights = {name: rng.uniform(-0.05, 0.05, shape).astype(np.float32)
                   for name, shape in spec.weight_shapes().items()}
        nbytes = sum(a.nbytes for a in weights.values())
        fastgru.GRU.from_spec(spec, weights).quantize()  # load everything once
        before = resident()
        floats = [fastgru.GRU.from_spec(spec, weights) for _ in range(16)]
        middle = resident()
        int8 = [fastgru.GRU.from_spec(spec, weights).quantize() for _ in range(16)]
        after = resident()
        x = np.ones((2, 1, 384), np.float32)
        assert all(np.isfinite(m(x)[0]).all() for m in floats + int8)
        print(middle - before, after - middle, sum(m.packed_bytes for m in floats),
              sum(m.packed_bytes for m in int8), 16 * nbytes)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr[-3000:]
    float_growth, int8_growth, float_packed, int8_packed, given = map(int, result.stdout.split())
    slack = 16 << 20  # allocator caching of the transient copies check_weights makes, interpreter noise
    assert given <= float_packed < 1.02 * given  # 384 is a multiple of the 8-unit block: no padding
    assert float_growth < float_packed + slack, f"{float_growth / 2**20:.0f} MiB for {float_packed / 2**20:.0f} MiB"
    assert int8_packed < float_packed / 3
    assert int8_growth < int8_packed + slack, f"{int8_growth / 2**20:.0f} MiB for {int8_packed / 2**20:.0f} MiB"
