/* cpu.c: what the core reads about the CPU at run time (vendor, model, features, cache sizes), the
 * kernel table FG_ISA_AUTO runs there and the blocking derived from the caches, read once per process
 * (fg_cpu_info_get, fastgru.h). One build serves every CPU: nothing here or anywhere in the core is
 * tuned at build time to the CPU it is built on.
 *
 * The width question. An AVX-512 CPU runs the 512-bit tables only where its 512-bit FMAs run at full
 * rate, twice the FLOPs of 256-bit ones; elsewhere (Zen 4 splits each into two 256-bit halves; Intel
 * parts with one 512-bit FMA unit issue 512-bit FMAs at half the 256-bit rate) the 8-row tiles on
 * 256-bit vectors are as fast and leave the clock alone. cpuid names the core, which settles it for the
 * cores listed in known_width; for the others (Intel Skylake-SP and Cascade Lake, whose Silver and
 * Bronze parts have one unit and Gold/Platinum two; Ice Lake; Zen 5 client parts, some of which split;
 * any later core) a calibration times 256- and 512-bit FMA chains once per process, for about half a
 * millisecond, and takes the 512-bit tables where they ran at 1.5x or more. */
#include "internal.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(_M_X64)
#define FG_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- tables and features */

static const char *const isa_names[FG_ISA_COUNT] = {"auto", "generic", "avx2", "avx512vl", "avx512vl_vnni",
                                                     "avx512", "avx512_vnni"};

#define FG_AVX512_BASE (FG_CPU_AVX2 | FG_CPU_FMA | FG_CPU_AVX512F | FG_CPU_AVX512BW | FG_CPU_AVX512VL | FG_CPU_AVX512DQ)

const char *fg_isa_name(fg_isa isa) {
    return (int)isa >= 0 && (int)isa < FG_ISA_COUNT ? isa_names[isa] : NULL;
}

unsigned fg_isa_requires(fg_isa isa) {
    switch (isa) {
    case FG_ISA_AVX2: return FG_CPU_AVX2 | FG_CPU_FMA;
    case FG_ISA_AVX512VL:
    case FG_ISA_AVX512: return FG_AVX512_BASE;
    case FG_ISA_AVX512VL_VNNI:
    case FG_ISA_AVX512_VNNI: return FG_AVX512_BASE | FG_CPU_AVX512VNNI;
    default: return 0;
    }
}

int fg_isa_supported(fg_isa isa) {
    if ((int)isa < 0 || (int)isa >= FG_ISA_COUNT) return 0;
#ifndef FG_HAVE_AVX2_KERNELS
    if (isa > FG_ISA_GENERIC) return 0; /* not built here */
#endif
    const unsigned needs = fg_isa_requires(isa);
    return (fg_cpu_info_get()->features & needs) == needs;
}

const char *fg_cpu_feature_name(unsigned feature) {
    static const char *const names[FG_CPU_FEATURE_COUNT] = {"avx2",     "fma",      "avx512f",     "avx512bw",
                                                            "avx512vl", "avx512dq", "avx512_vnni", "amx_tile"};
    for (int bit = 0; bit < FG_CPU_FEATURE_COUNT; bit++)
        if (feature == 1u << bit) return names[bit];
    return NULL;
}

fg_isa fg_isa_detect(void) { return fg_cpu_info_get()->isa; }

/* ---------------------------------------------------------------- the decision */

/* 1: the core runs 512-bit FMAs at full rate, 0: it splits them (or issues them at half rate), -1:
 * cpuid cannot tell. Only cores known for certain are listed; the rest are timed. AMX tiles exist on
 * Intel's server cores from Sapphire Rapids on, every one of which has two 512-bit FMA units: a
 * hypervisor that reports some other model number (a KVM guest seen here reported 0xA7, a client
 * core's, with AMX) still shows them, and the calibration, which measured 1.64-1.66x there against its
 * 1.5x threshold, is too close to the line on a shared host to be left to decide. */
