/* Block-quantized types: the quantizers byte for byte and the dequantizers bit for bit against the
 * goldens of tools/ref/quant_ref.py (an independent numpy implementation of ggml's reference
 * algorithms), the 8-bit activations against ggml's Q8_K, the ggml type ids; then gm_matmul with
 * quantized W: the scalar kernel against the exact (double) product of the dequantized operands, the
 * cost of the 8-bit activations against the f32 product, every SIMD family against scalar, 1 vs 2 vs 3
 * threads bitwise, and rows that are not whole blocks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/threads.h"
#include "tensor/cpu.h"
#include "tensor/dtype.h"
#include "tensor/matmul.h"
#include "tensor/quant.h"
#include "testlib.h"

#define GOLDEN "tests/golden/quant/"

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 65536;
            unsigned char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    fclose(f);
    *n = len;
    return buf;
}

static uint64_t fnv1a64(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static const struct {
    gm_dtype t;
    const char *file;
    uint32_t ggml;
} g_types[] = {
    {GM_DT_Q8_0, "q8_0", 8},
    {GM_DT_Q4_0, "q4_0", 2},
    {GM_DT_Q4_K, "q4_K", 12},
    {GM_DT_Q6_K, "q6_K", 14},
};
#define N_TYPES (sizeof g_types / sizeof *g_types)

static void check_table(void) {
    static const char *const names[] = {"Q8_0", "Q4_0", "Q4_K", "Q6_K"};
    static const size_t elems[] = {32, 32, 256, 256}, bytes[] = {34, 18, 144, 210};
    for (size_t k = 0; k < N_TYPES; k++) {
        const gm_dtype_traits *tr = gm_dtype_info(g_types[k].t);
        CHECK(tr && strcmp(tr->name, names[k]) == 0 && tr->block_elems == elems[k] && tr->block_bytes == bytes[k]);
        CHECK(gm_dtype_is_quant(g_types[k].t));
        gm_dtype t;
        uint32_t id;
        CHECK(gm_dtype_from_ggml(g_types[k].ggml, &t) && t == g_types[k].t);
        CHECK(gm_dtype_to_ggml(g_types[k].t, &id) && id == g_types[k].ggml);
        CHECK(!gm_dtype_from_name(names[k], &t)); /* not a safetensors dtype */
    }
    gm_dtype t = GM_DT_COUNT;
    uint32_t id = 99;
    CHECK(gm_dtype_from_ggml(0, &t) && t == GM_DT_F32);
    CHECK(gm_dtype_from_ggml(1, &t) && t == GM_DT_F16);
    CHECK(gm_dtype_from_ggml(30, &t) && t == GM_DT_BF16);
    CHECK(gm_dtype_to_ggml(GM_DT_BF16, &id) && id == 30);
    static const uint32_t unknown[] = {3, 6, 7, 9, 10, 11, 13, 15, 16, 29, 31, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        t = GM_DT_COUNT;
        CHECK(!gm_dtype_from_ggml(unknown[i], &t) && t == GM_DT_COUNT);
    }
    CHECK(!gm_dtype_to_ggml(GM_DT_COUNT, &id));
    CHECK(!gm_dtype_is_quant(GM_DT_BF16) && !gm_dtype_is_quant(GM_DT_F32));
    size_t nb;
    CHECK(gm_dtype_row_bytes(GM_DT_Q4_K, 2048, &nb) && nb == 8 * 144);
    CHECK(gm_dtype_row_bytes(GM_DT_Q8_0, 64, &nb) && nb == 68);
    CHECK(!gm_dtype_row_bytes(GM_DT_Q6_K, 300, &nb) && !gm_dtype_row_bytes(GM_DT_Q4_0, 33, &nb));
}

