/* test_cpu.c: the parts of the core's CPU reading that are pure functions (cpu.c, internal.h), handed
 * CPUs other than the one the test runs on: the table decision from vendor, family, model, features
 * and calibration timings; the cache sizes from cpuid's cache leaves; the signature fields; the blocking
 * derived from an L2 size; and, on this CPU, that K-blocking changes no bit of any table's results.
 * The last line printed is "N passed, N failed".
 * Build: cc -std=c11 -D_POSIX_C_SOURCE=200809L -Isrc_c tests/c/test_cpu.c src_c/[a-z]*.c -lm -pthread */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                              \
    do {                                                                                              \
        if (cond) {                                                                                   \
            passed++;                                                                                 \
        } else {                                                                                      \
            failed++;                                                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                      \
            fprintf(stderr, __VA_ARGS__);                                                             \
            fputc('\n', stderr);                                                                      \
        }                                                                                             \
    } while (0)

#define AVX2 (FG_CPU_AVX2 | FG_CPU_FMA)
#define AVX512 (AVX2 | FG_CPU_AVX512F | FG_CPU_AVX512BW | FG_CPU_AVX512VL | FG_CPU_AVX512DQ)
#define VNNI (AVX512 | FG_CPU_AVX512VNNI)

static fg_cpu_facts facts(const char *vendor, int family, int model, unsigned features) {
    fg_cpu_facts cpu;
    memset(&cpu, 0, sizeof cpu);
    strncpy(cpu.vendor, vendor, sizeof cpu.vendor - 1);
    cpu.family = family;
    cpu.model = model;
    cpu.features = features;
    return cpu;
}

/* The table and reason for a CPU, without timings and with the given ones. */
static void expect(const char *what, fg_cpu_facts cpu, double fma256, double fma512, fg_isa isa, fg_width_reason why) {
    fg_width_reason reason = (fg_width_reason)-1;
    const fg_isa got = fg_isa_choose(&cpu, fma256, fma512, &reason);
    CHECK(got == isa && reason == why, "%s: got table %s (%d) reason %d, want %s (%d) reason %d", what,
          fg_isa_name(got) ? fg_isa_name(got) : "?", (int)got, (int)reason, fg_isa_name(isa), (int)isa, (int)why);
}

