"""Shared fixtures and helpers: random models and inputs, and running the same model in torch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastgru.spec import GRUSpec


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture
def torch():
    """The torch module, or a skip where torch is not installed."""
    return pytest.importorskip("torch")


def rounded(array, dtype):
    """float64 values exactly representable in ``dtype``, so every consumer sees the same numbers."""
    return np.asarray(array, dtype=dtype).astype(np.float64)


def random_weights(spec: GRUSpec, rng, scale=None):
    """Weights for ``spec`` in float64, rounded to ``spec.dtype``; uniform like torch's init by default."""
    scale = 1.0 / np.sqrt(spec.hidden_size) if scale is None else scale
    return {
        name: rounded(rng.uniform(-scale, scale, size=shape), spec.dtype)
        for name, shape in spec.weight_shapes().items()
    }


def random_inputs(spec: GRUSpec, rng, steps, batch, with_h0=False, with_lengths=False):
    """(x, h0, lengths) for ``spec``; x honours batch_first, values rounded to ``spec.dtype``.

    Lengths are unsorted and, when the batch allows, include both 1 and ``steps``.
    """
    x_shape = (batch, steps, spec.input_size) if spec.batch_first else (steps, batch, spec.input_size)
    x = rounded(rng.standard_normal(x_shape), spec.dtype)
    h0 = None
    if with_h0:
        h0_shape = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
        h0 = rounded(rng.uniform(-1, 1, size=h0_shape), spec.dtype)
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, steps + 1, size=batch)
        if batch >= 2:
            lengths[:2] = [1, steps]
        lengths = rng.permutation(lengths)
        if batch >= 3 and steps > 1 and np.all(np.diff(lengths) <= 0):
            lengths = lengths[::-1].copy()  # never hand over a sorted (descending) batch by accident
    return x, h0, lengths


def torch_gru(torch, spec: GRUSpec, weights):
    """A ``torch.nn.GRU`` in ``spec.dtype`` holding ``weights`` (linear-before-reset only)."""
    assert spec.reset_after and spec.gate_activation == "sigmoid" and spec.clip is None
    dtype = getattr(torch, spec.dtype)
    module = torch.nn.GRU(
        spec.input_size,
        spec.hidden_size,
        num_layers=spec.num_layers,
        bias=spec.bias,
        batch_first=spec.batch_first,
        bidirectional=spec.bidirectional,
        dtype=dtype,
    )
    module.load_state_dict({name: torch.tensor(value, dtype=dtype) for name, value in weights.items()})
    return module


def torch_run(torch, module, x, h0=None, lengths=None):
    """Runs ``module`` the way PyTorch users do; returns torch tensors (output, h_n).

    With lengths the input goes through ``pack_padded_sequence(enforce_sorted=False)`` and the
    output comes back padded to the full length. ``x`` and ``h0`` may be tensors that require grad.
    """
    batch_first = module.batch_first
    steps = x.shape[1] if batch_first else x.shape[0]
    if lengths is None:
        return module(x, h0)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, torch.as_tensor(np.asarray(lengths), dtype=torch.int64), batch_first=batch_first, enforce_sorted=False
    )
    packed_output, h_n = module(packed, h0)
    output, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_output, batch_first=batch_first, total_length=steps)
    return output, h_n


def covering_rows(axes: dict, strength: int = 2):
    """A small list of dicts in which every ``strength``-wise combination of axis values appears.

    Greedy: repeatedly take the row of the full grid that covers the most combinations not yet
    covered. Deterministic, so test ids are stable. ``axes`` maps a name to its list of values.
    """
    names = list(axes)
    grid = list(itertools.product(*(range(len(axes[name])) for name in names)))
    subsets = list(itertools.combinations(range(len(names)), strength))
    covers = [frozenset((subset, tuple(row[i] for i in subset)) for subset in subsets) for row in grid]
    uncovered = set().union(*covers)
    chosen = []
    while uncovered:
        best = max(range(len(grid)), key=lambda i: len(covers[i] & uncovered))
        uncovered -= covers[best]
        chosen.append(grid[best])
    return [{name: axes[name][index] for name, index in zip(names, row)} for row in chosen]


# The structural axes of a GRU's configuration. The forward and backward tests run every 3-wise combination of
# them (not the 2592-case full grid) for every dtype and variant. ``sizes`` is (input, hidden):
# hidden 1, 5 and 19 hit the core's scalar tails and more than one SIMD block; input 1 is a
# degenerate GEMM.
STRUCTURE_AXES = {
    "layers": [1, 2, 3],
    "bidirectional": [False, True],
    "batch_first": [False, True],
    "h0": [False, True],
    "lengths": [False, True],
    "batch": [1, 3, 8],
    "steps": [1, 7, 50],
    "sizes": [(3, 1), (1, 5), (10, 19)],
}
STRUCTURE_CASES = covering_rows(STRUCTURE_AXES, strength=3)


def case_spec(case: dict, dtype: str, reset_after: bool = True, **options) -> GRUSpec:
    input_size, hidden_size = case["sizes"]
    return GRUSpec(
        input_size,
        hidden_size,
        case["layers"],
        case["bidirectional"],
        case["batch_first"],
        reset_after=reset_after,
        dtype=dtype,
        **options,
    )


def case_id(case: dict) -> str:
    """A short readable pytest id for a covering row."""
    parts = []
    for name, value in case.items():
        if isinstance(value, bool):
            if value:
                parts.append(name)
        elif isinstance(value, tuple):
            parts.append(f"{name}={'x'.join(map(str, value))}")
        else:
            parts.append(f"{name}={value}")
    return "-".join(parts) or "plain"


def traced_allocations(step, repeats):
    """(bytes still allocated, peak bytes) above the start, by tracemalloc, over ``repeats`` calls of
    ``step`` (numpy reports its array buffers to tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(repeats):
            step()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return current - base, peak - base