static int known_width(const char *vendor, int family, int model, unsigned features) {
    if (strcmp(vendor, "AuthenticAMD") == 0 || strcmp(vendor, "HygonGenuine") == 0) {
        if (family == 0x19) return 0;                /* Zen 4 (Zen 3 has no AVX-512) */
        if (family == 0x1A && model < 0x20) return 1; /* Zen 5 EPYC (Turin, Turin dense) */
        return -1;                                    /* Zen 5 client parts differ; later cores */
    }
    if (strcmp(vendor, "GenuineIntel") == 0 && family == 6) {
        switch (model) {
        case 0x8F: /* Sapphire Rapids */
        case 0xCF: /* Emerald Rapids */
        case 0xAD: /* Granite Rapids */
        case 0xAE: return 1;
        default: /* Skylake-SP / Cascade Lake (one or two units by SKU), Ice Lake, clients */
            return features & FG_CPU_AMX_TILE ? 1 : -1;
        }
    }
    return -1;
}

fg_isa fg_isa_choose(const fg_cpu_facts *cpu, double fma256_gflops, double fma512_gflops, fg_width_reason *reason) {
    *reason = FG_WIDTH_NO_AVX512;
    if ((cpu->features & (FG_CPU_AVX2 | FG_CPU_FMA)) != (FG_CPU_AVX2 | FG_CPU_FMA)) return FG_ISA_GENERIC;
    if ((cpu->features & FG_AVX512_BASE) != FG_AVX512_BASE) return FG_ISA_AVX2;
    const int vnni = (cpu->features & FG_CPU_AVX512VNNI) != 0;
    int full = known_width(cpu->vendor, cpu->family, cpu->model, cpu->features);
    if (full >= 0) {
        *reason = full ? FG_WIDTH_KNOWN_FULL : FG_WIDTH_KNOWN_SPLIT;
    } else {
        if (!(fma256_gflops > 0) || !(fma512_gflops > 0)) return FG_ISA_AUTO; /* time it first */
        full = fma512_gflops >= FG_FULL_WIDTH_RATIO * fma256_gflops;
        *reason = full ? FG_WIDTH_MEASURED_FULL : FG_WIDTH_MEASURED_SPLIT;
    }
    if (full) return vnni ? FG_ISA_AVX512_VNNI : FG_ISA_AVX512;
    return vnni ? FG_ISA_AVX512VL_VNNI : FG_ISA_AVX512VL;
}

/* ---------------------------------------------------------------- caches and signature */

void fg_parse_signature(uint32_t eax, int *family, int *model, int *stepping) {
    const int base_family = (int)(eax >> 8 & 0xF), base_model = (int)(eax >> 4 & 0xF);
    *stepping = (int)(eax & 0xF);
    *family = base_family == 0xF ? base_family + (int)(eax >> 20 & 0xFF) : base_family;
    *model = base_family == 0x6 || base_family == 0xF ? (int)(eax >> 16 & 0xF) << 4 | base_model : base_model;
}

int fg_parse_cache_leaf(const fg_cpuid_regs *subleaves, int count, int64_t *l1d, int64_t *l2, int64_t *l3) {
    int found = 0;
    for (int i = 0; i < count; i++) {
        const uint32_t eax = subleaves[i].eax, ebx = subleaves[i].ebx, ecx = subleaves[i].ecx;
        const unsigned type = eax & 0x1F, level = (eax >> 5) & 0x7;
        if (type == 0) break; /* no more caches */
        if (type == 2) continue; /* instruction cache */
        const int64_t line = (int64_t)(ebx & 0xFFF) + 1, partitions = (int64_t)((ebx >> 12) & 0x3FF) + 1;
        const int64_t ways = (int64_t)(ebx >> 22) + 1, sets = (int64_t)ecx + 1;
        const int64_t bytes = ways * partitions * line * sets;
        if (level == 1) *l1d = bytes;
        else if (level == 2) *l2 = bytes;
        else if (level == 3) *l3 = bytes;
        else continue;
        found++;
    }
    return found;
}