static void test_decision(void) {
    /* without AVX2 + FMA: generic, whatever else the CPU has */
    expect("no AVX2", facts("GenuineIntel", 6, 0x3A, 0), 0, 0, FG_ISA_GENERIC, FG_WIDTH_NO_AVX512);
    expect("AVX2 without FMA", facts("GenuineIntel", 6, 0x3F, FG_CPU_AVX2), 0, 0, FG_ISA_GENERIC, FG_WIDTH_NO_AVX512);
    /* AVX2 only (Zen 3: family 25 model 0x21; Haswell): AVX2, never timed */
    expect("Zen 3", facts("AuthenticAMD", 0x19, 0x21, AVX2), 0, 0, FG_ISA_AVX2, FG_WIDTH_NO_AVX512);
    expect("Haswell", facts("GenuineIntel", 6, 0x3F, AVX2), 0, 0, FG_ISA_AVX2, FG_WIDTH_NO_AVX512);
    /* AVX-512 missing one of F/BW/VL/DQ (Xeon Phi has F without BW/VL): AVX2 */
    expect("Knights Landing", facts("GenuineIntel", 6, 0x57, AVX2 | FG_CPU_AVX512F), 0, 0, FG_ISA_AVX2,
           FG_WIDTH_NO_AVX512);
    expect("no DQ", facts("GenuineIntel", 6, 0x8F, VNNI & ~FG_CPU_AVX512DQ), 0, 0, FG_ISA_AVX2, FG_WIDTH_NO_AVX512);
    /* Zen 4 (family 25): known to split 512-bit FMAs, no timing even if timings say otherwise */
    expect("Zen 4 EPYC", facts("AuthenticAMD", 0x19, 0x11, VNNI), 0, 0, FG_ISA_AVX512VL_VNNI, FG_WIDTH_KNOWN_SPLIT);
    expect("Zen 4 Ryzen", facts("AuthenticAMD", 0x19, 0x61, VNNI), 300, 300, FG_ISA_AVX512VL_VNNI,
           FG_WIDTH_KNOWN_SPLIT);
    /* Zen 5 EPYC (family 26 models 0-31): full width, no timing */
    expect("Zen 5 EPYC", facts("AuthenticAMD", 0x1A, 0x02, VNNI), 0, 0, FG_ISA_AVX512_VNNI, FG_WIDTH_KNOWN_FULL);
    expect("Zen 5c EPYC", facts("AuthenticAMD", 0x1A, 0x11, VNNI), 0, 0, FG_ISA_AVX512_VNNI, FG_WIDTH_KNOWN_FULL);
    /* Zen 5 client parts (Strix Point, model 0x24): cpuid cannot tell; timed */
    expect("Strix Point untimed", facts("AuthenticAMD", 0x1A, 0x24, VNNI), 0, 0, FG_ISA_AUTO, FG_WIDTH_NO_AVX512);
    expect("Strix Point split", facts("AuthenticAMD", 0x1A, 0x24, VNNI), 150, 160, FG_ISA_AVX512VL_VNNI,
           FG_WIDTH_MEASURED_SPLIT);
    expect("Granite Ridge full", facts("AuthenticAMD", 0x1A, 0x44, VNNI), 150, 295, FG_ISA_AVX512_VNNI,
           FG_WIDTH_MEASURED_FULL);
    /* Intel: Sapphire/Emerald/Granite Rapids known full */
    expect("Sapphire Rapids", facts("GenuineIntel", 6, 0x8F, VNNI), 0, 0, FG_ISA_AVX512_VNNI, FG_WIDTH_KNOWN_FULL);
    expect("Emerald Rapids", facts("GenuineIntel", 6, 0xCF, VNNI), 0, 0, FG_ISA_AVX512_VNNI, FG_WIDTH_KNOWN_FULL);
    expect("Granite Rapids", facts("GenuineIntel", 6, 0xAD, VNNI), 0, 0, FG_ISA_AVX512_VNNI, FG_WIDTH_KNOWN_FULL);
    /* ... and by their AMX tiles where a hypervisor reports another model (a KVM guest: 0xA7), even
     * against a timing that came out under the threshold on a loaded host */
    expect("AMX, model hidden", facts("GenuineIntel", 6, 0xA7, VNNI | FG_CPU_AMX_TILE), 100, 120,
           FG_ISA_AVX512_VNNI, FG_WIDTH_KNOWN_FULL);
    expect("the same model without AMX", facts("GenuineIntel", 6, 0xA7, VNNI), 100, 120, FG_ISA_AVX512VL_VNNI,
           FG_WIDTH_MEASURED_SPLIT);
    /* Skylake-SP (no VNNI) and Cascade Lake (VNNI), model 0x55: one or two FMA units by SKU, timed */
    expect("Skylake-SP untimed", facts("GenuineIntel", 6, 0x55, AVX512), 0, 0, FG_ISA_AUTO, FG_WIDTH_NO_AVX512);
    expect("Skylake-SP Silver", facts("GenuineIntel", 6, 0x55, AVX512), 100, 105, FG_ISA_AVX512VL,
           FG_WIDTH_MEASURED_SPLIT);
    expect("Skylake-SP Gold", facts("GenuineIntel", 6, 0x55, AVX512), 100, 190, FG_ISA_AVX512, FG_WIDTH_MEASURED_FULL);
    expect("Cascade Lake Silver", facts("GenuineIntel", 6, 0x55, VNNI), 100, 101, FG_ISA_AVX512VL_VNNI,
           FG_WIDTH_MEASURED_SPLIT);
    expect("Cascade Lake Platinum", facts("GenuineIntel", 6, 0x55, VNNI), 100, 199, FG_ISA_AVX512_VNNI,
           FG_WIDTH_MEASURED_FULL);
    /* the threshold, 1.5x, is inclusive */
    expect("exactly 1.5x", facts("GenuineIntel", 6, 0x6A, VNNI), 100, 150, FG_ISA_AVX512_VNNI, FG_WIDTH_MEASURED_FULL);
    expect("just under", facts("GenuineIntel", 6, 0x6A, VNNI), 100, 149.9, FG_ISA_AVX512VL_VNNI,
           FG_WIDTH_MEASURED_SPLIT);
    /* a timing that failed (0, negative, NaN) asks for one again */
    expect("one timing missing", facts("GenuineIntel", 6, 0x55, VNNI), 100, 0, FG_ISA_AUTO, FG_WIDTH_NO_AVX512);
    expect("NaN timing", facts("GenuineIntel", 6, 0x55, VNNI), 0.0 / 0.0, 200, FG_ISA_AUTO, FG_WIDTH_NO_AVX512);
    /* other vendors with AVX-512: timed */
    expect("unknown vendor", facts("CentaurHauls", 7, 0x3B, VNNI), 100, 100, FG_ISA_AVX512VL_VNNI,
           FG_WIDTH_MEASURED_SPLIT);
    expect("no vendor", facts("", 0, 0, AVX512), 100, 200, FG_ISA_AVX512, FG_WIDTH_MEASURED_FULL);
}