static void check_goldens(void) {
    size_t nin = 0;
    unsigned char *in = read_file(GOLDEN "input.f32", &nin);
    CHECKF(in && nin % (256 * 4) == 0 && nin > 0, "cannot read " GOLDEN "input.f32 (run from the source root)");
    if (!in || nin % 1024 || !nin) {
        free(in);
        return;
    }
    size_t n = nin / 4, rows = n / 256;
    float *x = malloc(nin), *y = malloc(nin);
    memcpy(x, in, nin); /* the files are little-endian, as is every target */
    size_t nman = 0;
    char *man = (char *)read_file(GOLDEN "manifest.txt", &nman);
    CHECK(man != NULL);
    unsigned char *q = malloc(n * 2);
    for (size_t k = 0; k < N_TYPES; k++) {
        char path[256];
        snprintf(path, sizeof path, GOLDEN "%s.bin", g_types[k].file);
        size_t ne = 0, nq = 0;
        unsigned char *want = read_file(path, &ne);
        CHECK(gm_dtype_row_bytes(g_types[k].t, n, &nq));
        CHECKF(want && ne == nq, "%s: %zu bytes, want %zu", path, ne, nq);
        const gm_dtype_traits *tr = gm_dtype_info(g_types[k].t);
        memset(q, 0xAA, nq);
        tr->from_f32(x, q, n);
        if (want && ne == nq) {
            size_t bb = tr->block_bytes, bad = 0;
            for (size_t b = 0; b < nq / bb; b++) {
                if (memcmp(q + b * bb, want + b * bb, bb) != 0 && bad++ < 4)
                    fprintf(stderr, "  %s block %zu (row %zu) differs from the reference\n", g_types[k].file, b,
                            b * tr->block_elems / 256);
            }
            CHECKF(bad == 0, "%s: %zu of %zu blocks differ from quant_ref.py", g_types[k].file, bad, nq / bb);
            /* Dequantize the reference bytes: every row's f32 bits hash as quant_ref.py's. */
            tr->to_f32(want, y, n);
            for (size_t r = 0; r < rows && man; r++) {
                char key[64], *line;
                snprintf(key, sizeof key, "\n%s %zu ", g_types[k].file, r);
                line = strstr(man, key);
                unsigned long long h = 0;
                CHECKF(line && sscanf(line + strlen(key), "%llx", &h) == 1, "manifest lacks %s row %zu",
                       g_types[k].file, r);
                CHECKF(fnv1a64(y + 256 * r, 256 * sizeof *y) == h, "%s row %zu: dequantized values differ",
                       g_types[k].file, r);
            }
        }
        free(want);
    }
    /* The activations of the K types are ggml's Q8_K: d, q and the 16-value sums. */
    size_t nk = 0;
    unsigned char *k8 = read_file(GOLDEN "q8_K.bin", &nk);
    CHECK(k8 && nk == rows * 292);
    void *xq = NULL;
    CHECK(posix_memalign(&xq, 64, gm_xq_row_bytes(GM_DT_Q4_K, (int)n)) == 0);
    gm_xq_quantize_row(x, GM_DT_Q4_K, (int)n, xq);
    gm_xq_row xr = gm_xq_row_at(xq, GM_DT_Q4_K, (int)n);
    for (size_t b = 0; k8 && nk == rows * 292 && b < rows; b++) {
        const unsigned char *blk = k8 + 292 * b;
        CHECKF(memcmp(blk, &xr.d[b], 4) == 0 && memcmp(blk + 4, xr.q + 256 * b, 256) == 0 &&
                   memcmp(blk + 260, (int16_t *)xr.aux + 16 * b, 32) == 0,
               "Q8_K activations of row %zu differ", b);
    }
    free(xq), free(k8), free(q), free(man), free(x), free(y), free(in);
}