int fg_parse_amd_legacy_caches(uint32_t ecx_80000005, uint32_t ecx_80000006, uint32_t edx_80000006, int64_t *l1d,
                               int64_t *l2, int64_t *l3) {
    const int64_t l1 = (int64_t)(ecx_80000005 >> 24) << 10, l2k = (int64_t)(ecx_80000006 >> 16) << 10;
    const int64_t l3k = (int64_t)(edx_80000006 >> 18) * (512 << 10);
    if (l1 <= 0 || l2k <= 0) return 0;
    *l1d = l1;
    *l2 = l2k;
    *l3 = l3k;
    return l3k > 0 ? 3 : 2;
}

void fg_blocking_for(int64_t l2_bytes, int64_t *chunk_bytes, int64_t *k_block) {
    /* The input projection runs for a chunk of time steps at once (forward.c): its gates_x is written
     * block by block and read back by the steps, so it lives in the L3 between the two, and a chunk
     * of more rows streams W_ih's panels (from L3) once for more of them. Four L2s of gates_x: on the
     * servers of docs/kernels.md (L2 of 1-2 MiB, L3 of 2-4 MiB or more per core) it stays within a
     * core's share of the L3, and the workspace stays bounded for any sequence length. Measured on a
     * Zen 5 (1 MiB L2), batch 16 and 64 at H = 512 and batch 32 at H = 1024 ran alike from 1 to 8
     * MiB chunks, and batch 4 at H = 1024 lost 15% at 0.5 MiB. Within [1 MiB, 16 MiB]. */
    int64_t chunk = 4 * l2_bytes;
    chunk = chunk < ((int64_t)1 << 20) ? (int64_t)1 << 20 : chunk;
    chunk = chunk > ((int64_t)16 << 20) ? (int64_t)16 << 20 : chunk;
    *chunk_bytes = chunk;
    /* A multi-row product streams a panel of K rows once per tile of rows. Two blocks' panel rows are
     * 2 x 24 float32 = 192 bytes; a panel that would not fit half the L2 is taken in row blocks that
     * do (kernels_impl.h), so each block stays in L2 while every tile of a group passes over it. A
     * multiple of 16 rows (whole cache lines), at least 64. */
    int64_t rows = l2_bytes / 2 / (2 * FG_PANEL_BLOCK_BYTES);
    rows = rows / 16 * 16;
    *k_block = rows < 64 ? 64 : rows;
}

/* ---------------------------------------------------------------- reading the CPU */

#ifdef FG_X86
static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static void read_features(fg_cpu_info *info) {
    unsigned eax, ebx, ecx, edx;
    const unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 1) return;
    __cpuid(1, eax, ebx, ecx, edx);
    const unsigned fms = eax;
    const int os_saves_avx = (ecx >> 27 & 1) && (read_xcr0() & 0x6) == 0x6;
    const int os_saves_avx512 = os_saves_avx && (read_xcr0() & 0xE0) == 0xE0;
    unsigned features = 0;
    if (os_saves_avx && (ecx >> 28 & 1) && (ecx >> 12 & 1)) features |= FG_CPU_FMA;
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, eax, ebx, ecx, edx);
        if (os_saves_avx && (ebx >> 5 & 1)) features |= FG_CPU_AVX2;
        if (os_saves_avx512) {
            if (ebx >> 16 & 1) features |= FG_CPU_AVX512F;
            if (ebx >> 17 & 1) features |= FG_CPU_AVX512DQ;
            if (ebx >> 30 & 1) features |= FG_CPU_AVX512BW;
            if (ebx >> 31 & 1) features |= FG_CPU_AVX512VL;
            if (ecx >> 11 & 1) features |= FG_CPU_AVX512VNNI;
        }
        if (edx >> 24 & 1) features |= FG_CPU_AMX_TILE;
    }
    info->features = features;
    fg_parse_signature(fms, &info->family, &info->model, &info->stepping);
}