static fg_cpuid_regs cache_leaf(unsigned type, unsigned level, unsigned ways, unsigned partitions, unsigned line,
                                unsigned sets) {
    fg_cpuid_regs r = {0, 0, 0, 0};
    r.eax = type | level << 5;
    r.ebx = (line - 1) | (partitions - 1) << 12 | (ways - 1) << 22;
    r.ecx = sets - 1;
    return r;
}

static void test_caches(void) {
    int64_t l1d = -1, l2 = -1, l3 = -1;
    /* this project's Zen 5 EPYC, cpuid 0x8000001D as it reported it: 48 KiB, 1 MiB, 32 MiB */
    const fg_cpuid_regs zen5[5] = {{0x00000121, 0x02c0003f, 0x0000003f, 0},
                                   {0x00000122, 0x01c0003f, 0x0000003f, 0},
                                   {0x00000143, 0x03c0003f, 0x000003ff, 2},
                                   {0x00004163, 0x03c0003f, 0x00007fff, 1},
                                   {0, 0, 0, 0}};
    CHECK(fg_parse_cache_leaf(zen5, 5, &l1d, &l2, &l3) == 3, "Zen 5: three levels");
    CHECK(l1d == 48 << 10 && l2 == 1 << 20 && l3 == 32 << 20, "Zen 5: %lld %lld %lld", (long long)l1d, (long long)l2,
          (long long)l3);
    /* Zen 3: 32 KiB, 512 KiB, 32 MiB; Sapphire Rapids (leaf 4): 48 KiB, 2 MiB, 105 MiB (15-way, 112 Ki sets) */
    const fg_cpuid_regs zen3[4] = {cache_leaf(1, 1, 8, 1, 64, 64), cache_leaf(2, 1, 8, 1, 64, 64),
                                   cache_leaf(3, 2, 8, 1, 64, 1024), cache_leaf(3, 3, 16, 1, 64, 32768)};
    CHECK(fg_parse_cache_leaf(zen3, 4, &l1d, &l2, &l3) == 3 && l1d == 32 << 10 && l2 == 512 << 10 && l3 == 32 << 20,
          "Zen 3: %lld %lld %lld", (long long)l1d, (long long)l2, (long long)l3);
    const fg_cpuid_regs spr[5] = {cache_leaf(1, 1, 12, 1, 64, 64), cache_leaf(2, 1, 8, 1, 64, 64),
                                  cache_leaf(3, 2, 16, 1, 64, 2048), cache_leaf(3, 3, 15, 1, 64, 114688),
                                  {0, 0, 0, 0}};
    CHECK(fg_parse_cache_leaf(spr, 5, &l1d, &l2, &l3) == 3 && l1d == 48 << 10 && l2 == 2 << 20 &&
              l3 == (int64_t)15 * 64 * 114688,
          "Sapphire Rapids: %lld %lld %lld", (long long)l1d, (long long)l2, (long long)l3);
    /* no L3 (some client parts, VMs): L3 left as it was; partitions count */
    l3 = 0;
    const fg_cpuid_regs two[3] = {cache_leaf(1, 1, 8, 1, 64, 64), cache_leaf(3, 2, 4, 2, 64, 512), {0, 0, 0, 0}};
    CHECK(fg_parse_cache_leaf(two, 3, &l1d, &l2, &l3) == 2 && l2 == 4 * 2 * 64 * 512 && l3 == 0, "two levels, l2 %lld",
          (long long)l2);
    /* type 0 ends the list; an empty leaf finds nothing */
    const fg_cpuid_regs ended[3] = {cache_leaf(1, 1, 8, 1, 64, 64), {0, 0, 0, 0}, cache_leaf(3, 2, 8, 1, 64, 1024)};
    l2 = -1;
    CHECK(fg_parse_cache_leaf(ended, 3, &l1d, &l2, &l3) == 1 && l2 == -1, "stops at type 0");
    CHECK(fg_parse_cache_leaf(ended + 1, 1, &l1d, &l2, &l3) == 0, "empty");
    /* AMD's older leaves, as this Zen 5 reports them: L1d 48 KiB, L2 1 MiB, L3 0x300 x 512 KiB (the whole
     * package's: 0x8000001D says 32 MiB per core complex, which is why that leaf comes first) */
    CHECK(fg_parse_amd_legacy_caches(0x300c0140, 0x04008140, 0x0c009140, &l1d, &l2, &l3) == 3 && l1d == 48 << 10 &&
              l2 == 1 << 20 && l3 == (int64_t)0x300 * (512 << 10),
          "legacy: %lld %lld %lld", (long long)l1d, (long long)l2, (long long)l3);
    CHECK(fg_parse_amd_legacy_caches(0x300c0140, 0x04008140, 0, &l1d, &l2, &l3) == 2 && l3 == 0, "legacy, no L3");
    CHECK(fg_parse_amd_legacy_caches(0, 0, 0, &l1d, &l2, &l3) == 0, "legacy, nothing");
}