/* Dequantization error of the quantizers on smooth data: a sanity bound per type (relative RMS). */
static void check_roundtrip(void) {
    enum { N = 4096 };
    static float x[N], y[N];
    static unsigned char q[N * 2];
    uint64_t s = 42;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    static const double bound[] = {0.01, 0.1, 0.08, 0.03};
    for (size_t k = 0; k < N_TYPES; k++) {
        const gm_dtype_traits *tr = gm_dtype_info(g_types[k].t);
        tr->from_f32(x, q, N);
        tr->to_f32(q, y, N);
        double e2 = 0, x2 = 0;
        for (int i = 0; i < N; i++) {
            e2 += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            x2 += (double)x[i] * x[i];
        }
        double rel = sqrt(e2 / x2);
        printf("%s: weight quantization error (uniform data) %.4f relative RMS\n", tr->name, rel);
        CHECKF(rel < bound[k], "%s: round trip error %g", tr->name, rel);
    }
}

/* ---- SIMD activation quantizers: the scalar one's bytes ---------------------------------------------- */

static uint64_t g_qrng = 7;
static double qrand(void) {
    g_qrng = g_qrng * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(g_qrng >> 11) + 0.5) / 9007199254740992.0;
}

typedef struct {
    const char *name;
    gm_xq_fn fn;
} xq_family;

static void check_xq_simd(void) {
    xq_family fams[3];
    int nf = 0;
#ifdef GM_HAVE_X86
    if (gm_cpu_isa_available(GM_ISA_AVX2)) fams[nf++] = (xq_family){"avx2", gm_xq_quantize_row_avx2};
    if (gm_cpu_isa_available(GM_ISA_AVX512) && gm_cpu_features_get()->avx512vnni)
        fams[nf++] = (xq_family){"avx512", gm_xq_quantize_row_avx512};
#endif
#ifdef GM_HAVE_NEON
    fams[nf++] = (xq_family){"neon", gm_xq_quantize_row_neon};
#endif
    enum { IN = 2048 };
    static float x[IN];
    const gm_dtype wts[] = {GM_DT_Q8_0, GM_DT_Q4_0, GM_DT_Q4_K, GM_DT_Q6_K};
    size_t bytes = gm_xq_row_bytes(GM_DT_Q8_0, IN);
    for (size_t k = 1; k < 4; k++)
        bytes = gm_xq_row_bytes(wts[k], IN) > bytes ? gm_xq_row_bytes(wts[k], IN) : bytes;
    void *a = NULL, *b = NULL;
    CHECK(posix_memalign(&a, 64, bytes) == 0 && posix_memalign(&b, 64, bytes) == 0);
    long bad = 0;
    for (int it = 0; it < 300; it++) {
        const int kind = it % 6;
        const double scale = pow(10.0, (qrand() - 0.5) * 10.0);
        for (int i = 0; i < IN; i++) {
            double v = sqrt(-2.0 * log(qrand())) * cos(6.283185307179586 * qrand());
            if (kind == 1) v = (i % 512 < 256) ? 0.0 : v;                     /* zero blocks */
            if (kind == 2) v = (double)((int)(qrand() * 255) - 127) * 0.5;    /* halves: rounding ties */
            if (kind == 3) v = (i % 7 == 0) ? ((i / 7) % 2 ? -3.0 : 3.0) : v; /* +-max ties */
            if (kind == 4) v = (qrand() < 0.01) ? v * 1000.0 : v;             /* outliers */
            x[i] = (float)(v * (kind == 2 || kind == 3 ? 1.0 : scale));
        }
        if (kind == 2)
            for (int i = 0; i < IN; i += 32) x[i] = 127.0f; /* amax 127: d = 1, x * id keeps the .5 */
        for (size_t k = 0; k < 4; k++) {
            size_t n = gm_xq_row_bytes(wts[k], IN);
            memset(a, 0x5A, n);
            gm_xq_quantize_row(x, wts[k], IN, a);
            for (int f = 0; f < nf; f++) {
                memset(b, 0x5A, n);
                fams[f].fn(x, wts[k], IN, b);
                if (memcmp(a, b, n) != 0 && bad++ < 5)
                    fprintf(stderr, "  %s activation quantizer differs from scalar: %s, case %d\n", fams[f].name,
                            gm_dtype_info(wts[k])->name, it);
            }
        }
    }
    CHECKF(bad == 0, "%ld SIMD activation rows differ from the scalar quantizer", bad);
    printf("activation quantizers checked bytewise against scalar:");
    for (int f = 0; f < nf; f++) printf(" %s", fams[f].name);
    printf("\n");
    free(a), free(b);
}