static void read_names(fg_cpu_info *info) {
    unsigned regs[4];
    __cpuid(0, regs[0], regs[1], regs[2], regs[3]);
    memcpy(info->vendor, &regs[1], 4); /* EBX, EDX, ECX */
    memcpy(info->vendor + 4, &regs[3], 4);
    memcpy(info->vendor + 8, &regs[2], 4);
    info->vendor[12] = '\0';
    if (__get_cpuid_max(0x80000000, NULL) >= 0x80000004) {
        char brand[49];
        for (unsigned leaf = 0; leaf < 3; leaf++) {
            __cpuid(0x80000002 + leaf, regs[0], regs[1], regs[2], regs[3]);
            memcpy(brand + 16 * leaf, regs, 16);
        }
        brand[48] = '\0';
        const char *start = brand;
        while (*start == ' ') start++;
        size_t length = strlen(start);
        while (length > 0 && start[length - 1] == ' ') length--;
        if (length >= sizeof info->model_name) length = sizeof info->model_name - 1;
        memcpy(info->model_name, start, length);
        info->model_name[length] = '\0';
    }
}

static int read_cache_leaf(unsigned leaf, fg_cpu_info *info) {
    fg_cpuid_regs subleaves[16];
    int count = 0;
    for (; count < 16; count++) {
        unsigned eax, ebx, ecx, edx;
        __cpuid_count(leaf, (unsigned)count, eax, ebx, ecx, edx);
        subleaves[count] = (fg_cpuid_regs){eax, ebx, ecx, edx};
        if ((eax & 0x1F) == 0) {
            count++;
            break;
        }
    }
    int64_t l1d = 0, l2 = 0, l3 = 0;
    if (fg_parse_cache_leaf(subleaves, count, &l1d, &l2, &l3) == 0 || l1d <= 0 || l2 <= 0) return 0;
    info->l1d_bytes = l1d;
    info->l2_bytes = l2;
    info->l3_bytes = l3;
    return 1;
}

static void read_caches(fg_cpu_info *info) {
    unsigned eax, ebx, ecx, edx;
    const int amd = strcmp(info->vendor, "AuthenticAMD") == 0 || strcmp(info->vendor, "HygonGenuine") == 0;
    const unsigned max_extended = __get_cpuid_max(0x80000000, NULL);
    if (amd && max_extended >= 0x8000001D) {
        __cpuid(0x80000001, eax, ebx, ecx, edx);
        if ((ecx >> 22 & 1) && read_cache_leaf(0x8000001D, info)) { /* topology extensions */
            info->cache_source = FG_CACHE_CPUID_8000001D;
            return;
        }
    }
    if (!amd && __get_cpuid_max(0, NULL) >= 4 && read_cache_leaf(4, info)) {
        info->cache_source = FG_CACHE_CPUID_4;
        return;
    }
    if (amd && max_extended >= 0x80000006) {
        unsigned ecx5, ecx6, edx6;
        __cpuid(0x80000005, eax, ebx, ecx5, edx);
        __cpuid(0x80000006, eax, ebx, ecx6, edx6);
        if (fg_parse_amd_legacy_caches(ecx5, ecx6, edx6, &info->l1d_bytes, &info->l2_bytes, &info->l3_bytes)) {
            info->cache_source = FG_CACHE_CPUID_80000006;
            return;
        }
    }
}

/* The calibration: 12 independent chains a = a * m + c per width (enough to fill two FMA units of
 * 4-5 cycles' latency), in registers; m just below 1 and c small keep every value normal. Written
 * out per width and compiled for it by attribute; called only where the features say so. */
#define FG_REPEAT12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

__attribute__((target("avx2,fma"))) static float fma_chains_256(long reps) {
    const __m256 m = _mm256_set1_ps(0.99999994f), c = _mm256_set1_ps(1e-6f);
#define FG_DECLARE(i) __m256 a##i = _mm256_set1_ps((float)(i));
#define FG_STEP(i) a##i = _mm256_fmadd_ps(a##i, m, c);
#define FG_SUM(i) total = _mm256_add_ps(total, a##i);
    FG_REPEAT12(FG_DECLARE)
    for (long r = 0; r < reps; r++) {
        FG_REPEAT12(FG_STEP)
    }
    __m256 total = _mm256_setzero_ps();
    FG_REPEAT12(FG_SUM)
    return _mm256_cvtss_f32(total);
#undef FG_DECLARE
#undef FG_STEP
#undef FG_SUM
}