static void test_signature(void) {
    int family, model, stepping;
    fg_parse_signature(0x00b00f21, &family, &model, &stepping); /* this Zen 5 */
    CHECK(family == 26 && model == 2 && stepping == 1, "Zen 5: %d %d %d", family, model, stepping);
    fg_parse_signature(0x00a10f11, &family, &model, &stepping); /* Zen 4 EPYC (Genoa) */
    CHECK(family == 25 && model == 0x11 && stepping == 1, "Zen 4: %d %#x %d", family, model, stepping);
    fg_parse_signature(0x000806f8, &family, &model, &stepping); /* Sapphire Rapids */
    CHECK(family == 6 && model == 0x8f && stepping == 8, "Sapphire Rapids: %d %#x %d", family, model, stepping);
    fg_parse_signature(0x00050657, &family, &model, &stepping); /* Cascade Lake */
    CHECK(family == 6 && model == 0x55 && stepping == 7, "Cascade Lake: %d %#x %d", family, model, stepping);
    fg_parse_signature(0x00000f4a, &family, &model, &stepping); /* a Pentium 4: family 15, no extension */
    CHECK(family == 15 && model == 4 && stepping == 10, "family 15: %d %d %d", family, model, stepping);
    fg_parse_signature(0x00010676 & 0x0000ffff, &family, &model, &stepping); /* family 6 without extension bits */
    CHECK(family == 6 && model == 7, "family 6: %d %d", family, model);
}