/* ---- matmul ---------------------------------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return ((double)(g_rng >> 11) + 0.5) / 9007199254740992.0;
}
static float grand(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }

static const char *const g_isas[] = {"scalar", "avx2", "avx512", "neon"};
static gm_pool *g_pool2, *g_pool3;
/* Activation-rounding error per type over all gaussian cases: sums of squared error and of squared
 * f32 outputs (relative RMS overall), worst relative RMS of a case with >= 64 outputs, worst max error. */
static double g_act_e2[N_TYPES], g_act_f2[N_TYPES], g_act_rms[N_TYPES], g_act_max[N_TYPES];

static void check_case(size_t k, int T, int in, int out, int heavy) {
    const gm_dtype dt = g_types[k].t;
    const gm_dtype_traits *tr = gm_dtype_info(dt);
    size_t nx = (size_t)T * in, nw = (size_t)out * in, ny = (size_t)T * out, rb = 0;
    CHECK(gm_dtype_row_bytes(dt, (size_t)in, &rb));
    float *x = malloc(nx * sizeof *x), *wf = malloc(nw * sizeof *wf), *xd = malloc(nx * sizeof *xd);
    float *ys = malloc(ny * sizeof *ys), *y1 = malloc(ny * sizeof *y1), *y2 = malloc(ny * sizeof *y2);
    double *yq = malloc(ny * sizeof *yq), *yf = malloc(ny * sizeof *yf), *sc = malloc(ny * sizeof *sc);
    unsigned char *w = malloc((size_t)out * rb);
    for (size_t i = 0; i < nx; i++) {
        x[i] = grand();
        if (heavy && urand() < 0.01) x[i] *= 30.0f; /* a few outlier channels, as real activations have */
    }
    for (size_t i = 0; i < nw; i++) wf[i] = grand() * 0.05f;
    tr->from_f32(wf, w, nw);
    tr->to_f32(w, wf, nw); /* W's exact values from now on */
    /* x as the kernels see it: quantized and dequantized. */
    size_t xs = gm_xq_row_bytes(dt, in);
    void *xq = NULL;
    CHECK(posix_memalign(&xq, 64, xs) == 0);
    int blk = (int)tr->block_elems;
    for (int t = 0; t < T; t++) {
        gm_xq_quantize_row(x + (size_t)t * in, dt, in, xq);
        gm_xq_row r = gm_xq_row_at(xq, dt, in);
        for (int i = 0; i < in; i++) xd[(size_t)t * in + i] = (float)r.q[i] * r.d[i / blk];
    }
    free(xq);
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = 0, sf = 0, s2 = 0;
            for (int i = 0; i < in; i++) {
                double wv = wf[(size_t)o * in + i];
                s += (double)xd[(size_t)t * in + i] * wv;
                sf += (double)x[(size_t)t * in + i] * wv;
                s2 += (double)x[(size_t)t * in + i] * wv * (double)x[(size_t)t * in + i] * wv;
            }
            yq[(size_t)t * out + o] = s;
            yf[(size_t)t * out + o] = sf;
            sc[(size_t)t * out + o] = sqrt(s2);
        }
    double scale = 0, f2 = 0;
    for (size_t i = 0; i < ny; i++) {
        scale = sc[i] > scale ? sc[i] : scale;
        scale = fabs(yf[i]) > scale ? fabs(yf[i]) : scale;
        f2 += yf[i] * yf[i];
    }
    CHECK(gm_matmul_set_isa("scalar"));
    gm_matmul(ys, x, w, dt, T, in, out, NULL);
    /* scalar = the exact product of the quantized operands, up to f32 rounding */
    double eq = 0, ef = 0, e2 = 0;
    for (size_t i = 0; i < ny; i++) {
        double d = fabs((double)ys[i] - yq[i]);
        eq = d > eq || d != d ? d : eq;
        double df = (double)ys[i] - yf[i];
        ef = fabs(df) > ef || df != df ? fabs(df) : ef;
        e2 += df * df;
    }
    CHECKF(eq <= 1e-5 * scale, "%s T=%d in=%d out=%d: scalar vs exact quantized product: %g (scale %g)", tr->name,
           T, in, out, eq, scale);
    /* the cost of 8-bit activations against the f32 product with the same W */
    double rms = f2 > 0 ? sqrt(e2 / f2) : 0, mx = scale > 0 ? ef / scale : 0;
    if (!heavy) {
        g_act_e2[k] += e2;
        g_act_f2[k] += f2;
        if (ny >= 64) g_act_rms[k] = rms > g_act_rms[k] ? rms : g_act_rms[k];
        g_act_max[k] = mx > g_act_max[k] ? mx : g_act_max[k];
        if (ny >= 64)
            CHECKF(rms <= 0.015, "%s T=%d in=%d out=%d: 8-bit activations cost %.4f relative RMS", tr->name, T, in,
                   out, rms);
        CHECKF(mx <= 0.03, "%s T=%d in=%d out=%d: 8-bit activations: max error %.4f of the scale", tr->name, T, in,
               out, mx);
    } else {
        printf("%s: heavy-tailed x, T=%d in=%d out=%d: 8-bit activations cost %.4f relative RMS\n", tr->name, T,
               in, out, rms);
        CHECKF(rms <= 0.05, "%s heavy-tailed: %.4f", tr->name, rms);
    }
    for (size_t f = 1; f < sizeof g_isas / sizeof *g_isas; f++) {
        if (!gm_matmul_set_isa(g_isas[f])) continue;
        for (size_t i = 0; i < ny; i++) y1[i] = y2[i] = -12345.0f;
        gm_matmul(y1, x, w, dt, T, in, out, NULL);
        double e = 0;
        for (size_t i = 0; i < ny; i++) {
            double d = fabs((double)y1[i] - ys[i]);
            e = d > e || d != d ? d : e;
        }
        CHECKF(e <= 1e-5 * scale, "%s vs scalar: %s T=%d in=%d out=%d: %g of the scale", g_isas[f], tr->name, T,
               in, out, e / scale);
        gm_matmul(y2, x, w, dt, T, in, out, g_pool2);
        CHECKF(memcmp(y1, y2, ny * sizeof *y1) == 0, "%s: 1 vs 2 threads differ: %s T=%d in=%d out=%d", g_isas[f],
               tr->name, T, in, out);
        gm_matmul(y2, x, w, dt, T, in, out, g_pool3);
        CHECKF(memcmp(y1, y2, ny * sizeof *y1) == 0, "%s: 1 vs 3 threads differ: %s T=%d in=%d out=%d", g_isas[f],
               tr->name, T, in, out);
    }
    CHECK(gm_matmul_set_isa("scalar"));
    gm_matmul(y2, x, w, dt, T, in, out, g_pool2);
    CHECKF(memcmp(ys, y2, ny * sizeof *ys) == 0, "scalar: 1 vs 2 threads differ: %s T=%d", tr->name, T);
    free(x), free(wf), free(xd), free(ys), free(y1), free(y2), free(yq), free(yf), free(sc), free(w);
}

