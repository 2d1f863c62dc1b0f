# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The binding between fastgru's Python API and its C core (src_c/fastgru.h).

This module is the only place that knows the Fortran BLAS: it adapts scipy.linalg.cython_blas's
column-major sgemm/dgemm to the core's row-major fg_blas table. It checks every buffer it hands to C
(dtype, C order, size, writability) as a last line of defence behind fastgru.model's user-facing checks,
copies what C needs into locals, releases the GIL for the whole computation, and turns C status codes
into Python exceptions.
"""

from libc.stdint cimport int8_t, int64_t, uint8_t, uintptr_t
from libc.limits cimport INT_MAX
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from cython cimport floating

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "fastgru.h" nogil:
    ctypedef enum fg_status:
        FG_OK
        FG_ERR_NULL_POINTER
        FG_ERR_INVALID_SIZE
        FG_ERR_INVALID_LENGTHS
        FG_ERR_INVALID_SPEC
        FG_ERR_SIZE_OVERFLOW
        FG_ERR_OUT_OF_MEMORY
        FG_ERR_WORKSPACE_TOO_SMALL
        FG_ERR_UNSUPPORTED
        FG_ERR_THREAD
        FG_ERR_NO_BLAS
        FG_ERR_INVALID_WEIGHTS
    const char *fg_status_string(fg_status status)

    ctypedef enum fg_dtype:
        FG_FLOAT32
        FG_FLOAT64
    ctypedef enum fg_variant:
        FG_LINEAR_BEFORE_RESET
        FG_RESET_BEFORE
    ctypedef enum fg_gate_activation:
        FG_SIGMOID
        FG_HARD_SIGMOID
    ctypedef struct fg_spec:
        int64_t input_size
        int64_t hidden_size
        int64_t num_layers
        int64_t num_directions
        fg_dtype dtype
        fg_variant variant
        fg_gate_activation gate_activation
        double gate_alpha
        double gate_beta
        double clip
    ctypedef struct fg_layer_weights:
        void *weight_ih
        void *weight_hh
        void *bias_ih
        void *bias_hh
    ctypedef struct fg_gru:
        pass
    fg_status fg_gru_create(const fg_spec *spec, const fg_layer_weights *weights, fg_gru **out)
    void fg_gru_destroy(fg_gru *gru)
    size_t fg_gru_packed_bytes(const fg_gru *gru)
    int fg_gru_huge_pages(const fg_gru *gru)
    size_t FG_HUGE_PAGE_BYTES
    ctypedef enum fg_weight_format:
        FG_WEIGHTS_NATIVE
        FG_WEIGHTS_INT8
    fg_status fg_gru_quantize(const fg_gru *gru, fg_weight_format format, fg_gru **out)
    fg_status fg_gru_quantize_bits(const fg_gru *gru, fg_weight_format format, int weight_bits, fg_gru **out)
    fg_weight_format fg_gru_weight_format(const fg_gru *gru)
    int fg_gru_int8_narrow(const fg_gru *gru)
    const fg_spec *fg_gru_spec(const fg_gru *gru)
    fg_status fg_gru_get_weights(const fg_gru *gru, const fg_layer_weights *weights)
    ctypedef struct fg_int8_layer_weights:
        int8_t *weight_ih
        float *weight_ih_scale
        int8_t *weight_hh
        float *weight_hh_scale
        float *bias_ih
        float *bias_hh
    fg_status fg_gru_get_int8_weights(const fg_gru *gru, const fg_int8_layer_weights *weights)
    fg_status fg_gru_create_int8(const fg_spec *spec, const fg_int8_layer_weights *weights, fg_gru **out)

    ctypedef void (*fg_sgemm_fn)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                                 const float *, int64_t, float, float *, int64_t) noexcept
    ctypedef void (*fg_dgemm_fn)(int, int, int64_t, int64_t, int64_t, double, const double *, int64_t,
                                 const double *, int64_t, double, double *, int64_t) noexcept
    ctypedef struct fg_blas:
        fg_sgemm_fn sgemm
        fg_dgemm_fn dgemm
    const fg_blas *fg_reference_blas()

    ctypedef struct fg_pool:
        pass
    fg_status fg_pool_create(int num_threads, fg_pool **out)
    void fg_pool_destroy(fg_pool *pool)
    int fg_pool_num_threads(const fg_pool *pool)

    ctypedef enum fg_isa:
        FG_ISA_AUTO
        FG_ISA_GENERIC
        FG_ISA_AVX2
        FG_ISA_AVX512VL
        FG_ISA_AVX512VL_VNNI
        FG_ISA_AVX512
        FG_ISA_AVX512_VNNI
    int FG_ISA_COUNT
    fg_isa fg_isa_detect()
    const char *fg_isa_name(fg_isa isa)
    unsigned fg_isa_requires(fg_isa isa)
    int fg_isa_supported(fg_isa isa)
    int FG_CPU_FEATURE_COUNT
    const char *fg_cpu_feature_name(unsigned feature)
    ctypedef enum fg_width_reason:
        FG_WIDTH_NO_AVX512
        FG_WIDTH_KNOWN_SPLIT
        FG_WIDTH_KNOWN_FULL
        FG_WIDTH_MEASURED_SPLIT
        FG_WIDTH_MEASURED_FULL
    ctypedef enum fg_cache_source:
        FG_CACHE_FALLBACK
        FG_CACHE_CPUID_4
        FG_CACHE_CPUID_8000001D
        FG_CACHE_CPUID_80000006
    ctypedef struct fg_cpu_info:
        char vendor[16]
        char model_name[64]
        int family, model, stepping
        unsigned features
        int64_t l1d_bytes, l2_bytes, l3_bytes
        fg_cache_source cache_source
        fg_isa isa
        fg_width_reason width_reason
        double fma256_gflops, fma512_gflops
        int64_t chunk_bytes, k_block
    const fg_cpu_info *fg_cpu_info_get()
    ctypedef struct fg_context:
        const fg_blas *blas
        fg_pool *pool
        fg_isa isa

    ctypedef struct fg_sequence:
        int64_t seq_len
        int64_t batch
        int batch_first
        const void *x
        const void *h0
        const int64_t *lengths
        const uint8_t *mask
        void *output
        void *h_n
    fg_status fg_forward_workspace_size(const fg_gru *gru, int64_t seq_len, int64_t batch, size_t *bytes)
    fg_status fg_tape_size(const fg_gru *gru, int64_t seq_len, int64_t batch, size_t *bytes)
    fg_status fg_forward(const fg_gru *gru, const fg_sequence *seq, void *tape, void *workspace,
                         size_t workspace_bytes, const fg_context *ctx)

    ctypedef struct fg_gradients:
        void *grad_x
        void *grad_h0
        fg_layer_weights *layers
    fg_status fg_backward_workspace_size(const fg_gru *gru, int64_t seq_len, int64_t batch, size_t *bytes)
    fg_status fg_backward(const fg_gru *gru, const fg_sequence *seq, const void *tape, const void *grad_output,
                          const void *grad_h_n, const fg_gradients *grads, void *workspace,
                          size_t workspace_bytes, const fg_context *ctx)

    fg_status fg_step_workspace_size(const fg_gru *gru, int64_t batch, size_t *bytes)
    fg_status fg_step(const fg_gru *gru, int64_t batch, const void *x_t, void *h, void *output,
                      void *workspace, size_t workspace_bytes, const fg_context *ctx)


# ------------------------------------------------------------------ BLAS adapter

# scipy's Fortran GEMMs, fetched on first use (_load_scipy_blas): the forward pass needs no BLAS, and
# importing scipy.linalg would triple the time `import fastgru` takes.
ctypedef void (*fortran_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *, int *, float *,
                                  int *, float *, float *, int *) noexcept nogil
ctypedef void (*fortran_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *, int *, double *,
                                  int *, double *, double *, int *) noexcept nogil
cdef fortran_sgemm_fn fortran_sgemm = NULL
cdef fortran_dgemm_fn fortran_dgemm = NULL

# Row-major C = alpha op(A) op(B) + beta C is, read column-major, C^T = alpha op(B)^T op(A)^T + beta C^T:
# the same Fortran call with the operands (and their transposes) swapped.
cdef void _gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, floating alpha, const floating *a,
                int64_t lda, const floating *b, int64_t ldb, floating beta, floating *c, int64_t ldc) noexcept nogil:
    """C := alpha * op(A) . op(B) + beta * C, row-major, through the Fortran sgemm/dgemm."""
    cdef char op_b = b'T' if trans_b else b'N'
    cdef char op_a = b'T' if trans_a else b'N'
    cdef int rows = <int>n, cols = <int>m, inner = <int>k
    cdef int ld_b = <int>ldb, ld_a = <int>lda, ld_c = <int>ldc
    if m == 0 or n == 0:
        return
    if floating is float:
        fortran_sgemm(&op_b, &op_a, &rows, &cols, &inner, &alpha, <float *>b, &ld_b, <float *>a, &ld_a,
                      &beta, c, &ld_c)
    else:
        fortran_dgemm(&op_b, &op_a, &rows, &cols, &inner, &alpha, <double *>b, &ld_b, <double *>a, &ld_a,
                      &beta, c, &ld_c)


cdef fg_blas _scipy_blas
_scipy_blas.sgemm = _gemm[float]
_scipy_blas.dgemm = _gemm[double]


cdef void *_capi_pointer(object module, str name) except NULL:
    capsule = module.__pyx_capi__[name]
    signature = (<bytes>PyCapsule_GetName(capsule)).decode()
    # The adapter passes C ints; scipy announced 64-bit BLAS integers (blas_int): refuse, don't crash.
    if signature.count("int *") != 6:
        raise ImportError(f"scipy.linalg.cython_blas.{name} has an unexpected signature {signature!r}; "
                          "this fastgru expects 32-bit BLAS integers")
    return PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule))


cdef int _load_scipy_blas() except -1:
    global fortran_sgemm, fortran_dgemm
    if fortran_sgemm != NULL:
        return 0
    from scipy.linalg import cython_blas
    fortran_dgemm = <fortran_dgemm_fn>_capi_pointer(cython_blas, "dgemm")
    fortran_sgemm = <fortran_sgemm_fn>_capi_pointer(cython_blas, "sgemm")
    return 0


# The fg_blas table for calls that need GEMMs (the backward pass): scipy's, loaded on first use;
# "reference" swaps in the core's plain loops (tests).
cdef bint _use_reference_blas = False

# ------------------------------------------------------------------ kernel tables

_TABLES = tuple(fg_isa_name(<fg_isa>i).decode() for i in range(1, FG_ISA_COUNT))  # portable first
_TABLE_VALUES = {name: i + 1 for i, name in enumerate(_TABLES)}
KERNELS_VARIABLE = "FASTGRU_KERNELS"


def kernel_tables():
    """Every kernel table fastgru has, portable first (docs/kernels.md)."""
    return list(_TABLES)


def missing_features(str table):
    """The CPU features ``table`` needs that this CPU (or its OS) lacks: [] where it runs it."""
    if table not in _TABLE_VALUES:
        raise ValueError(f"unknown kernel table {table!r}: the tables are {', '.join(_TABLES)}")
    cdef unsigned needs = fg_isa_requires(<fg_isa>_TABLE_VALUES[table])
    cdef unsigned has = fg_cpu_info_get().features
    return [fg_cpu_feature_name(1u << bit).decode() for bit in range(FG_CPU_FEATURE_COUNT)
            if needs & ~has & (1u << bit)]


def supported_isas():
    """Every kernel table this CPU runs, portable first."""
    return [name for name in _TABLES if fg_isa_supported(<fg_isa>_TABLE_VALUES[name])]


def best_isa():
    """The kernel table fastgru picks for this CPU by itself (what ``auto`` runs)."""
    return fg_isa_name(fg_isa_detect()).decode()


_WIDTH_REASONS = {
    FG_WIDTH_NO_AVX512: "no AVX-512 (F, BW, VL, DQ, with the OS saving its registers)",
    FG_WIDTH_KNOWN_SPLIT: "cpuid names a core that splits 512-bit FMAs into 256-bit halves",
    FG_WIDTH_KNOWN_FULL: "cpuid names a core that runs 512-bit FMAs at full rate",
    FG_WIDTH_MEASURED_SPLIT: "timed: 512-bit FMAs ran at under 1.5x the 256-bit rate",
    FG_WIDTH_MEASURED_FULL: "timed: 512-bit FMAs ran at 1.5x the 256-bit rate or more",
}
_CACHE_SOURCES = {FG_CACHE_FALLBACK: "fallback (no cpuid leaf describes the caches)",
                  FG_CACHE_CPUID_4: "cpuid leaf 4", FG_CACHE_CPUID_8000001D: "cpuid leaf 0x8000001D",
                  FG_CACHE_CPUID_80000006: "cpuid leaves 0x80000005/0x80000006"}


def cpu_info():
    """What the C core read about this CPU and decided from it (fg_cpu_info, fastgru.h), as a dict."""
    cdef const fg_cpu_info *cpu = fg_cpu_info_get()
    return {
        "vendor": cpu.vendor.decode("ascii", "replace"),
        "model name": cpu.model_name.decode("ascii", "replace"),
        "family": cpu.family, "model": cpu.model, "stepping": cpu.stepping,
        "features": [fg_cpu_feature_name(1u << bit).decode() for bit in range(FG_CPU_FEATURE_COUNT)
                     if cpu.features & (1u << bit)],
        "feature names": [fg_cpu_feature_name(1u << bit).decode() for bit in range(FG_CPU_FEATURE_COUNT)],
        "l1d bytes": cpu.l1d_bytes, "l2 bytes": cpu.l2_bytes, "l3 bytes": cpu.l3_bytes,
        "cache source": _CACHE_SOURCES.get(cpu.cache_source, "unknown"),
        "table": fg_isa_name(cpu.isa).decode(),
        "width reason": _WIDTH_REASONS.get(cpu.width_reason, "unknown"),
        "fma256 gflops": cpu.fma256_gflops, "fma512 gflops": cpu.fma512_gflops,
        "chunk bytes": cpu.chunk_bytes, "k block": cpu.k_block,
    }


def _table_from_environment(value, missing=missing_features, supported=supported_isas):
    """(fg_isa value, None) for a FASTGRU_KERNELS value, or (None, the error to raise at the first call).
    ``missing`` and ``supported`` describe the CPU (tests hand in others)."""
    name = value.strip().lower()
    if name in ("", "auto"):
        return FG_ISA_AUTO, None
    if name not in _TABLE_VALUES:
        return None, ValueError(f"{KERNELS_VARIABLE}={value!r} names no kernel table: use auto or one of "
                                f"{', '.join(_TABLES)}")
    lacking = missing(name)
    if lacking:
        return None, NotImplementedError(
            f"{KERNELS_VARIABLE}={value!r}: this CPU lacks {', '.join(lacking)}, which the {name} table needs "
            f"(it runs {', '.join(supported())})")
    return _TABLE_VALUES[name], None


# The table of the process, from FASTGRU_KERNELS (read once, at import), and the current one (set_backend).
# A bad variable does not stop the import (show_config still reports it): every call raises its error.
import os as _os
_environment_value = _os.environ.get(KERNELS_VARIABLE)
_default_isa, _default_error = (FG_ISA_AUTO, None) if _environment_value is None else \
    _table_from_environment(_environment_value)
cdef fg_isa _isa = _default_isa if _default_isa is not None else FG_ISA_AUTO
_isa_error = _default_error
_isa_source = "default"  # or "set_backend"


def kernel_table():
    """(the table calls run now, how it was chosen), or (None, the error every call raises) where
    FASTGRU_KERNELS names a table that cannot run."""
    if _isa_error is not None:
        return None, str(_isa_error)
    name = best_isa() if _isa == FG_ISA_AUTO else fg_isa_name(_isa).decode()
    if _isa_source == "set_backend":
        how = "set_backend(isa='auto'): chosen for this CPU" if _isa == FG_ISA_AUTO else f"set_backend(isa={name!r})"
    elif _environment_value is not None and _isa != FG_ISA_AUTO:
        how = f"{KERNELS_VARIABLE}={_environment_value!r}"
    else:
        how = "chosen for this CPU"
    return name, how


def set_backend(isa=None, blas="scipy"):
    """Chooses the kernel table and GEMMs ("scipy", "reference") for later calls.

    ``isa``: a table name (kernel_tables(): "generic", "avx2", "avx512vl", "avx512vl_vnni", "avx512",
    "avx512_vnni"), "auto" (the CPU's own choice), or None: the process default, which is
    ``FASTGRU_KERNELS`` where that variable is set, else "auto". A process-wide switch for tests and
    benchmarks; not thread-safe with concurrent calls."""
    global _isa, _use_reference_blas, _isa_error, _isa_source
    if isa is not None and isa != "auto" and isa not in _TABLE_VALUES:
        raise ValueError(f"isa must be None, 'auto' or one of {', '.join(_TABLES)}, got {isa!r}")
    if blas not in ("scipy", "reference"):
        raise ValueError(f"blas must be 'scipy' or 'reference', got {blas!r}")
    if isa not in (None, "auto"):
        missing = missing_features(isa)
        if missing:
            raise NotImplementedError(f"this CPU cannot run the {isa!r} kernels: it lacks {', '.join(missing)} "
                                      f"(it runs {', '.join(supported_isas())})")
    if isa is None:
        _isa = _default_isa if _default_isa is not None else FG_ISA_AUTO
        _isa_error = _default_error
        _isa_source = "default"
    else:
        _isa = FG_ISA_AUTO if isa == "auto" else _TABLE_VALUES[isa]
        _isa_error = None
        _isa_source = "set_backend"
    _use_reference_blas = blas == "reference"


# ------------------------------------------------------------------ errors and buffers

cdef int _check(fg_status status, str what) except -1:
    if status == FG_OK:
        return 0
    message = f"{what}: {fg_status_string(status).decode()}"
    if status == FG_ERR_OUT_OF_MEMORY:
        raise MemoryError(message)
    if status == FG_ERR_UNSUPPORTED:
        raise NotImplementedError(message)
    if status in (FG_ERR_INVALID_SIZE, FG_ERR_INVALID_LENGTHS, FG_ERR_INVALID_SPEC, FG_ERR_SIZE_OVERFLOW,
                  FG_ERR_INVALID_WEIGHTS):
        raise ValueError(message)
    raise RuntimeError(message)  # the binding handed C something it should have refused: a fastgru bug


cdef void *_buffer(object array, object dtype, int64_t count, str name, bint writable) except? NULL:
    """The data pointer of a C-contiguous ndarray of `dtype` with `count` elements, or NULL for None."""
    if array is None:
        return NULL
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(array).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>array
    if arr.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {arr.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be C-contiguous")
    if not cnp.PyArray_ISBEHAVED_RO(arr):
        raise ValueError(f"{name} must be aligned and in native byte order")
    if arr.size != count:
        raise ValueError(f"{name} must have {count} elements, got {arr.size}")
    if writable and not arr.flags.writeable:
        raise ValueError(f"{name} must be writable")
    return cnp.PyArray_DATA(arr)


cdef class Workspace:
    """A growable, 64-byte aligned scratch buffer handed to the core."""
    cdef object storage
    cdef readonly size_t nbytes
    cdef char *data

    def __cinit__(self):
        self.nbytes = 0
        self.data = NULL

    cdef char *reserve(self, size_t nbytes) except NULL:
        cdef uintptr_t address
        if nbytes > self.nbytes or self.data == NULL:
            self.storage = np.empty(nbytes + 64, dtype=np.uint8)
            address = <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>self.storage)
            self.data = <char *>((address + 63) & ~(<uintptr_t>63))
            self.nbytes = nbytes
        return self.data


cdef class Pool:
    """Persistent worker threads for one call at a time (fg_pool)."""
    cdef fg_pool *pool
    cdef readonly int num_threads

    def __cinit__(self, int num_threads):
        _check(fg_pool_create(num_threads, &self.pool), "creating a thread pool")
        self.num_threads = fg_pool_num_threads(self.pool)

    def __dealloc__(self):
        fg_pool_destroy(self.pool)


cdef fg_context _context(Pool pool, bint needs_blas=False) except *:
    """The context of a core call; needs_blas for calls that run GEMMs (fg_backward)."""
    cdef fg_context ctx
    ctx.blas = NULL
    if needs_blas:
        if _use_reference_blas:
            ctx.blas = fg_reference_blas()
        else:
            _load_scipy_blas()
            ctx.blas = &_scipy_blas
    if _isa_error is not None:
        raise _isa_error
    ctx.pool = pool.pool if pool is not None else NULL
    ctx.isa = _isa
    return ctx


cdef int _layer_table(fg_layer_weights *table, list entries, object dtype, int64_t input_size,
                      int64_t hidden_size, int64_t num_layers, int64_t num_directions, bint writable,
                      str prefix) except -1:
    """Fills table[k * D + d] from entries of (weight_ih, weight_hh, bias_ih, bias_hh) arrays (weights
    or their gradients, layer-major; biases may be None)."""
    cdef int64_t k, d, in_k, index
    cdef int64_t gates = 3 * hidden_size
    for k in range(num_layers):
        in_k = input_size if k == 0 else num_directions * hidden_size
        for d in range(num_directions):
            index = k * num_directions + d
            w_ih, w_hh, b_ih, b_hh = entries[index]
            table[index].weight_ih = _buffer(w_ih, dtype, gates * in_k, prefix + "weight_ih", writable)
            table[index].weight_hh = _buffer(w_hh, dtype, gates * hidden_size, prefix + "weight_hh", writable)
            table[index].bias_ih = _buffer(b_ih, dtype, gates, prefix + "bias_ih", writable)
            table[index].bias_hh = _buffer(b_hh, dtype, gates, prefix + "bias_hh", writable)
    return 0


# ------------------------------------------------------------------ the model

# A model of this many bytes or more is advised for transparent huge pages (fg_gru_huge_pages).
HUGE_PAGE_BYTES = FG_HUGE_PAGE_BYTES

cdef fg_spec _make_spec(int64_t input_size, int64_t hidden_size, int64_t num_layers, int64_t num_directions,
                        object dtype, bint reset_after, object gate_activation, double clip) except *:
    # The Fortran BLAS takes 32-bit sizes: every GEMM dimension must fit.
    if input_size >= INT_MAX // 4 or 6 * hidden_size >= INT_MAX // 4:
        raise ValueError(f"input_size {input_size} or hidden_size {hidden_size} too large for 32-bit BLAS")
    cdef fg_spec spec
    spec.input_size = input_size
    spec.hidden_size = hidden_size
    spec.num_layers = num_layers
    spec.num_directions = num_directions
    spec.dtype = FG_FLOAT32 if dtype == np.float32 else FG_FLOAT64
    spec.variant = FG_LINEAR_BEFORE_RESET if reset_after else FG_RESET_BEFORE
    spec.gate_activation = FG_SIGMOID if gate_activation is None else FG_HARD_SIGMOID
    spec.gate_alpha = 0 if gate_activation is None else gate_activation[0]
    spec.gate_beta = 0 if gate_activation is None else gate_activation[1]
    spec.clip = clip
    return spec


cdef int _int8_table(fg_int8_layer_weights *table, list entries, int64_t input_size, int64_t hidden_size,
                     int64_t num_layers, int64_t num_directions, bint writable) except -1:
    """Fills table[k * D + d] from entries of (weight_ih, weight_ih_scale, weight_hh, weight_hh_scale,
    bias_ih, bias_hh): int8 codes, float32 scales and biases (biases may be None)."""
    cdef int64_t k, d, in_k, index
    cdef int64_t gates = 3 * hidden_size
    for k in range(num_layers):
        in_k = input_size if k == 0 else num_directions * hidden_size
        for d in range(num_directions):
            index = k * num_directions + d
            q_ih, s_ih, q_hh, s_hh, b_ih, b_hh = entries[index]
            if q_ih is None or s_ih is None or q_hh is None or s_hh is None:
                raise ValueError("int8 weights need codes and scales for weight_ih and weight_hh")
            table[index].weight_ih = <int8_t *>_buffer(q_ih, np.int8, gates * in_k, "weight_ih codes", writable)
            table[index].weight_ih_scale = <float *>_buffer(s_ih, np.float32, gates, "weight_ih scales", writable)
            table[index].weight_hh = <int8_t *>_buffer(q_hh, np.int8, gates * hidden_size, "weight_hh codes",
                                                       writable)
            table[index].weight_hh_scale = <float *>_buffer(s_hh, np.float32, gates, "weight_hh scales", writable)
            table[index].bias_ih = <float *>_buffer(b_ih, np.float32, gates, "bias_ih", writable)
            table[index].bias_hh = <float *>_buffer(b_hh, np.float32, gates, "bias_hh", writable)
    return 0


cdef class Model:
    """A packed fg_gru. Immutable once built: safe to call from many threads, each with its own
    workspace and pool. ``Model(...)`` packs float weights; `quantize` and `from_int8` make int8 models."""
    cdef fg_gru *gru
    cdef readonly object dtype
    cdef readonly int64_t input_size, hidden_size, num_layers, num_directions
    cdef readonly bint reset_after
    cdef readonly str weight_format
    cdef readonly bint int8_narrow

    def __cinit__(self, *args, **kwargs):
        self.gru = NULL

    def __init__(self, int64_t input_size, int64_t hidden_size, int64_t num_layers, int64_t num_directions,
                 dtype, bint reset_after, gate_activation, double clip, list weights):
        """weights: per (layer, direction), layer-major, a tuple (weight_ih, weight_hh, bias_ih, bias_hh)
        of C-contiguous arrays in PyTorch's layout; biases may be None. gate_activation is None for the
        sigmoid or (alpha, beta) for a hard sigmoid."""
        cdef fg_layer_weights[2048] table
        cdef fg_gru *gru
        if self.gru != NULL:
            raise RuntimeError("a Model is built once")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if num_layers * num_directions != len(weights) or len(weights) > 2048:
            raise ValueError("weights must hold one entry per layer and direction (at most 2048)")
        cdef fg_spec spec = _make_spec(input_size, hidden_size, num_layers, num_directions, dtype, reset_after,
                                       gate_activation, clip)
        _layer_table(table, weights, dtype, input_size, hidden_size, num_layers, num_directions, False, "")
        _check(fg_gru_create(&spec, table, &gru), "creating the model")
        self._adopt(gru)

    cdef _adopt(self, fg_gru *gru):
        """Takes ownership of a created model and reads its sizes."""
        cdef const fg_spec *spec = fg_gru_spec(gru)
        self.gru = gru
        self.dtype = np.dtype(np.float32 if spec.dtype == FG_FLOAT32 else np.float64)
        self.input_size = spec.input_size
        self.hidden_size = spec.hidden_size
        self.num_layers = spec.num_layers
        self.num_directions = spec.num_directions
        self.reset_after = spec.variant == FG_LINEAR_BEFORE_RESET
        self.weight_format = "int8" if fg_gru_weight_format(gru) == FG_WEIGHTS_INT8 else "native"
        self.int8_narrow = fg_gru_int8_narrow(gru) != 0

    @staticmethod
    def from_int8(int64_t input_size, int64_t hidden_size, int64_t num_layers, int64_t num_directions,
                  bint reset_after, gate_activation, double clip, list weights):
        """An int8 model (float32 activations) from per (layer, direction) tuples (weight_ih codes,
        weight_ih scales, weight_hh codes, weight_hh scales, bias_ih, bias_hh): int8 (3H, I_k) and
        (3H, H) codes, float32 (3H,) scales and biases (biases may be None) (fg_gru_create_int8)."""
        cdef fg_int8_layer_weights[2048] table
        cdef fg_gru *gru
        if num_layers * num_directions != len(weights) or len(weights) > 2048:
            raise ValueError("weights must hold one entry per layer and direction (at most 2048)")
        cdef fg_spec spec = _make_spec(input_size, hidden_size, num_layers, num_directions, np.float32, reset_after,
                                       gate_activation, clip)
        _int8_table(table, weights, input_size, hidden_size, num_layers, num_directions, False)
        _check(fg_gru_create_int8(&spec, table, &gru), "creating the int8 model")
        cdef Model model = Model.__new__(Model)
        model._adopt(gru)
        return model

    def quantize(self, int weight_bits=8):
        """A new int8 model holding this float32 model's weights as int8 codes of `weight_bits` bits (8 or
        7; fg_gru_quantize_bits)."""
        cdef fg_gru *gru
        _check(fg_gru_quantize_bits(self.gru, FG_WEIGHTS_INT8, weight_bits, &gru), "quantizing the model to int8")
        cdef Model model = Model.__new__(Model)
        model._adopt(gru)
        return model

    def _layer_input_widths(self):
        """The input width of each (layer, direction), layer-major: I for the first layer, D*H after."""
        return [self.input_size if k == 0 else self.num_directions * self.hidden_size
                for k in range(self.num_layers) for _ in range(self.num_directions)]

    def weights(self, bint bias):
        """A float model's weights as new arrays in PyTorch's layout, unpacked from the panels
        (fg_gru_get_weights): per (layer, direction), layer-major, (weight_ih, weight_hh, bias_ih,
        bias_hh), the biases None unless `bias`."""
        cdef fg_layer_weights[2048] table
        cdef int64_t L = self.num_layers, D = self.num_directions, H = self.hidden_size
        cdef fg_status status
        entries = [(np.empty((3 * H, in_k), self.dtype), np.empty((3 * H, H), self.dtype),
                    np.empty(3 * H, self.dtype) if bias else None, np.empty(3 * H, self.dtype) if bias else None)
                   for in_k in self._layer_input_widths()]
        _layer_table(table, entries, self.dtype, self.input_size, H, L, D, True, "")
        with nogil:
            status = fg_gru_get_weights(self.gru, table)
        _check(status, "reading the weights")
        return entries

    def int8_weights(self, bint bias):
        """An int8 model's codes, scales and biases as new arrays (fg_gru_get_int8_weights): per (layer,
        direction), (weight_ih codes, weight_ih scales, weight_hh codes, weight_hh scales, bias_ih,
        bias_hh), the biases None unless `bias`."""
        cdef fg_int8_layer_weights[2048] table
        cdef int64_t L = self.num_layers, D = self.num_directions, H = self.hidden_size
        cdef fg_status status
        entries = [(np.empty((3 * H, in_k), np.int8), np.empty(3 * H, np.float32),
                    np.empty((3 * H, H), np.int8), np.empty(3 * H, np.float32),
                    np.empty(3 * H, np.float32) if bias else None, np.empty(3 * H, np.float32) if bias else None)
                   for in_k in self._layer_input_widths()]
        _int8_table(table, entries, self.input_size, H, L, D, True)
        with nogil:
            status = fg_gru_get_int8_weights(self.gru, table)
        _check(status, "reading the int8 weights")
        return entries

    def __dealloc__(self):
        fg_gru_destroy(self.gru)

    @property
    def packed_bytes(self):
        return fg_gru_packed_bytes(self.gru)

    @property
    def huge_pages(self):
        return fg_gru_huge_pages(self.gru) != 0

    def workspace_bytes(self, int64_t seq_len, int64_t batch):
        cdef size_t nbytes
        _check(fg_forward_workspace_size(self.gru, seq_len, batch, &nbytes), "sizing the workspace")
        return nbytes

    def tape_bytes(self, int64_t seq_len, int64_t batch):
        cdef size_t nbytes
        _check(fg_tape_size(self.gru, seq_len, batch, &nbytes), "sizing the tape")
        return nbytes

    cdef int _sequence_inputs(self, fg_sequence *seq, x, h0, lengths, mask, bint batch_first, int64_t T,
                              int64_t B) except -1:
        """The input half of an fg_sequence (forward and backward describe the same call)."""
        cdef int64_t L = self.num_layers, D = self.num_directions, H = self.hidden_size
        seq.seq_len = T
        seq.batch = B
        seq.batch_first = batch_first
        seq.x = _buffer(x, self.dtype, T * B * self.input_size, "x", False)
        seq.h0 = _buffer(h0, self.dtype, L * D * B * H, "h0", False)
        seq.lengths = <const int64_t *>_buffer(lengths, np.int64, B, "lengths", False)
        seq.mask = <const uint8_t *>_buffer(mask, np.uint8, T * B, "mask", False)
        return 0

    def forward(self, x, h0, lengths, mask, bint batch_first, output, h_n, tape, Workspace workspace,
                Pool pool):
        """Runs fg_forward. All arrays must already have the right shape, dtype and C order: this checks
        element counts and flags only (fastgru.model gives the user-facing errors)."""
        cdef int64_t T = x.shape[1] if batch_first else x.shape[0]
        cdef int64_t B = x.shape[0] if batch_first else x.shape[1]
        cdef int64_t L = self.num_layers, D = self.num_directions, H = self.hidden_size
        cdef fg_sequence seq
        cdef size_t nbytes, tape_nbytes
        cdef void *tape_ptr = NULL
        cdef char *ws
        cdef fg_status status
        if B >= INT_MAX // 8:
            raise ValueError(f"batch size {B} too large for 32-bit BLAS")
        self._sequence_inputs(&seq, x, h0, lengths, mask, batch_first, T, B)
        seq.output = _buffer(output, self.dtype, T * B * D * H, "output", True)
        seq.h_n = _buffer(h_n, self.dtype, L * D * B * H, "h_n", True)
        if tape is not None:
            tape_nbytes = self.tape_bytes(T, B)
            tape_ptr = _buffer(tape, np.uint8, tape_nbytes, "tape", True)
        _check(fg_forward_workspace_size(self.gru, T, B, &nbytes), "sizing the workspace")
        ws = workspace.reserve(nbytes)
        cdef fg_context ctx = _context(pool)
        with nogil:
            status = fg_forward(self.gru, &seq, tape_ptr, ws, nbytes, &ctx)
        _check(status, "forward")

    def backward_workspace_bytes(self, int64_t seq_len, int64_t batch):
        cdef size_t nbytes
        _check(fg_backward_workspace_size(self.gru, seq_len, batch, &nbytes), "sizing the backward workspace")
        return nbytes

    def backward(self, x, h0, lengths, mask, bint batch_first, tape, grad_output, grad_h_n, grad_x, grad_h0,
                 list grad_weights, Workspace workspace):
        """Runs fg_backward for the forward call that filled `tape` from (x, h0, lengths, mask).
        grad_output and grad_h_n may be None (zeros); grad_x, grad_h0 and the arrays of grad_weights (per
        layer and direction, layer-major, (weight_ih, weight_hh, bias_ih, bias_hh), biases may be None)
        are overwritten. Like forward, this checks element counts and flags only."""
        cdef int64_t T = x.shape[1] if batch_first else x.shape[0]
        cdef int64_t B = x.shape[0] if batch_first else x.shape[1]
        cdef int64_t L = self.num_layers, D = self.num_directions, H = self.hidden_size
        cdef fg_sequence seq
        cdef fg_gradients grads
        cdef fg_layer_weights[2048] table
        cdef size_t nbytes
        cdef const void *tape_ptr
        cdef const void *grad_output_ptr
        cdef const void *grad_h_n_ptr
        cdef char *ws
        cdef fg_status status
        if B >= INT_MAX // 8:
            raise ValueError(f"batch size {B} too large for 32-bit BLAS")
        if len(grad_weights) != L * D:
            raise ValueError("grad_weights must hold one entry per layer and direction")
        self._sequence_inputs(&seq, x, h0, lengths, mask, batch_first, T, B)
        seq.output = NULL
        seq.h_n = NULL
        tape_ptr = _buffer(tape, np.uint8, self.tape_bytes(T, B), "tape", False)
        grad_output_ptr = _buffer(grad_output, self.dtype, T * B * D * H, "grad_output", False)
        grad_h_n_ptr = _buffer(grad_h_n, self.dtype, L * D * B * H, "grad_h_n", False)
        grads.grad_x = _buffer(grad_x, self.dtype, T * B * self.input_size, "grad_x", True)
        grads.grad_h0 = _buffer(grad_h0, self.dtype, L * D * B * H, "grad_h0", True)
        _layer_table(table, grad_weights, self.dtype, self.input_size, H, L, D, True, "grad ")
        grads.layers = table
        _check(fg_backward_workspace_size(self.gru, T, B, &nbytes), "sizing the backward workspace")
        ws = workspace.reserve(nbytes)
        cdef fg_context ctx = _context(None, True)
        with nogil:
            status = fg_backward(self.gru, &seq, tape_ptr, grad_output_ptr, grad_h_n_ptr, &grads, ws, nbytes, &ctx)
        _check(status, "backward")

    def step_workspace_bytes(self, int64_t batch):
        cdef size_t nbytes
        _check(fg_step_workspace_size(self.gru, batch, &nbytes), "sizing the stream workspace")
        return nbytes


cdef class Stepper:
    """The hot path of GRUStream.step: fixed state, output and workspace, checks done in C.

    x_t that is not already a C-contiguous array of the model's dtype and shape (B, I) (or (I,) when
    B = 1) goes through `convert` (fastgru.model's user-facing conversion and errors) first."""
    cdef Model model
    cdef object state, output, view, convert
    cdef Workspace workspace
    cdef Pool pool
    cdef int64_t batch
    cdef int type_num

    def __cinit__(self, Model model, state, output, view, Workspace workspace, Pool pool, convert):
        self.model = model
        self.state = state
        self.output = output
        self.view = view
        self.workspace = workspace
        self.pool = pool
        self.convert = convert
        self.batch = state.shape[1]
        self.type_num = cnp.NPY_FLOAT32 if model.dtype == np.float32 else cnp.NPY_FLOAT64
        workspace.reserve(model.step_workspace_bytes(self.batch))

    cdef bint _ready(self, object x_t):
        if not cnp.PyArray_Check(x_t):
            return False
        cdef cnp.ndarray arr = <cnp.ndarray>x_t
        if cnp.PyArray_TYPE(arr) != self.type_num or not cnp.PyArray_IS_C_CONTIGUOUS(arr) \
                or not cnp.PyArray_ISBEHAVED_RO(arr):  # aligned and in native byte order
            return False
        if cnp.PyArray_NDIM(arr) == 2:
            return cnp.PyArray_DIM(arr, 0) == self.batch and cnp.PyArray_DIM(arr, 1) == self.model.input_size
        return cnp.PyArray_NDIM(arr) == 1 and self.batch == 1 and cnp.PyArray_DIM(arr, 0) == self.model.input_size

    def step(self, x_t):
        """Advances one step; returns the read-only output view (overwritten by the next step)."""
        if not self._ready(x_t):
            x_t = self.convert(x_t)
        cdef fg_context ctx = _context(self.pool)
        cdef const void *x_ptr = cnp.PyArray_DATA(<cnp.ndarray>x_t)
        cdef void *h_ptr = cnp.PyArray_DATA(<cnp.ndarray>self.state)
        cdef void *out_ptr = cnp.PyArray_DATA(<cnp.ndarray>self.output)
        cdef fg_status status
        with nogil:
            status = fg_step(self.model.gru, self.batch, x_ptr, h_ptr, out_ptr, self.workspace.data,
                             self.workspace.nbytes, &ctx)
        _check(status, "step")
        return self.view


def new_workspace():
    return Workspace()