static void test_blocking(void) {
    int64_t chunk, k_block;
    const int64_t l2s[] = {256 << 10, 512 << 10, 1 << 20, 2 << 20, 0, 64 << 20};
    for (size_t i = 0; i < sizeof l2s / sizeof l2s[0]; i++) {
        fg_blocking_for(l2s[i], &chunk, &k_block);
        CHECK(chunk >= 1 << 20 && chunk <= 16 << 20, "L2 %lld: chunk %lld", (long long)l2s[i], (long long)chunk);
        CHECK(k_block >= 64 && k_block % 16 == 0, "L2 %lld: k_block %lld", (long long)l2s[i], (long long)k_block);
        /* two blocks' panel rows of one K block fit half the L2 (for any L2 that holds the minimum) */
        CHECK(l2s[i] < 64 * 2 * FG_PANEL_BLOCK_BYTES * 2 || k_block * 2 * FG_PANEL_BLOCK_BYTES <= l2s[i] / 2,
              "L2 %lld: k_block %lld overflows half of it", (long long)l2s[i], (long long)k_block);
    }
    int64_t chunk_small, k_small, chunk_big, k_big;
    fg_blocking_for(512 << 10, &chunk_small, &k_small);
    fg_blocking_for(2 << 20, &chunk_big, &k_big);
    CHECK(chunk_big > chunk_small && k_big > k_small, "a bigger L2 gives bigger blocks");
    fg_blocking_for(1 << 20, &chunk, &k_block);
    CHECK(chunk == 4 << 20 && k_block == 2720, "1 MiB L2: chunk %lld k_block %lld", (long long)chunk, (long long)k_block);
}

/* fg_forward's outputs for a model of hidden size H and input size I, T steps, B rows with lengths
 * B, B-1, ... (so that every tile size, one row included, occurs), on table isa. */
static float *run_model(fg_isa isa, fg_dtype dtype, fg_variant variant, int64_t I, int64_t H, int64_t T, int64_t B) {
    fg_spec spec = {I, H, 1, 1, dtype, variant, FG_SIGMOID, 0, 0, 0};
    const size_t elem = dtype == FG_FLOAT32 ? 4 : 8;
    void *w_ih = malloc((size_t)(3 * H * I) * elem), *w_hh = malloc((size_t)(3 * H * H) * elem);
    void *x = malloc((size_t)(T * B * I) * elem);
    for (int64_t i = 0; i < 3 * H * I; i++) {
        const double v = ((i * 37) % 101 - 50) * 0.002;
        if (dtype == FG_FLOAT32) ((float *)w_ih)[i] = (float)v;
        else ((double *)w_ih)[i] = v;
    }
    for (int64_t i = 0; i < 3 * H * H; i++) {
        const double v = ((i * 53) % 97 - 48) * 0.002;
        if (dtype == FG_FLOAT32) ((float *)w_hh)[i] = (float)v;
        else ((double *)w_hh)[i] = v;
    }
    for (int64_t i = 0; i < T * B * I; i++) {
        const double v = ((i * 29) % 89 - 44) * 0.02;
        if (dtype == FG_FLOAT32) ((float *)x)[i] = (float)v;
        else ((double *)x)[i] = v;
    }
    fg_layer_weights weights = {w_ih, w_hh, NULL, NULL};
    fg_gru *gru = NULL;
    fg_status status = fg_gru_create(&spec, &weights, &gru);
    CHECK(status == FG_OK, "fg_gru_create: %s", fg_status_string(status));
    int64_t *lengths = malloc((size_t)B * sizeof(int64_t));
    for (int64_t b = 0; b < B; b++) lengths[b] = T - b % T;
    const size_t out_bytes = (size_t)(T * B * H) * elem;
    float *out = malloc(out_bytes + (size_t)(B * H) * elem);
    fg_sequence seq = {T, B, 0, x, NULL, lengths, NULL, out, (char *)out + out_bytes};
    size_t bytes = 0;
    fg_forward_workspace_size(gru, T, B, &bytes);
    void *workspace = aligned_alloc(64, (bytes + 63) / 64 * 64);
    fg_context ctx = {NULL, NULL, isa};
    status = fg_forward(gru, &seq, NULL, workspace, bytes, &ctx);
    CHECK(status == FG_OK, "fg_forward: %s", fg_status_string(status));
    free(workspace);
    free(lengths);
    fg_gru_destroy(gru);
    free(w_ih);
    free(w_hh);
    free(x);
    return out;
}