static void check_matmul(void) {
    static const int Ts[] = {1, 2, 3, 5, 6, 8, 9, 12, 16, 17, 40};
    static const int outs[] = {1, 3, 5, 64, 131};
    for (size_t k = 0; k < N_TYPES; k++) {
        const int blk = (int)gm_dtype_info(g_types[k].t)->block_elems;
        /* one block, an odd number of blocks (the Q8_0/Q4_0 kernels pair blocks), several */
        const int ins[] = {blk, 3 * blk, blk == 32 ? 2048 + 96 : 2048 + 256};
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < sizeof outs / sizeof *outs; b++)
                for (size_t c = 0; c < sizeof Ts / sizeof *Ts; c++) {
                    if (ins[a] > 1000 && Ts[c] > 5 && outs[b] > 64) continue; /* keep the double reference quick */
                    check_case(k, Ts[c], ins[a], outs[b], 0);
                }
        /* past the x-row blocking and the thread split by rows of x */
        check_case(k, 130, blk == 32 ? 4096 : 4096, 7, 0);
        check_case(k, 64, 2048, 70, 0);
        check_case(k, 9, 2048, 64, 1);
    }
    for (size_t k = 0; k < N_TYPES; k++) {
        double overall = sqrt(g_act_e2[k] / g_act_f2[k]);
        printf("%s: 8-bit activations (gaussian x): %.4f relative RMS overall, worst case %.4f; max error %.4f of "
               "the scale\n",
               gm_dtype_info(g_types[k].t)->name, overall, g_act_rms[k], g_act_max[k]);
        CHECKF(overall <= 0.01, "%s: 8-bit activations cost %.4f relative RMS overall",
               gm_dtype_info(g_types[k].t)->name, overall);
    }

    /* Rows that are not whole blocks cannot be quantized W: every output is NaN, never a crash. */
    float x[300], y[6];
    for (int i = 0; i < 300; i++) x[i] = 1.0f;
    unsigned char w[4096];
    memset(w, 0, sizeof w);
    for (size_t k = 0; k < N_TYPES; k++)
        for (size_t f = 0; f < sizeof g_isas / sizeof *g_isas; f++) {
            if (!gm_matmul_set_isa(g_isas[f])) continue;
            for (int i = 0; i < 6; i++) y[i] = 0;
            gm_matmul(y, x, w, g_types[k].t, 2, 300, 3, g_pool2);
            for (int i = 0; i < 6; i++) CHECKF(isnan(y[i]), "%s: in = 300 gives %g", g_isas[f], (double)y[i]);
        }
    /* All-zero x and W give zeros (zero scales must not make NaN). */
    float xz[512] = {0}, yz[4];
    for (size_t k = 0; k < N_TYPES; k++)
        for (size_t f = 0; f < sizeof g_isas / sizeof *g_isas; f++) {
            if (!gm_matmul_set_isa(g_isas[f])) continue;
            gm_matmul(yz, xz, w, g_types[k].t, 2, 256, 2, NULL);
            CHECK(yz[0] == 0 && yz[1] == 0 && yz[2] == 0 && yz[3] == 0);
        }
    CHECK(gm_matmul_set_isa("auto"));
}

