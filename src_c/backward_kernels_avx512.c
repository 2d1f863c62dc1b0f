/* backward_kernels_avx512.c: the float32 panel product of backward_kernels.h on 512-bit vectors, for the
 * 512-bit tables (fg_kernels_avx512, fg_kernels_avx512_vnni: CPUs whose 512-bit FMAs run at full rate,
 * cpu.c). A 32-column panel row is two 512-bit vectors, so a tile of up to 12 rows keeps 24
 * accumulators, the two weight vectors and a broadcast in AVX-512's 32 registers: each weight vector
 * loaded from L1 serves 12 rows, where the AVX2 kernel's 16 registers allow 3.
 *
 * The bits are those of fg_panel_gemm_f32_avx2 (backward_kernels_impl.h) on every input: an element
 * of c takes, per chunk of FG_PANEL_CHUNK rows of W, the FMAs of its row of a in k order from zero, then
 * one add into c, whichever tile it falls in; only the AVX2 kernel's one-row tile (the last row, when
 * rows % 3 == 1) sums even and odd k apart, and so does this kernel for that row. Tests run both on
 * the same data (tests/test_backward_backends.py). float64 keeps the AVX2 kernel, as the forward does.
 * Only this file is built for AVX-512 among the backward's (by pragma, never by a build flag). */
#include "templates.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512dq"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,avx512f,avx512dq")
#endif

#include <immintrin.h>

/* Rows of a tile, and rows of W per pass: the AVX2 kernel's chunk, so that the sums are the same. */
#define FG_PANEL_ROWS 12
#define FG_PANEL_CHUNK 128

/* row[0:width] += the 32 sums lo (columns 0..15), hi (16..31) of one row: a partial last panel's
 * columns past the matrix are not written. */
FG_INLINE void add_sums_f32_avx512(float *row, __m512 lo, __m512 hi, int64_t width) {
    if (width == 32) {
        _mm512_storeu_ps(row, _mm512_add_ps(_mm512_loadu_ps(row), lo));
        _mm512_storeu_ps(row + 16, _mm512_add_ps(_mm512_loadu_ps(row + 16), hi));
        return;
    }
    float partial[32];
    _mm512_storeu_ps(partial, lo);
    _mm512_storeu_ps(partial + 16, hi);
    for (int64_t j = 0; j < width; j++) row[j] += partial[j];
}

/* c[r][0:width] += the chunk's sums of R rows (1..12, a constant in each call) against one panel
 * of K rows: each sum from zero in k order. */
FG_INLINE void panel_tile_f32_avx512(int R, int64_t K, const float *a, int64_t lda, const float *panel, float *c,
                                     int64_t ldc, int64_t width) {
    __m512 s[FG_PANEL_ROWS][2];
    for (int r = 0; r < R; r++) s[r][0] = s[r][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m512 w0 = _mm512_loadu_ps(panel + k * 32), w1 = _mm512_loadu_ps(panel + k * 32 + 16);
        for (int r = 0; r < R; r++) {
            const __m512 x = _mm512_set1_ps(a[r * lda + k]);
            s[r][0] = _mm512_fmadd_ps(x, w0, s[r][0]);
            s[r][1] = _mm512_fmadd_ps(x, w1, s[r][1]);
        }
    }
    for (int r = 0; r < R; r++) add_sums_f32_avx512(c + r * ldc, s[r][0], s[r][1], width);
}

/* The AVX2 kernel's one-row tile: even k and odd k in separate sums, added before a last lone k (K odd). */
FG_INLINE void panel_row_f32_avx512(int64_t K, const float *a, const float *panel, float *c, int64_t width) {
    __m512 even0 = _mm512_setzero_ps(), even1 = _mm512_setzero_ps();
    __m512 odd0 = _mm512_setzero_ps(), odd1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 1 < K; k += 2) {
        const __m512 a0 = _mm512_set1_ps(a[k]), a1 = _mm512_set1_ps(a[k + 1]);
        const float *w = panel + k * 32;
        even0 = _mm512_fmadd_ps(a0, _mm512_loadu_ps(w), even0);
        even1 = _mm512_fmadd_ps(a0, _mm512_loadu_ps(w + 16), even1);
        odd0 = _mm512_fmadd_ps(a1, _mm512_loadu_ps(w + 32), odd0);
        odd1 = _mm512_fmadd_ps(a1, _mm512_loadu_ps(w + 48), odd1);
    }
    even0 = _mm512_add_ps(even0, odd0), even1 = _mm512_add_ps(even1, odd1);
    for (; k < K; k++) {
        const __m512 x = _mm512_set1_ps(a[k]);
        even0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(panel + k * 32), even0);
        even1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(panel + k * 32 + 16), even1);
    }
    add_sums_f32_avx512(c, even0, even1, width);
}