/* Taking a panel in K blocks continues each sum where it stopped: the bits are those of one pass, on
 * every table, for the recurrence (K = H) and the input projection (K = I). The blocks are forced
 * small through the process's fg_cpu_info (its storage is not const; only this test writes it). */
static void test_k_blocking_changes_no_bit(void) {
    fg_cpu_info *cpu = (fg_cpu_info *)fg_cpu_info_get();
    const int64_t saved = cpu->k_block;
    const int64_t I = 200, H = 150, T = 4, B = 17;
    for (int isa = FG_ISA_GENERIC; isa < FG_ISA_COUNT; isa++) {
        if (!fg_isa_supported((fg_isa)isa)) continue;
        for (int dtype = 0; dtype < 2; dtype++)
            for (int variant = 0; variant < 2; variant++) {
                cpu->k_block = 1 << 20;
                float *whole = run_model((fg_isa)isa, (fg_dtype)dtype, (fg_variant)variant, I, H, T, B);
                cpu->k_block = 64;
                float *blocked = run_model((fg_isa)isa, (fg_dtype)dtype, (fg_variant)variant, I, H, T, B);
                const size_t bytes = (size_t)(T * B * H + B * H) * (dtype == 0 ? 4 : 8);
                CHECK(memcmp(whole, blocked, bytes) == 0, "%s dtype=%d variant=%d: K blocks of 64 change the bits",
                      fg_isa_name((fg_isa)isa), dtype, variant);
                free(whole);
                free(blocked);
            }
    }
    cpu->k_block = saved;
}

/* The calibration runs wherever both widths run, and its figures are rates a core can reach: positive,
 * 512-bit at 0.5x to 2.5x the 256-bit rate (a full-width unit about 2, a split or single one about 1).
 * On this CPU the decision of its own figures must be the one fg_cpu_info_get made where it timed. */
static void test_calibration(void) {
    const fg_cpu_info *cpu = fg_cpu_info_get();
    const unsigned avx512 = FG_CPU_AVX2 | FG_CPU_FMA | FG_CPU_AVX512F;
    if ((cpu->features & avx512) != avx512) {
        printf("skip calibration: this CPU has no AVX-512F\n");
        return;
    }
#if defined(__x86_64__) || defined(_M_X64)
    double g256 = 0, g512 = 0;
    fg_calibrate_fma(&g256, &g512);
    CHECK(g256 > 1 && g512 > 1, "calibration rates %g, %g GFLOP/s", g256, g512);
    CHECK(g512 >= 0.5 * g256 && g512 <= 2.5 * g256, "512/256 ratio %g", g512 / g256);
    printf("calibration on this CPU: 256-bit %.1f GFLOP/s, 512-bit %.1f GFLOP/s (ratio %.2f)\n", g256, g512,
           g512 / g256);
    if (cpu->fma256_gflops > 0) {
        fg_cpu_facts facts_here;
        memcpy(facts_here.vendor, cpu->vendor, sizeof facts_here.vendor);
        facts_here.family = cpu->family;
        facts_here.model = cpu->model;
        facts_here.features = cpu->features;
        fg_width_reason why;
        CHECK(fg_isa_choose(&facts_here, cpu->fma256_gflops, cpu->fma512_gflops, &why) == cpu->isa,
              "the timed decision is the one recorded");
    }
#endif
}

int main(void) {
    test_decision();
    test_caches();
    test_signature();
    test_blocking();
    test_k_blocking_changes_no_bit();
    test_calibration();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
