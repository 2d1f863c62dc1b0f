"""Interleaved timing: every engine of a case is sampled in each round, round after round. Used by the
scripts in ``bench/`` and by ``fastgru bench``.

Measuring one engine after another lets a change in machine load (this machine is shared) or clock
land on one engine only. Here each round takes one sample of every engine, in an order drawn afresh
each round (a fixed seed: the same order in every run), so drifts are spread over all engines alike,
and so is whatever one engine leaves behind for the next. A rotation of one order, as used before, kept
every engine behind the same neighbour in nearly every round: on this project's Zen 5 guest, a fastgru
int8 batch call right after a Keras GRU call took 45-60 ms against 28 (its fresh 13 MB output
page-faulted into memory Keras' tensors had just freed, /proc/vmstat's pgfault and thp_fault_alloc
counting only in that call), and in a full run the engine behind Keras had 4 of its 5 samples so
slowed. Each sample records the engine sampled just before it (``after``).

A sample is ``inner`` back-to-back calls timed together, ``inner`` chosen once so that a sample
lasts at least ``sample_s`` (fast calls are not at the mercy of the timer's resolution); the
figure reported per call is the sample's time / ``inner``. Median and p90 are taken over samples, and
the samples are kept in round order (``rounds_s``): `paired_ratio` compares two engines round by round,
so a drift that slows a whole round (a shared guest's speed moved by up to 50% from one call to the
next on this project's Zen 3) cancels out of the ratio instead of landing on whichever engine had more
slow samples.
The garbage collector is off while timing, as in ``timeit``. Rounds stop at ``budget_s`` of wall time once ``min_rounds``
are done, so a shape's timing costs about max(budget, min_rounds rounds).

With several threads, every engine keeps a pool of workers that spin for a while after each call
(measured here: ONNX Runtime's for about 50 ms of CPU, PyTorch's OpenMP for about 10 ms, fastgru's for
0.1 ms). Sampled back to back in one process, an engine would share the cores with the previous
engine's spinning workers, and on a 2-core machine lose one of its two. ``settle_s`` therefore makes
each sample wait until the process has gone quiet (``settle``, which polls the process's CPU time):
a fixed pause has to guess the longest spin, and ONNX Runtime's measured 46-57 ms here, against the
60 ms pause used before. The wait is not timed, but counts against the budget.
"""

from __future__ import annotations

import gc
import math
import time
from typing import Callable

import numpy as np

Runner = Callable[[int], None]  # runner(n) makes n calls
Progress = Callable[[int, int], None]  # progress(rounds done, rounds planned), after each round


def _time_once(run: Runner, n: int) -> float:
    start = time.perf_counter()
    run(n)
    return time.perf_counter() - start


def settle(max_s: float, window_s: float = 0.005, idle_fraction: float = 0.05) -> float:
    """Sleeps until this process's other threads stop using the CPU (spinning pool workers), at most
    ``max_s``; returns the seconds waited. Quiet means: over one ``window_s`` of sleep, the process
    used less than ``idle_fraction`` of one core (its own sleeping thread uses none)."""
    start = time.perf_counter()
    while True:
        cpu = time.process_time()
        time.sleep(window_s)
        waited = time.perf_counter() - start
        if time.process_time() - cpu < idle_fraction * window_s or waited >= max_s:
            return waited


def calibrate(run: Runner, sample_s: float, warmup_calls: int) -> tuple[int, float]:
    """Warms up, then returns (inner, estimated seconds per call)."""
    run(warmup_calls)
    per_call = _time_once(run, 1)
    n = 1
    # Grow n until one timed batch is long enough to estimate the per-call time well.
    while per_call * n < sample_s / 4 and n < 1_000_000:
        n = min(1_000_000, max(n * 4, int(sample_s / 4 / max(per_call, 1e-9))))
        per_call = _time_once(run, n) / n
    inner = max(1, math.ceil(sample_s / max(per_call, 1e-9)))
    return inner, per_call


def interleaved(runners: dict[str, Runner], *, budget_s: float, sample_s: float,
                min_rounds: int, max_rounds: int, warmup_calls: int = 2, settle_s: float = 0.0,
                progress: Progress | None = None) -> dict[str, dict]:
    """Times every runner in round-robin rounds; returns per-runner stats (seconds per call).

    settle_s > 0: before each sample, wait (at most that long) for the process to go quiet.
    ``progress(done, planned)`` is called after each round (outside the timed samples)."""
    plan = {}
    for name, run in runners.items():
        inner, per_call = calibrate(run, sample_s, warmup_calls)
        plan[name] = (inner, per_call)
    round_s = sum(inner * per_call for inner, per_call in plan.values())
    rounds = int(min(max_rounds, max(min_rounds, budget_s // max(round_s, 1e-9))))

    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    after: dict[str, list[str | None]] = {name: [] for name in names}
    previous = None
    orders = np.random.default_rng(0)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    deadline = time.perf_counter() + budget_s
    try:
        for r in range(rounds):
            # The plan came from calibration; if the machine got slower since, the budget still holds.
            if r >= min_rounds and time.perf_counter() > deadline:
                break
            for index in orders.permutation(len(names)):
                name = names[index]
                inner = plan[name][0]
                if settle_s:
                    settle(settle_s)
                samples[name].append(_time_once(runners[name], inner) / inner)
                after[name].append(previous)
                previous = name
            if progress is not None:
                progress(r + 1, rounds)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: {**summarize(samples[name], plan[name][0]), "after": after[name]} for name in names}


def summarize(samples: list[float], inner: int) -> dict:
    values = np.asarray(samples)
    return {
        "median_s": float(np.median(values)),
        "p90_s": float(np.percentile(values, 90)),
        "min_s": float(values.min()),
        "samples": len(samples),
        "calls_per_sample": inner,
        "rounds_s": [float(v) for v in values],
    }


def paired_ratio(slower: dict, faster: dict) -> float | None:
    """The median over rounds of ``slower``'s sample / ``faster``'s sample in the same round (two
    `interleaved` stats of one call); None where either lacks per-round samples (results written before
    they were kept) or they share no round. Above 1: ``faster`` took less time."""
    a, b = slower.get("rounds_s"), faster.get("rounds_s")
    n = min(len(a), len(b)) if a and b else 0
    if n == 0:
        return None
    return float(np.median(np.asarray(a[:n]) / np.asarray(b[:n])))


def format_seconds(seconds: float | None) -> str:
    """A time per call for a table: µs below 1 ms, ms below 1 s ("-" for None)."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"
