/* CPU feature detection for run-time kernel dispatch. On x86 a feature counts only if cpuid reports it
 * AND the OS enables its register state in XCR0 (a kernel or hypervisor may disable AVX-512). */
#include "tensor/cpu.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(GM_HAVE_X86) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#define GM_CPU_X86 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

static gm_cpu_features g_feat;
static atomic_int g_feat_state; /* 0 unset, 1 computing, 2 ready */
static atomic_int g_isa = -1;

static const char *const g_isa_names[GM_ISA_COUNT] = {"scalar", "avx2", "avx512", "neon"};

#ifdef GM_CPU_X86
static unsigned long long read_xcr0(void) {
    unsigned lo, hi;
    /* xgetbv by opcode bytes so this file needs no -mxsave. */
    __asm__ __volatile__(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect(gm_cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1;
    int has_avx = (c >> 28) & 1, has_fma = (c >> 12) & 1, has_f16c = (c >> 29) & 1;
    unsigned long long xcr0 = osxsave ? read_xcr0() : 0;
    int ymm_ok = (xcr0 & 0x6) == 0x6;           /* SSE + AVX state */
    int zmm_ok = ymm_ok && (xcr0 & 0xe0) == 0xe0; /* opmask + ZMM_Hi256 + Hi16_ZMM */
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b7, c7, d7);
        unsigned sub = a;
        if (sub >= 1) __cpuid_count(7, 1, a71, b, c, d);
    }
    f->avx = has_avx && ymm_ok;
    f->fma = f->avx && has_fma;
    f->f16c = f->avx && has_f16c;
    f->avx2 = f->avx && ((b7 >> 5) & 1);
    if (zmm_ok) {
        f->avx512f = (b7 >> 16) & 1;
        f->avx512dq = f->avx512f && ((b7 >> 17) & 1);
        f->avx512bw = f->avx512f && ((b7 >> 30) & 1);
        f->avx512vl = f->avx512f && ((b7 >> 31) & 1);
        f->avx512vnni = f->avx512f && ((c7 >> 11) & 1);
        const char *no = getenv("GM_VBMI");
        f->avx512vbmi = f->avx512f && ((c7 >> 1) & 1) && !(no && strcmp(no, "0") == 0);
        f->avx512fp16 = f->avx512f && ((d7 >> 23) & 1);
        f->avx512bf16 = f->avx512f && ((a71 >> 5) & 1);
    }
    if ((xcr0 & 0x60000) == 0x60000) { /* XTILECFG + XTILEDATA */
        f->amx_tile = (d7 >> 24) & 1;
        f->amx_bf16 = f->amx_tile && ((d7 >> 22) & 1);
        f->amx_int8 = f->amx_tile && ((d7 >> 25) & 1);
    }
}
#elif defined(__aarch64__)
static void detect(gm_cpu_features *f) {
    f->neon = 1; /* Advanced SIMD is mandatory in ARMv8-A */
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    f->neon_fp16 = (hw >> 10) & 1; /* HWCAP_ASIMDHP */
    f->neon_bf16 = (hw2 >> 14) & 1; /* HWCAP2_BF16 */
#endif
}
#else
static void detect(gm_cpu_features *f) { (void)f; }
#endif

const gm_cpu_features *gm_cpu_features_get(void) {
    if (atomic_load_explicit(&g_feat_state, memory_order_acquire) == 2) return &g_feat;
    int expect = 0;
    if (atomic_compare_exchange_strong(&g_feat_state, &expect, 1)) {
        detect(&g_feat);
        atomic_store_explicit(&g_feat_state, 2, memory_order_release);
    } else {
        while (atomic_load_explicit(&g_feat_state, memory_order_acquire) != 2) {
        }
    }
    return &g_feat;
}

int gm_cpu_isa_available(gm_isa isa) {
    const gm_cpu_features *f = gm_cpu_features_get();
    (void)f;
    switch (isa) {
    case GM_ISA_SCALAR: return 1;
#ifdef GM_CPU_X86
    case GM_ISA_AVX2: return f->avx2 && f->fma && f->f16c;
    case GM_ISA_AVX512:
        return f->avx2 && f->fma && f->f16c && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq;
#endif
#if defined(GM_HAVE_NEON) && defined(__aarch64__)
    case GM_ISA_NEON: return f->neon;
#endif
    default: return 0;
    }
}

const char *gm_cpu_isa_name(gm_isa isa) {
    return (unsigned)isa < (unsigned)GM_ISA_COUNT ? g_isa_names[isa] : "unknown";
}

int gm_cpu_isa_from_name(const char *name, gm_isa *out) {
    if (!name) return 0;
    for (int i = 0; i < GM_ISA_COUNT; i++) {
        if (strcmp(name, g_isa_names[i]) == 0) {
            if (out) *out = (gm_isa)i;
            return 1;
        }
    }
    return 0;
}

gm_isa gm_cpu_isa(void) {
    int v = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (v >= 0) return (gm_isa)v;
    gm_isa best = GM_ISA_SCALAR, want;
    if (gm_cpu_isa_available(GM_ISA_NEON)) best = GM_ISA_NEON;
    if (gm_cpu_isa_available(GM_ISA_AVX2)) best = GM_ISA_AVX2;
    if (gm_cpu_isa_available(GM_ISA_AVX512)) best = GM_ISA_AVX512;
    const char *env = getenv("GM_CPU");
    if (env && *env && gm_cpu_isa_from_name(env, &want) && gm_cpu_isa_available(want)) best = want;
    atomic_store_explicit(&g_isa, (int)best, memory_order_relaxed);
    return best;
}
