"""The backward on every kernel set and GEMM backend: the per-step product runs on the AVX2 panel
kernel (the 512-bit one on the 512-bit tables, with the same bits: tested below) or on the BLAS, the large GEMMs on scipy's BLAS or the core's reference loops; all must agree
with fastgru.reference. Sizes hit the kernel's tails: hidden 37 (a partial 32-column panel, blocks of
8 plus 5), batches 1, 2, 5 (row tiles of 1, 2 and 3) and both dtypes and variants."""

from __future__ import annotations

import numpy as np
import pytest

import fastgru
from conftest import random_inputs, random_weights
from fastgru import _core, reference
from fastgru.spec import GRUSpec

ISAS = _core.supported_isas()  # each table's forward writes the tape the backward reads


@pytest.fixture
def backend(request):
    isa, blas = request.param
    _core.set_backend(isa, blas)
    yield
    _core.set_backend()


@pytest.mark.parametrize("backend", [(isa, blas) for isa in ISAS for blas in ("scipy", "reference")],
                         ids=lambda p: "-".join(p), indirect=True)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_backward_agrees_on_every_backend(backend, rng, batch, reset_after, dtype):
    spec = GRUSpec(6, 37, 2, True, reset_after=reset_after, gate_activation="hard_sigmoid", clip=2.5, dtype=dtype)
    weights = random_weights(spec, rng)
    x, h0, lengths = random_inputs(spec, rng, steps=9, batch=batch, with_h0=True, with_lengths=True)
    grad_output = rng.standard_normal((9, batch, 2 * 37))
    grad_h_n = rng.standard_normal((4, batch, 37))
    gru = fastgru.GRU.from_spec(spec, weights)
    _, _, tape = gru.forward(x, h0, lengths, return_tape=True)
    grads = gru.backward(tape, grad_output, grad_h_n)
    expected = reference.backward(spec, weights, x, h0, lengths, grad_output.astype(dtype), grad_h_n.astype(dtype))
    for name, value in expected.items():
        scale = max(1.0, np.abs(value).max())
        tolerance = 2e-4 if dtype == "float32" else 1e-10
        np.testing.assert_allclose(grads[name], value, rtol=0, atol=tolerance * scale, err_msg=name)


def test_backward_rejects_a_tape_from_another_model(rng):
    spec = GRUSpec(3, 4)
    first, second = (fastgru.GRU.from_spec(spec, random_weights(spec, rng)) for _ in range(2))
    _, _, tape = first.forward(np.ones((2, 1, 3), np.float32), return_tape=True)
    with pytest.raises(ValueError, match="different GRU"):
        second.backward(tape)
    with pytest.raises(TypeError, match="Tape"):
        first.backward("not a tape")


WIDE_TABLES = [isa for isa in ("avx512", "avx512_vnni") if isa in ISAS]


@pytest.mark.skipif(not WIDE_TABLES or "avx2" not in ISAS, reason="this CPU has no 512-bit table")
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("batch, hidden", [(1, 37), (4, 70), (13, 37), (16, 64), (25, 96)])
def test_512_bit_backward_product_gives_the_avx2_kernels_bits(rng, batch, hidden, reset_after):
    """The 512-bit tables' per-step product (backward_kernels_avx512.c: tiles of up to 12 rows) sums
    each element as the AVX2 kernel does (3-row tiles, a last row alone when rows % 3 == 1), so on the
    same tape both give the same gradients, bit for bit. Batches 1, 4, 13, 16 and 25 take every kind of
    tail; hidden 37, 70 and 96 end in a partial 32-column panel or a full one."""
    spec = GRUSpec(5, hidden, 2, True, reset_after=reset_after)
    weights = random_weights(spec, rng)
    x, h0, lengths = random_inputs(spec, rng, steps=6, batch=batch, with_h0=True, with_lengths=True)
    grad_output = rng.standard_normal((6, batch, 2 * hidden)).astype(np.float32)
    gru = fastgru.GRU.from_spec(spec, weights)
    _, _, tape = gru.forward(x, h0, lengths, return_tape=True)
    gradients = {}
    try:
        for isa in ["avx2"] + WIDE_TABLES:
            _core.set_backend(isa=isa)
            gradients[isa] = gru.backward(tape, grad_output)
    finally:
        _core.set_backend()
    for isa in WIDE_TABLES:
        for name, value in gradients["avx2"].items():
            np.testing.assert_array_equal(gradients[isa][name], value, err_msg=f"{isa}: {name}")