__attribute__((target("avx512f"))) static float fma_chains_512(long reps) {
    const __m512 m = _mm512_set1_ps(0.99999994f), c = _mm512_set1_ps(1e-6f);
#define FG_DECLARE(i) __m512 a##i = _mm512_set1_ps((float)(i));
#define FG_STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c);
#define FG_SUM(i) total = _mm512_add_ps(total, a##i);
    FG_REPEAT12(FG_DECLARE)
    for (long r = 0; r < reps; r++) {
        FG_REPEAT12(FG_STEP)
    }
    __m512 total = _mm512_setzero_ps();
    FG_REPEAT12(FG_SUM)
    return _mm512_cvtss_f32(total);
#undef FG_DECLARE
#undef FG_STEP
#undef FG_SUM
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Interleaved rounds of one sample per width, each about 20 us at 4 GHz, the best of each kept: a
 * time slice lost to another process only ever slows a sample, and the first rounds cover the ramp
 * some Intel cores take before they issue 512-bit instructions at full rate. About 0.5 ms in all. */
void fg_calibrate_fma(double *gflops_256, double *gflops_512) {
    enum { ROUNDS = 12, REPS = 6000 };
    volatile float sink = 0;
    double best256 = 0, best512 = 0;
    for (int round = 0; round < ROUNDS; round++) {
        double t0 = seconds_now();
        sink += fma_chains_256(REPS);
        double t1 = seconds_now();
        sink += fma_chains_512(REPS);
        double t2 = seconds_now();
        const double rate256 = t1 > t0 ? 12.0 * 8 * 2 * REPS / (t1 - t0) / 1e9 : 0;
        const double rate512 = t2 > t1 ? 12.0 * 16 * 2 * REPS / (t2 - t1) / 1e9 : 0;
        best256 = rate256 > best256 ? rate256 : best256;
        best512 = rate512 > best512 ? rate512 : best512;
    }
    (void)sink;
    *gflops_256 = best256;
    *gflops_512 = best512;
}
#endif /* FG_X86 */

static fg_cpu_info cpu_info;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static void read_cpu(void) {
    fg_cpu_info *info = &cpu_info;
    memset(info, 0, sizeof *info);
    info->l1d_bytes = (int64_t)32 << 10; /* FG_CACHE_FALLBACK */
    info->l2_bytes = (int64_t)256 << 10;
#ifdef FG_X86
    read_names(info);
    read_features(info);
    read_caches(info);
#endif
    fg_cpu_facts facts;
    memcpy(facts.vendor, info->vendor, sizeof facts.vendor);
    facts.family = info->family;
    facts.model = info->model;
    facts.features = info->features;
#ifndef FG_HAVE_AVX2_KERNELS
    facts.features = 0; /* no vector table built: generic */
#endif
    info->isa = fg_isa_choose(&facts, 0, 0, &info->width_reason);
#ifdef FG_X86
    if (info->isa == FG_ISA_AUTO) {
        fg_calibrate_fma(&info->fma256_gflops, &info->fma512_gflops);
        info->isa = fg_isa_choose(&facts, info->fma256_gflops, info->fma512_gflops, &info->width_reason);
    }
#endif
    if (info->isa == FG_ISA_AUTO) /* a clock that never advanced: take the 256-bit tiles */
        info->isa = fg_isa_choose(&facts, 1, 1, &info->width_reason);
    fg_blocking_for(info->l2_bytes, &info->chunk_bytes, &info->k_block);
}

const fg_cpu_info *fg_cpu_info_get(void) {
    pthread_once(&cpu_once, read_cpu);
    return &cpu_info;
}