/* panel_tile_f32_avx512 with R a constant for the compiler (2..12 from fg_panel_gemm_f32_avx512; 1 is
 * a correct product too, only not the AVX2 kernel's one-row order). */
FG_INLINE void panel_rows_f32_avx512(int R, int64_t K, const float *a, int64_t lda, const float *panel, float *c,
                                     int64_t ldc, int64_t width) {
    switch (R) {
    case 1: panel_tile_f32_avx512(1, K, a, lda, panel, c, ldc, width); break;
    case 2: panel_tile_f32_avx512(2, K, a, lda, panel, c, ldc, width); break;
    case 3: panel_tile_f32_avx512(3, K, a, lda, panel, c, ldc, width); break;
    case 4: panel_tile_f32_avx512(4, K, a, lda, panel, c, ldc, width); break;
    case 5: panel_tile_f32_avx512(5, K, a, lda, panel, c, ldc, width); break;
    case 6: panel_tile_f32_avx512(6, K, a, lda, panel, c, ldc, width); break;
    case 7: panel_tile_f32_avx512(7, K, a, lda, panel, c, ldc, width); break;
    case 8: panel_tile_f32_avx512(8, K, a, lda, panel, c, ldc, width); break;
    case 9: panel_tile_f32_avx512(9, K, a, lda, panel, c, ldc, width); break;
    case 10: panel_tile_f32_avx512(10, K, a, lda, panel, c, ldc, width); break;
    case 11: panel_tile_f32_avx512(11, K, a, lda, panel, c, ldc, width); break;
    default: panel_tile_f32_avx512(12, K, a, lda, panel, c, ldc, width); break;
    }
}

/* The loops of fg_panel_gemm_f32_avx2: panels outermost (in `reverse` order when asked), then chunks of
 * rows of W (in L1 while every row tile reads them). The rows the AVX2 kernel tiles by 3 go in tiles of
 * up to 12; a last row it would take alone (rows % 3 == 1) goes alone here too. */
void fg_panel_gemm_f32_avx512(int64_t rows, int64_t cols, int64_t K, const float *a, int64_t lda,
                              const float *panels, int64_t panel_stride, float *c, int64_t ldc, int reverse) {
    const int64_t tiled = rows % 3 == 1 ? rows - 1 : rows, n_panels = (cols + 31) / 32;
    for (int64_t p = 0; p < n_panels; p++) {
        const int64_t j0 = (reverse ? n_panels - 1 - p : p) * 32;
        const int64_t width = cols - j0 < 32 ? cols - j0 : 32;
        for (int64_t k0 = 0; k0 < K; k0 += FG_PANEL_CHUNK) {
            const float *panel = panels + (j0 / 32) * panel_stride + k0 * 32;
            const int64_t kc = K - k0 < FG_PANEL_CHUNK ? K - k0 : FG_PANEL_CHUNK;
            for (int64_t r = 0; r < tiled; r += FG_PANEL_ROWS) {
                const int R = (int)(tiled - r < FG_PANEL_ROWS ? tiled - r : FG_PANEL_ROWS);
                panel_rows_f32_avx512(R, kc, a + r * lda + k0, lda, panel, c + r * ldc + j0, ldc, width);
            }
            if (tiled < rows) panel_row_f32_avx512(kc, a + tiled * lda + k0, panel, c + tiled * ldc + j0, width);
        }
    }
}

#undef FG_PANEL_ROWS
#undef FG_PANEL_CHUNK

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif
