/* The deterministic training data loader (see loader.h and docs/data.md, "Token shards").
 * Each source's token stream is cut into windows of T+1 tokens at stride T (every next-token pair lies in
 * exactly one window); its last ~1% of windows are held out. Global sequence g draws its source by a
 * seeded hash against the mixture stage in force at g's step, then takes that source's next window in a
 * seeded per-epoch permutation (a Feistel network walked into range: a bijection computed in O(1) memory
 * for any epoch). How many draws each source had before g depends on every earlier draw, so the loader
 * replays the hashes from the last position it knows (from 0 after a restart): hashing only, cheap. */
#include "train/loader.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file.h"
#include "data/shards.h"

#define FEISTEL_ROUNDS 6

typedef struct {
    char *name;
    gm_shards *sh;
    uint64_t n_tokens;
    uint64_t n_windows, n_train, n_val;
    uint64_t val_first; /* index of its first held-out sequence among all sources' */
    uint64_t key;       /* from the name: adding a source does not reshuffle the others */
    int half_bits;      /* the Feistel domain is 4^half_bits >= n_train */
} source;

typedef struct {
    uint64_t start;  /* first step of the stage */
    double *weight;  /* per source, as given (0 when not named) */
    double *cum;     /* cumulative normalized weights; the last positive one is exactly 1 */
} stage;

struct gm_loader {
    gm_loader_opts o;
    char *data;
    int n_src;
    source *src;
    int n_stages;
    stage *st;
    int default_mix;
    uint32_t vocab;
    uint64_t gb;        /* global batch: dp_size * batch sequences per micro-batch */
    uint64_t per_step;  /* accum * gb sequences per step */
    uint64_t n_val;
    /* replay cache: counts[j] = draws from source j among global sequences [0, cache_g); snap_* the same at
     * the start of the last batch asked, so asking it again (a retried step) costs no replay either */
    uint64_t cache_g, snap_g;
    uint64_t *counts, *snap;
};

/* splitmix64's finalizer: a bijective 64-bit mixer with full avalanche. */
static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a, then mixed */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return mix64(h);
}

/* Position i of source s's permutation of its training windows in epoch e. */
static uint64_t permute(const source *s, uint64_t seed, uint64_t epoch, uint64_t i) {
    if (s->n_train <= 1) return 0;
    uint64_t key = mix64(seed ^ s->key) ^ mix64(epoch ^ 0x6A09E667F3BCC909ull);
    int h = s->half_bits;
    uint64_t mask = ((uint64_t)1 << h) - 1, x = i;
    do { /* cycle walking: the domain is < 4 n_train, so a few rounds at most on average */
        uint64_t L = x >> h, R = x & mask;
        for (uint64_t r = 0; r < FEISTEL_ROUNDS; r++) {
            uint64_t t = L ^ (mix64(R ^ key ^ (r * 0xD1B54A32D192ED03ull)) & mask);
            L = R;
            R = t;
        }
        x = L << h | R;
    } while (x >= s->n_train);
    return x;
}

/* The stage in force at a step: the one with the largest start <= step. */
static const stage *stage_at(const gm_loader *l, uint64_t step) {
    int k = 0;
    while (k + 1 < l->n_stages && l->st[k + 1].start <= step) k++;
    return &l->st[k];
}

static int pick_source(const gm_loader *l, const stage *st, uint64_t g) {
    double u = (double)(mix64(mix64(l->o.seed ^ 0xA4093822299F31D0ull) + g) >> 11) * 0x1p-53;
    for (int j = 0; j < l->n_src; j++)
        if (u < st->cum[j]) return j;
    return l->n_src - 1; /* unreachable: the last positive cum is 1 and u < 1 */
}

/* Bring the counts to global sequence `target`, replaying from 0 when asked for an earlier one. */
static void advance(gm_loader *l, uint64_t target) {
    if (target < l->cache_g) {
        if (target >= l->snap_g) {
            memcpy(l->counts, l->snap, (size_t)l->n_src * sizeof *l->counts);
            l->cache_g = l->snap_g;
        } else {
            memset(l->counts, 0, (size_t)l->n_src * sizeof *l->counts);
            l->cache_g = 0;
        }
    }
    uint64_t g = l->cache_g;
    while (g < target) {
        uint64_t step = g / l->per_step, end = (step + 1) * l->per_step;
        if (end > target) end = target;
        const stage *st = stage_at(l, step);
        for (; g < end; g++) l->counts[pick_source(l, st, g)]++;
    }
    l->cache_g = target;
}

static gm_status read_window(gm_loader *l, const source *s, uint64_t w, int32_t *out) {
    uint64_t T = (uint64_t)l->o.seq;
    gm_status st = gm_shards_read(s->sh, w * T, (size_t)T + 1, out);
    return st ? gm_fail_prefix(st, "source %s, window %llu: ", s->name, (unsigned long long)w) : GM_OK;
}

gm_status gm_loader_batch(gm_loader *l, int step, int micro, int32_t *tokens) {
    if (step < 0 || micro < 0 || micro >= l->o.accum)
        return gm_fail(GM_ERR_ARG, "loader: step %d, micro-batch %d: need step >= 0 and micro in [0, %d)", step, micro,
                       l->o.accum);
    uint64_t g0 = ((uint64_t)step * (uint64_t)l->o.accum + (uint64_t)micro) * l->gb +
                  (uint64_t)l->o.dp_rank * (uint64_t)l->o.batch;
    advance(l, g0);
    memcpy(l->snap, l->counts, (size_t)l->n_src * sizeof *l->snap);
    l->snap_g = g0;
    const stage *st = stage_at(l, (uint64_t)step);
    size_t row = (size_t)l->o.seq + 1;
    for (int i = 0; i < l->o.batch; i++) {
        uint64_t g = g0 + (uint64_t)i;
        int j = pick_source(l, st, g);
        const source *s = &l->src[j];
        uint64_t k = l->counts[j]++;
        l->cache_g = g + 1;
        uint64_t w = permute(s, l->o.seed, k / s->n_train, k % s->n_train);
        gm_status rs = read_window(l, s, w, tokens + (size_t)i * row);
        if (rs) return rs;
    }
    return GM_OK;
}

int gm_loader_val_count(const gm_loader *l) { return (int)l->n_val; }

gm_status gm_loader_val(gm_loader *l, int first, int n, int32_t *tokens) {
    if (first < 0 || n < 0 || (uint64_t)first + (uint64_t)n > l->n_val)
        return gm_fail(GM_ERR_ARG, "loader: held-out sequences %d..%d requested, there are %llu", first, first + n,
                       (unsigned long long)l->n_val);
    size_t row = (size_t)l->o.seq + 1;
    int j = 0;
    for (int i = 0; i < n; i++) {
        uint64_t v = (uint64_t)first + (uint64_t)i;
        while (v >= l->src[j].val_first + l->src[j].n_val) j++;
        const source *s = &l->src[j];
        gm_status st = read_window(l, s, s->n_train + (v - s->val_first), tokens + (size_t)i * row);
        if (st) return st;
    }
    return GM_OK;
}

int gm_loader_vocab_size(const gm_loader *l) { return (int)l->vocab; }

/* ---- describe ---------------------------------------------------------------------------------------- */

static void append(char *buf, size_t n, size_t *at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static void append(char *buf, size_t n, size_t *at, const char *fmt, ...) {
    if (*at >= n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *at, n - *at, fmt, ap);
    va_end(ap);
    if (k > 0) *at = *at + (size_t)k < n ? *at + (size_t)k : n;
}

void gm_loader_describe(const gm_loader *l, char *buf, size_t n) {
    if (!n) return;
    buf[0] = 0;
    size_t at = 0;
    uint64_t tokens = 0, train = 0;
    for (int j = 0; j < l->n_src; j++) {
        tokens += l->src[j].n_tokens;
        train += l->src[j].n_train;
    }
    append(buf, n, &at, "data %s: %d source%s, %llu tokens, vocab %u; windows of %d+1 tokens: %llu train + %llu val (",
           l->data, l->n_src, l->n_src == 1 ? "" : "s", (unsigned long long)tokens, l->vocab, l->o.seq,
           (unsigned long long)train, (unsigned long long)l->n_val);
    for (int j = 0; j < l->n_src; j++)
        append(buf, n, &at, "%s%s %llu tok %llu+%llu", j ? ", " : "", l->src[j].name,
               (unsigned long long)l->src[j].n_tokens, (unsigned long long)l->src[j].n_train,
               (unsigned long long)l->src[j].n_val);
    append(buf, n, &at, "); mix%s", l->default_mix ? " (by token count)" : "");
    for (int k = 0; k < l->n_stages; k++) {
        const stage *st = &l->st[k];
        double sum = 0;
        for (int j = 0; j < l->n_src; j++) sum += st->weight[j];
        append(buf, n, &at, "%s", k ? ";" : " ");
        int first = 1;
        for (int j = 0; j < l->n_src; j++)
            if (st->weight[j] > 0) {
                append(buf, n, &at, "%s%s:%.3f", first ? "" : ",", l->src[j].name, st->weight[j] / sum);
                first = 0;
            }
        append(buf, n, &at, "@%llu", (unsigned long long)st->start);
    }
    append(buf, n, &at, "; %d x %d seq x %d accum = %llu seq/step, seed %llu", l->o.dp_size, l->o.batch, l->o.accum,
           (unsigned long long)l->per_step, (unsigned long long)l->o.seed);
}

/* ---- open ---------------------------------------------------------------------------------------------- */

void gm_loader_free(gm_loader *l) {
    if (!l) return;
    for (int j = 0; j < l->n_src; j++) {
        free(l->src[j].name);
        gm_shards_close(l->src[j].sh);
    }
    for (int k = 0; k < l->n_stages; k++) {
        free(l->st[k].weight);
        free(l->st[k].cum);
    }
    free(l->src);
    free(l->st);
    free(l->counts);
    free(l->snap);
    free(l->data);
    free(l);
}

static int has_shards(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));) found = gm_shard_name_index(e->d_name) >= 0;
    closedir(d);
    return found;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static gm_status add_source(gm_loader *l, const char *dir, const char *name) {
    source *s = &l->src[l->n_src];
    memset(s, 0, sizeof *s);
    if (!(s->name = strdup(name))) return gm_fail(GM_ERR_NOMEM, "out of memory");
    l->n_src++;
    return gm_shards_open(dir, &s->sh);
}

/* The sources: data itself if it holds shards (named by its last path component), else each
 * subdirectory that does, in name order. */
static gm_status find_sources(gm_loader *l) {
    const char *data = l->data;
    if (has_shards(data)) {
        l->src = calloc(1, sizeof *l->src);
        if (!l->src) return gm_fail(GM_ERR_NOMEM, "out of memory");
        size_t len = strlen(data);
        while (len > 1 && data[len - 1] == '/') len--;
        size_t b = len;
        while (b > 0 && data[b - 1] != '/') b--;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len - b < 255 ? len - b : 255), data + b);
        return add_source(l, data, name[0] ? name : "data");
    }
    DIR *d = opendir(data);
    if (!d) return gm_fail(GM_ERR_IO, "%s: cannot open data directory: %s", data, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    gm_status st = GM_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *full = gm_path_join(data, e->d_name);
        struct stat sb;
        int ok = full && stat(full, &sb) == 0 && S_ISDIR(sb.st_mode) && has_shards(full);
        free(full);
        if (!ok) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                st = gm_fail(GM_ERR_NOMEM, "out of memory");
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            st = gm_fail(GM_ERR_NOMEM, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (!st && n == 0)
        st = gm_fail(GM_ERR_FORMAT, "%s: no token shards here or in a subdirectory (make them with gemma data tokenize "
                     "--out DIR)", data);
    if (!st && n > 4096) st = gm_fail(GM_ERR_ARG, "%s: %zu sources: at most 4096", data, n);
    if (!st) {
        qsort(names, n, sizeof *names, cmp_str);
        l->src = calloc(n, sizeof *l->src);
        if (!l->src) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && !st; i++) {
        char *full = gm_path_join(data, names[i]);
        st = full ? add_source(l, full, names[i]) : gm_fail(GM_ERR_NOMEM, "out of memory");
        free(full);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

static gm_status new_stage(gm_loader *l, uint64_t start) {
    stage *ns = realloc(l->st, (size_t)(l->n_stages + 1) * sizeof *ns);
    if (!ns) return gm_fail(GM_ERR_NOMEM, "out of memory");
    l->st = ns;
    stage *s = &l->st[l->n_stages++];
    s->start = start;
    s->weight = calloc((size_t)l->n_src, sizeof *s->weight);
    s->cum = calloc((size_t)l->n_src, sizeof *s->cum);
    if (!s->weight || !s->cum) return gm_fail(GM_ERR_NOMEM, "out of memory");
    return GM_OK;
}

static void source_list(const gm_loader *l, char *buf, size_t n) {
    size_t at = 0;
    buf[0] = 0;
    for (int j = 0; j < l->n_src; j++) append(buf, n, &at, "%s%s", j ? ", " : "", l->src[j].name);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

/* "name:w,name:w@STEP;..." -> stages. The first stage may omit "@0"; later ones need their step. */
static gm_status parse_mix(gm_loader *l, const char *spec) {
    char *dup = strdup(spec);
    if (!dup) return gm_fail(GM_ERR_NOMEM, "out of memory");
    gm_status st = GM_OK;
    char srcs[1024];
    source_list(l, srcs, sizeof srcs);
    int k = 0;
    char *save_stage = NULL;
    for (char *sp = strtok_r(dup, ";", &save_stage); sp && !st; sp = strtok_r(NULL, ";", &save_stage), k++) {
        char *at = strrchr(sp, '@');
        uint64_t start = 0;
        if (at) {
            *at = 0;
            char *num = trim(at + 1), *end;
            errno = 0;
            unsigned long long v = strtoull(num, &end, 10);
            if (!*num || *end || errno || num[0] == '-' || v > (unsigned long long)INT32_MAX) {
                st = gm_fail(GM_ERR_ARG, "mix '%s': stage %d: '@%s' is not a step number (e.g. @8000)", spec, k + 1,
                             num);
                break;
            }
            start = v;
        } else if (k > 0) {
            st = gm_fail(GM_ERR_ARG, "mix '%s': stage %d has no @STEP: every stage after the first says where it "
                         "starts, e.g. 'web:0.4,books:0.6@8000'", spec, k + 1);
            break;
        }
        if (k == 0 && start != 0) {
            st = gm_fail(GM_ERR_ARG, "mix '%s': the first stage starts at step %llu: it must start at @0 (or omit @)",
                         spec, (unsigned long long)start);
            break;
        }
        if (k > 0 && start <= l->st[k - 1].start) {
            st = gm_fail(GM_ERR_ARG, "mix '%s': stage %d starts at step %llu, not after stage %d's %llu: stage starts "
                         "must increase", spec, k + 1, (unsigned long long)start, k,
                         (unsigned long long)l->st[k - 1].start);
            break;
        }
        if ((st = new_stage(l, start))) break;
        stage *sg = &l->st[k];
        unsigned char *seen = calloc((size_t)l->n_src, 1);
        if (!seen) {
            st = gm_fail(GM_ERR_NOMEM, "out of memory");
            break;
        }
        char *save_item = NULL;
        int items = 0;
        for (char *it = strtok_r(sp, ",", &save_item); it && !st; it = strtok_r(NULL, ",", &save_item)) {
            char *colon = strchr(it, ':');
            if (!colon) {
                st = gm_fail(GM_ERR_ARG, "mix '%s': stage %d: '%s' is not NAME:WEIGHT", spec, k + 1, trim(it));
                break;
            }
            *colon = 0;
            char *name = trim(it), *ws = trim(colon + 1), *end;
            int j = 0;
            while (j < l->n_src && strcmp(l->src[j].name, name)) j++;
            if (j == l->n_src) {
                st = gm_fail(GM_ERR_ARG, "mix '%s': stage %d: unknown source '%s' (the sources are: %s)", spec, k + 1,
                             name, srcs);
                break;
            }
            if (seen[j]) {
                st = gm_fail(GM_ERR_ARG, "mix '%s': stage %d names '%s' twice", spec, k + 1, name);
                break;
            }
            seen[j] = 1;
            double w = strtod(ws, &end);
            if (!*ws || *end || !isfinite(w) || w < 0) {
                st = gm_fail(GM_ERR_ARG, "mix '%s': stage %d: weight '%s' of '%s' is not a non-negative number", spec,
                             k + 1, ws, name);
                break;
            }
            sg->weight[j] = w;
            items++;
        }
        free(seen);
        if (!st && items == 0) st = gm_fail(GM_ERR_ARG, "mix '%s': stage %d is empty: expected NAME:WEIGHT,...", spec,
                                            k + 1);
    }
    if (!st && k == 0) st = gm_fail(GM_ERR_ARG, "mix '%s': no stages: expected e.g. 'web:0.7,books:0.3@0'", spec);
    free(dup);
    return st;
}

/* Normalize each stage and check that every source it draws from has a window to give. */
static gm_status finish_stages(gm_loader *l) {
    for (int k = 0; k < l->n_stages; k++) {
        stage *sg = &l->st[k];
        double sum = 0;
        for (int j = 0; j < l->n_src; j++) sum += sg->weight[j];
        if (!(sum > 0) || !isfinite(sum))
            return gm_fail(GM_ERR_ARG, "mix: stage %d (from step %llu) has weights summing to %g: give at least one "
                           "positive weight", k + 1, (unsigned long long)sg->start, sum);
        double c = 0;
        int last = -1;
        for (int j = 0; j < l->n_src; j++) {
            c += sg->weight[j] / sum;
            sg->cum[j] = c;
            if (sg->weight[j] > 0) last = j;
        }
        for (int j = last; j < l->n_src; j++) sg->cum[j] = 1.0;
        for (int j = 0; j < l->n_src; j++)
            if (sg->weight[j] > 0 && l->src[j].n_train == 0)
                return gm_fail(GM_ERR_FORMAT, "source %s (%s): %llu tokens, fewer than one window of seq+1 = %d tokens",
                               l->src[j].name, gm_shards_dir(l->src[j].sh), (unsigned long long)l->src[j].n_tokens,
                               l->o.seq + 1);
    }
    return GM_OK;
}

gm_status gm_loader_open(const gm_loader_opts *o, gm_loader **out) {
    *out = NULL;
    if (!o || !o->data) return gm_fail(GM_ERR_ARG, "loader: no data directory");
    if (o->seq < 1 || o->batch < 1 || o->accum < 1 || o->dp_size < 1 || o->dp_rank < 0 || o->dp_rank >= o->dp_size)
        return gm_fail(GM_ERR_ARG, "loader: seq %d, batch %d, accum %d, dp rank %d of %d: need positive sizes and "
                       "0 <= rank < size", o->seq, o->batch, o->accum, o->dp_rank, o->dp_size);
    gm_loader *l = calloc(1, sizeof *l);
    if (!l || !(l->data = strdup(o->data))) {
        free(l);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    l->o = *o;
    l->o.data = l->data;
    l->o.mix = NULL;
    l->gb = (uint64_t)o->dp_size * (uint64_t)o->batch;
    l->per_step = l->gb * (uint64_t)o->accum;
    gm_status st = find_sources(l);
    uint64_t T = (uint64_t)o->seq;
    for (int j = 0; j < l->n_src && !st; j++) {
        source *s = &l->src[j];
        s->n_tokens = gm_shards_n_tokens(s->sh);
        if (j > 0 && gm_shards_vocab_size(s->sh) != l->vocab) {
            st = gm_fail(GM_ERR_FORMAT,
                         "source %s has vocabulary size %u but %s has %u: all sources need one tokenizer", s->name,
                         gm_shards_vocab_size(s->sh), l->src[0].name, l->vocab);
            break;
        }
        l->vocab = gm_shards_vocab_size(s->sh);
        s->n_windows = s->n_tokens > T ? (s->n_tokens - 1) / T : 0;
        s->n_val = s->n_windows >= 2 ? (s->n_windows + 99) / 100 : 0; /* ~1%, at least one */
        s->n_train = s->n_windows - s->n_val;
        s->val_first = l->n_val;
        l->n_val += s->n_val;
        s->key = hash_name(s->name);
        while (((uint64_t)1 << (2 * s->half_bits)) < s->n_train) s->half_bits++;
    }
    if (!st && l->n_val > (uint64_t)INT32_MAX)
        st = gm_fail(GM_ERR_ARG, "loader: %llu held-out sequences: more than an int counts",
                     (unsigned long long)l->n_val);
    if (!st && o->mix && *o->mix) {
        st = parse_mix(l, o->mix);
    } else if (!st) {
        l->default_mix = 1;
        st = new_stage(l, 0);
        for (int j = 0; j < l->n_src && !st; j++) {
            l->st[0].weight[j] = (double)l->src[j].n_train;
            if (l->src[j].n_train == 0)
                st = gm_fail(GM_ERR_FORMAT, "source %s (%s): %llu tokens, fewer than one window of seq+1 = %d tokens",
                             l->src[j].name, gm_shards_dir(l->src[j].sh), (unsigned long long)l->src[j].n_tokens,
                             o->seq + 1);
        }
    }
    if (!st) st = finish_stages(l);
    if (!st && (!(l->counts = calloc((size_t)l->n_src, sizeof *l->counts)) ||
                !(l->snap = calloc((size_t)l->n_src, sizeof *l->snap))))
        st = gm_fail(GM_ERR_NOMEM, "out of memory");
    if (st) {
        gm_loader_free(l);
        return st;
    }
    *out = l;
    return GM_OK;
}