int main(void) {
    /* unit.quant.novbmi runs this with GM_VBMI=0: where the CPU has no VBMI anyway, the plain run already
     * covered the kernels without it, and this run would only repeat it */
    const char *novbmi = getenv("GM_VBMI");
    if (novbmi && strcmp(novbmi, "0") == 0) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (!__builtin_cpu_supports("avx512vbmi")) {
            printf("GM_VBMI=0 on a CPU without VBMI: nothing the plain run did not test\n");
            return 77;
        }
#else
        printf("GM_VBMI=0 off x86: nothing the plain run did not test\n");
        return 77;
#endif
    }
    g_pool2 = gm_pool_new(2);
    g_pool3 = gm_pool_new(3);
    CHECK(g_pool2 && g_pool3);
    printf("kernel families here:");
    for (size_t f = 0; f < sizeof g_isas / sizeof *g_isas; f++)
        if (gm_matmul_set_isa(g_isas[f])) printf(" %s", g_isas[f]);
    printf("\n");
#ifdef GM_HAVE_X86
    printf("avx512 quantized decode kernels: %s variant\n",
           gm_cpu_features_get()->avx512vbmi ? "VBMI (byte permutes)" : "word-permute");
#endif
    check_table();
    check_goldens();
    check_roundtrip();
    check_xq_simd();
    check_matmul();
    gm_pool_free(g_pool2);
    gm_pool_free(g_pool3);
    TEST_DONE();
}
