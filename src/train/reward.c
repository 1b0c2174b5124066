/* The Bradley–Terry reward model (train/reward.h): preference pairs, the scalar head on the backbone's
 * final hidden state, its gradient through gm_train_hidden_backward, the head's own AdamW, and the
 * GemmaForSequenceClassification directory layout (written here because the causal-LM checkpoint of
 * train/checkpoint.h has no slot for an extra tensor). */
#include "train/reward.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "base/error.h"
#include "base/file.h"
#include "formats/safetensors.h"
#include "model/config.h"
#include "tensor/dtype.h"
#include "train/checkpoint.h"

/* ---- pairs --------------------------------------------------------------------------------------- */

gm_status gm_pref_push(gm_pref_data *d, const int32_t *chosen, int n_chosen, const int32_t *rejected, int n_rejected,
                       long line) {
    if (n_chosen < 1 || n_rejected < 1) return gm_fail(GM_ERR_ARG, "a preference pair needs two non-empty sides");
    if (d->n == d->cap) {
        int nc = d->cap ? d->cap * 2 : 64;
        gm_pref_pair *p = realloc(d->p, sizeof *p * (size_t)nc);
        if (!p) return gm_fail(GM_ERR_NOMEM, "out of memory");
        d->p = p, d->cap = nc;
    }
    gm_pref_pair *p = &d->p[d->n];
    p->chosen = malloc(sizeof(int32_t) * (size_t)n_chosen);
    p->rejected = malloc(sizeof(int32_t) * (size_t)n_rejected);
    if (!p->chosen || !p->rejected) {
        free(p->chosen);
        free(p->rejected);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    memcpy(p->chosen, chosen, sizeof(int32_t) * (size_t)n_chosen);
    memcpy(p->rejected, rejected, sizeof(int32_t) * (size_t)n_rejected);
    p->n_chosen = n_chosen, p->n_rejected = n_rejected, p->line = line;
    d->n++;
    return GM_OK;
}

void gm_pref_data_free(gm_pref_data *d) {
    for (int i = 0; i < d->n; i++) {
        free(d->p[i].chosen);
        free(d->p[i].rejected);
    }
    free(d->p);
    memset(d, 0, sizeof *d);
}

typedef struct {
    const gm_tokenizer *tok;
    const gm_sft_load_opts *o;
    gm_pref_data *d;
    int reports;
} pref_ctx;

static gm_status pref_record(void *vctx, const gm_json *rec, const char *where, long line) {
    pref_ctx *x = vctx;
    gm_sft_example e[2] = {{0}};
    gm_sft_conv c = {0};
    static const char *SIDES[2] = {"chosen", "rejected"};
    gm_status st = GM_OK;
    for (int s = 0; s < 2 && !st; s++) {
        gm_sft_conv_clear(&c);
        st = gm_sft_pref_conv(rec, SIDES[s], &c);
        if (!st) st = gm_sft_encode(x->tok, c.msgs, c.n, 1, &e[s]);
        if (st) st = gm_fail_prefix(GM_ERR_FORMAT, "\"%s\": ", SIDES[s]);
    }
    gm_sft_conv_clear(&c);
    if (!st && e[0].n == e[1].n && !memcmp(e[0].ids, e[1].ids, sizeof(int32_t) * (size_t)e[0].n))
        st = gm_fail(GM_ERR_FORMAT, "\"chosen\" and \"rejected\" are the same conversation (nothing to prefer)");
    if (!st) {
        int longest = e[0].n > e[1].n ? e[0].n : e[1].n;
        if (x->o->max_len > 0 && longest > x->o->max_len) {
            x->d->n_too_long++;
            if (x->o->log && x->reports++ < (x->o->max_reports > 0 ? x->o->max_reports : 20))
                fprintf(x->o->log, "%s: %d tokens, longer than %d: left out\n", where, longest, x->o->max_len);
        } else {
            st = gm_pref_push(x->d, e[0].ids, e[0].n, e[1].ids, e[1].n, line);
        }
    }
    gm_sft_example_free(&e[0]);
    gm_sft_example_free(&e[1]);
    if (st == GM_ERR_NOMEM) return st;
    return st ? gm_fail_prefix(GM_ERR_FORMAT, "%s: ", where) : GM_OK;
}

gm_status gm_pref_load(const char *path, const gm_tokenizer *tok, const gm_sft_load_opts *o, gm_pref_data *out) {
    memset(out, 0, sizeof *out);
    pref_ctx x = {tok, o, out, 0};
    gm_status st = gm_align_each_record(path, o, pref_record, &x, &out->n_records, &out->n_bad);
    if (!st && out->n == 0)
        st = gm_fail(GM_ERR_FORMAT, "%s: no usable pairs (%ld records, %ld bad, %ld too long)", path, out->n_records,
                     out->n_bad, out->n_too_long);
    if (st) gm_pref_data_free(out);
    return st;
}

gm_status gm_pref_split(gm_pref_data *d, double frac, uint64_t seed, gm_pref_data *eval) {
    memset(eval, 0, sizeof *eval);
    unsigned char *held = NULL;
    gm_status st = gm_align_holdout(d->n, frac, seed, &held);
    if (st || !held) return st;
    int k = 0;
    for (int i = 0; i < d->n; i++) k += held[i];
    if (!(eval->p = malloc(sizeof *eval->p * (size_t)k))) {
        free(held);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    eval->cap = k;
    int w = 0;
    for (int i = 0; i < d->n; i++) {
        if (held[i]) eval->p[eval->n++] = d->p[i];
        else d->p[w++] = d->p[i];
    }
    d->n = w;
    free(held);
    return GM_OK;
}

/* ---- the model ----------------------------------------------------------------------------------- */

gm_status gm_reward_new(gm_train_model *m, uint64_t seed, float std, gm_reward_model **out) {
    *out = NULL;
    gm_reward_model *rm = calloc(1, sizeof *rm);
    if (!rm) {
        gm_train_model_free(m);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    rm->m = m;
    rm->d = m->cfg.hidden_size;
    size_t d = (size_t)rm->d, rows = (size_t)m->opt.max_batch * (size_t)m->opt.max_seq;
    rm->head = calloc(d, sizeof(float));
    rm->d_head = calloc(d, sizeof(float));
    rm->head_m = calloc(d, sizeof(float));
    rm->head_v = calloc(d, sizeof(float));
    rm->dh = calloc(rows * d, sizeof(float));
    if (!rm->head || !rm->d_head || !rm->head_m || !rm->head_v || !rm->dh) {
        gm_reward_free(rm);
        return gm_fail(GM_ERR_NOMEM, "reward model: out of memory for the head and its %zu x %zu gradient scratch",
                       rows, d);
    }
    /* Box–Muller on the shared splitmix stream: N(0, std²) like nn.Linear under _init_weights */
    uint64_t s = seed ^ 0x5c0e5c0e5c0e5c0eull;
    for (size_t i = 0; i < d; i += 2) {
        double u1 = (gm_align_rand(&s) >> 11) * (1.0 / 9007199254740992.0) + 1.0 / 18014398509481984.0;
        double u2 = gm_align_uniform(&s);
        double r = sqrt(-2.0 * log(u1));
        rm->head[i] = (float)(std * r * cos(2 * M_PI * u2));
        if (i + 1 < d) rm->head[i + 1] = (float)(std * r * sin(2 * M_PI * u2));
    }
    *out = rm;
    return GM_OK;
}

void gm_reward_free(gm_reward_model *rm) {
    if (!rm) return;
    gm_train_model_free(rm->m);
    free(rm->head);
    free(rm->d_head);
    free(rm->head_m);
    free(rm->head_v);
    free(rm->dh);
    free(rm);
}

void gm_reward_batch(const gm_pref_pair *const *pairs, int P, int T, int32_t pad, int32_t *inputs, int *lens) {
    for (int r = 0; r < 2 * P; r++) {
        const gm_pref_pair *p = pairs[r % P];
        const int32_t *ids = r < P ? p->chosen : p->rejected;
        int n = r < P ? p->n_chosen : p->n_rejected;
        if (n > T) n = T;
        for (int t = 0; t < T; t++) inputs[(size_t)r * T + t] = t < n ? ids[t] : pad;
        lens[r] = n;
    }
}

static gm_status check_lens(const gm_reward_model *rm, const int *lens, int B, int T) {
    if (B < 1 || T < 1 || B > rm->m->opt.max_batch || T > rm->m->opt.max_seq)
        return gm_fail(GM_ERR_ARG, "reward batch %d x %d exceeds the model's %d x %d", B, T, rm->m->opt.max_batch,
                       rm->m->opt.max_seq);
    for (int b = 0; b < B; b++)
        if (lens[b] < 1 || lens[b] > T)
            return gm_fail(GM_ERR_ARG, "reward row %d has length %d (1..%d)", b, lens[b], T);
    return GM_OK;
}

static double dot(const float *a, const float *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

gm_status gm_reward_score(gm_reward_model *rm, const int32_t *inputs, const int *lens, int B, int T, float *r) {
    gm_status st = check_lens(rm, lens, B, T);
    const float *h = NULL;
    if (!st) st = gm_train_hidden(rm->m, inputs, B, T, &h);
    if (st) return st;
    for (int b = 0; b < B; b++) r[b] = (float)dot(rm->head, h + ((size_t)b * T + lens[b] - 1) * rm->d, rm->d);
    return GM_OK;
}

/* log(1 + e^x) without overflow */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

gm_status gm_reward_forward_backward(gm_reward_model *rm, const int32_t *inputs, const int *lens, int P, int T,
                                     float *loss, float *r, int *correct) {
    int B = 2 * P, d = rm->d;
    gm_status st = P < 1 ? gm_fail(GM_ERR_ARG, "reward batch needs at least one pair") : check_lens(rm, lens, B, T);
    const float *h = NULL;
    if (!st) st = gm_train_hidden(rm->m, inputs, B, T, &h);
    if (st) return st;
    memset(rm->dh, 0, sizeof(float) * (size_t)B * T * d);
    double sum = 0;
    int right = 0;
    for (int p = 0; p < P; p++) {
        size_t ic = ((size_t)p * T + lens[p] - 1) * d, ir = ((size_t)(P + p) * T + lens[P + p] - 1) * d;
        const float *hc = h + ic, *hr = h + ir;
        double rc = dot(rm->head, hc, d), rr = dot(rm->head, hr, d);
        if (r) r[p] = (float)rc, r[P + p] = (float)rr;
        right += rc > rr;
        sum += softplus(rr - rc);
        /* dL/dr_c = −σ(r_r − r_c) / P; dL/dr_r is its negative */
        float g = (float)(-sigmoid(rr - rc) / P);
        float *dc = rm->dh + ic, *dr = rm->dh + ir;
        for (int i = 0; i < d; i++) {
            dc[i] = g * rm->head[i];
            dr[i] = -g * rm->head[i];
            rm->d_head[i] += g * (hc[i] - hr[i]); /* before the backward, which may reuse h's buffer */
        }
    }
    if (loss) *loss = (float)(sum / P);
    if (correct) *correct = right;
    return gm_train_hidden_backward(rm->m, inputs, B, T, rm->dh);
}

gm_status gm_reward_eval(gm_reward_model *rm, const gm_pref_pair *pairs, int n, int32_t pad, double *loss,
                         double *accuracy) {
    int P = rm->m->opt.max_batch / 2, T = rm->m->opt.max_seq;
    if (P < 1) return gm_fail(GM_ERR_ARG, "reward eval needs a model built for batches of 2 or more");
    int32_t *in = malloc(sizeof(int32_t) * (size_t)2 * P * T);
    int *lens = malloc(sizeof(int) * 2 * (size_t)P);
    float *r = malloc(sizeof(float) * 2 * (size_t)P);
    const gm_pref_pair **rows = malloc(sizeof *rows * (size_t)P);
    gm_status st = in && lens && r && rows ? GM_OK : gm_fail(GM_ERR_NOMEM, "out of memory");
    double sum = 0, right = 0;
    for (int i = 0; i < n && !st; i += P) {
        int p = n - i < P ? n - i : P, Tb = 1;
        for (int k = 0; k < p; k++) {
            rows[k] = &pairs[i + k];
            if (rows[k]->n_chosen > Tb) Tb = rows[k]->n_chosen;
            if (rows[k]->n_rejected > Tb) Tb = rows[k]->n_rejected;
        }
        if (Tb > T) st = gm_fail(GM_ERR_ARG, "pair %d has %d tokens, more than the model's %d", i, Tb, T);
        /* rows laid out for p pairs: chosen 0..p-1, rejected p..2p-1 */
        if (!st) gm_reward_batch(rows, p, Tb, pad, in, lens);
        if (!st) st = gm_reward_score(rm, in, lens, 2 * p, Tb, r);
        for (int k = 0; k < p && !st; k++) {
            sum += softplus((double)r[p + k] - r[k]);
            right += r[k] > r[p + k] ? 1.0 : r[k] == r[p + k] ? 0.5 : 0.0;
        }
    }
    free(in);
    free(lens);
    free(r);
    free(rows);
    if (st) return st;
    *loss = n ? sum / n : NAN;
    *accuracy = n ? right / n : NAN;
    return GM_OK;
}

double gm_reward_head_step(gm_reward_model *rm, gm_dist *dist, const gm_adamw_params *p, float lr, float grad_scale) {
    int d = rm->d;
    if (dist && gm_dist_dp_size(dist) > 1) {
        /* the head is small: one scalar all-reduce per element keeps this file free of MPI types */
        double inv = 1.0 / gm_dist_dp_size(dist);
        for (int i = 0; i < d; i++) rm->d_head[i] = (float)(gm_dist_sum_dp(dist, rm->d_head[i]) * inv);
    }
    double norm2 = 0;
    for (int i = 0; i < d; i++) norm2 += (double)rm->d_head[i] * grad_scale * rm->d_head[i] * grad_scale;
    double norm = sqrt(norm2);
    if (!isfinite(norm)) {
        memset(rm->d_head, 0, sizeof(float) * (size_t)d);
        return norm; /* skipped, as gm_adamw_step skips a non-finite gradient */
    }
    float coef = p->clip > 0 && norm > p->clip ? (float)(p->clip / (norm + 1e-6)) : 1.0f;
    int t = ++rm->head_steps;
    double bc1 = 1.0 - pow(p->beta1, t), bc2 = 1.0 - pow(p->beta2, t);
    double step = lr / bc1, bc2s = sqrt(bc2);
    for (int i = 0; i < d; i++) {
        float g = rm->d_head[i] * grad_scale * coef;
        rm->head_m[i] = p->beta1 * rm->head_m[i] + (1 - p->beta1) * g;
        rm->head_v[i] = p->beta2 * rm->head_v[i] + (1 - p->beta2) * g * g;
        rm->head[i] *= 1.0f - lr * p->weight_decay;
        rm->head[i] -= (float)(step * rm->head_m[i] / (sqrt(rm->head_v[i]) / bc2s + p->eps));
    }
    memset(rm->d_head, 0, sizeof(float) * (size_t)d);
    return norm;
}

/* ---- the directory ------------------------------------------------------------------------------- */

static const gm_train_tensor *full_tensors(const gm_train_model *m, int *n, size_t *n_params) {
    if (m->full_tensors) {
        *n = m->n_full_tensors, *n_params = m->n_full_params;
        return m->full_tensors;
    }
    *n = m->n_tensors, *n_params = m->n_params;
    return m->tensors;
}

static gm_status write_file_sync(const char *dir, const char *name, const void *const *parts, const size_t *lens,
                                 int n_parts) {
    char *path = gm_path_join(dir, name);
    if (!path) return gm_fail(GM_ERR_NOMEM, "out of memory");
    FILE *f = fopen(path, "wb");
    gm_status st = f ? GM_OK : gm_fail(GM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    for (int i = 0; i < n_parts && !st; i++)
        if (lens[i] && fwrite(parts[i], 1, lens[i], f) != lens[i])
            st = gm_fail(GM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (f && !st && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = gm_fail(GM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (f && fclose(f) != 0 && !st) st = gm_fail(GM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    free(path);
    return st;
}

static void remove_flat(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = gm_path_join(dir, e->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd); /* some file systems refuse it on directories: nothing more to do then */
        close(fd);
    }
}

gm_status gm_reward_save(const gm_reward_model *rm, const float *params, const char *dir, const char *tokenizer,
                         const char *name) {
    const gm_train_model *m = rm->m;
    int nt;
    size_t np;
    const gm_train_tensor *T = full_tensors(m, &nt, &np);
    if (!params) {
        if (m->tp_size > 1) return gm_fail(GM_ERR_ARG, "gm_reward_save: a sharded backbone needs gathered parameters");
        params = m->params;
    }
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    char *tmp = malloc(dl + 64), *old = malloc(dl + 64);
    if (!tmp || !old) {
        free(tmp);
        free(old);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    snprintf(tmp, dl + 64, "%.*s.tmp-%ld", (int)dl, dir, (long)getpid());
    snprintf(old, dl + 64, "%.*s.old-%ld", (int)dl, dir, (long)getpid());
    remove_flat(tmp);
    gm_status st = mkdir(tmp, 0755) == 0 ? GM_OK : gm_fail(GM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));

    /* config.json: the causal-LM config with the classification head's class and label count */
    char *cfg = NULL, *out = NULL;
    size_t cfg_len = 0;
    if (!st) {
        FILE *mf = open_memstream(&cfg, &cfg_len);
        if (!mf) st = gm_fail(GM_ERR_NOMEM, "out of memory");
        else {
            st = gm_ckpt_write_config(mf, &m->cfg, name, "float32");
            fclose(mf);
        }
    }
    if (!st) {
        const char *a = strstr(cfg, "ForCausalLM\"]"), *brace = strchr(cfg, '{');
        out = malloc(cfg_len + 128);
        if (!a || !brace || !out) st = gm_fail(GM_ERR_UNSUPPORTED, "unexpected config.json layout from the writer");
        else {
            size_t k = 0, pre = (size_t)(a - cfg);
            /* "{\n" + num_labels, then the rest with ...ForCausalLM → ...ForSequenceClassification */
            k += (size_t)sprintf(out, "{\n  \"num_labels\": 1,");
            memcpy(out + k, brace + 1, pre - (size_t)(brace + 1 - cfg));
            k += pre - (size_t)(brace + 1 - cfg);
            k += (size_t)sprintf(out + k, "ForSequenceClassification");
            size_t rest = cfg_len - (size_t)(a + strlen("ForCausalLM") - cfg);
            memcpy(out + k, a + strlen("ForCausalLM"), rest);
            k += rest;
            const void *parts[1] = {out};
            size_t lens[1] = {k};
            st = write_file_sync(tmp, "config.json", parts, lens, 1);
        }
    }
    free(cfg);
    free(out);

    /* model.safetensors (F32): the backbone's tensors in the full layout, then score.weight */
    if (!st) {
        size_t cap = 256 + (size_t)(nt + 1) * 192, hl = 0, off = 0;
        char *h = malloc(cap);
        if (!h) st = gm_fail(GM_ERR_NOMEM, "out of memory");
        else {
            hl += (size_t)snprintf(h + hl, cap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
            for (int i = 0; i <= nt; i++) {
                const char *nm = i < nt ? T[i].name : GM_REWARD_HEAD;
                size_t numel = i < nt ? T[i].numel : (size_t)rm->d;
                long s0 = i < nt ? (long)T[i].shape[0] : 1, s1 = i < nt ? (long)T[i].shape[1] : rm->d;
                int nd = i < nt ? T[i].ndim : 2;
                if (nd == 1)
                    hl += (size_t)snprintf(h + hl, cap - hl, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%ld],", nm, s0);
                else
                    hl += (size_t)snprintf(h + hl, cap - hl, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%ld,%ld],", nm, s0,
                                           s1);
                hl += (size_t)snprintf(h + hl, cap - hl, "\"data_offsets\":[%zu,%zu]}", off, off + 4 * numel);
                off += 4 * numel;
            }
            hl += (size_t)snprintf(h + hl, cap - hl, "}");
            while (hl % 8) h[hl++] = ' '; /* the data starts 8-aligned */
            uint64_t hlen = hl;
            unsigned char le[8];
            for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hlen >> (8 * i));
            const void **parts = malloc(sizeof *parts * (size_t)(nt + 3));
            size_t *lens = malloc(sizeof *lens * (size_t)(nt + 3));
            if (!parts || !lens) st = gm_fail(GM_ERR_NOMEM, "out of memory");
            else {
                parts[0] = le, lens[0] = 8, parts[1] = h, lens[1] = hl;
                for (int i = 0; i < nt; i++) parts[2 + i] = params + T[i].offset, lens[2 + i] = 4 * T[i].numel;
                parts[2 + nt] = rm->head, lens[2 + nt] = 4 * (size_t)rm->d;
                st = write_file_sync(tmp, "model.safetensors", parts, lens, nt + 3);
            }
            free(parts);
            free(lens);
            free(h);
        }
    }
    (void)np;
    if (!st && tokenizer) {
        char *data = NULL;
        size_t len = 0;
        st = gm_file_read_all(tokenizer, &data, &len);
        const char *base = len && data[0] == '{' ? "tokenizer.json" : "tokenizer.model";
        const void *parts[1] = {data};
        size_t lens[1] = {len};
        if (!st) st = write_file_sync(tmp, base, parts, lens, 1);
        free(data);
    }
    if (!st) {
        sync_dir(tmp);
        struct stat sb;
        int exists = stat(dir, &sb) == 0;
        if (exists && !S_ISDIR(sb.st_mode)) st = gm_fail(GM_ERR_IO, "%s: exists and is not a directory", dir);
        if (!st && exists && rename(dir, old) != 0)
            st = gm_fail(GM_ERR_IO, "%s: cannot move aside: %s", dir, strerror(errno));
        if (!st && rename(tmp, dir) != 0) {
            st = gm_fail(GM_ERR_IO, "%s: cannot rename into place: %s", dir, strerror(errno));
            if (exists) rename(old, dir);
        }
        if (!st && exists) remove_flat(old);
        if (!st) {
            char *parent = strdup(dir), *slash = parent ? strrchr(parent, '/') : NULL;
            if (slash) *slash = 0;
            sync_dir(slash ? (parent[0] ? parent : "/") : ".");
            free(parent);
        }
    }
    if (st) remove_flat(tmp);
    free(tmp);
    free(old);
    return st;
}

gm_status gm_reward_load(const char *dir, gm_dist *dist, const gm_train_opts *o, gm_reward_model **out) {
    *out = NULL;
    char *cfg_path = gm_path_join(dir, "config.json"), *st_path = gm_path_join(dir, "model.safetensors");
    gm_config cfg;
    gm_st_file *f = NULL;
    gm_train_model *m = NULL;
    float *full = NULL, *head = NULL;
    gm_status st = cfg_path && st_path ? GM_OK : gm_fail(GM_ERR_NOMEM, "out of memory");
    if (!st) st = gm_config_load(cfg_path, &cfg);
    if (!st) st = gm_safetensors_open(st_path, 0, &f);
    if (!st) st = dist ? gm_dist_model_new(dist, &cfg, o, &m) : gm_train_model_new(&cfg, o, &m);
    int nt = 0;
    size_t np = 0;
    const gm_train_tensor *T = m ? full_tensors(m, &nt, &np) : NULL;
    if (!st) {
        full = malloc(sizeof(float) * np);
        head = malloc(sizeof(float) * (size_t)cfg.hidden_size);
        if (!full || !head) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i <= nt && !st; i++) {
        const char *nm = i < nt ? T[i].name : GM_REWARD_HEAD;
        const gm_st_tensor *t = gm_safetensors_find(f, nm);
        int64_t s0 = i < nt ? T[i].shape[0] : 1, s1 = i < nt ? T[i].shape[1] : cfg.hidden_size;
        int nd = i < nt ? T[i].ndim : 2;
        size_t numel = i < nt ? T[i].numel : (size_t)cfg.hidden_size;
        if (!t) {
            st = gm_fail(GM_ERR_FORMAT, "%s: missing tensor '%s'%s", st_path, nm,
                         i == nt ? " (the reward head: is this a reward model made by `gemma reward train`?)" : "");
            break;
        }
        if (t->ndim != nd || t->shape[0] != s0 || (nd == 2 && t->shape[1] != s1)) {
            st = gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' has the wrong shape for config.json (want [%lld%s%lld])",
                         st_path, nm, (long long)s0, nd == 2 ? ", " : "", nd == 2 ? (long long)s1 : 0LL);
            break;
        }
        if (t->dtype != GM_DT_F32 && t->dtype != GM_DT_BF16 && t->dtype != GM_DT_F16) {
            st = gm_fail(GM_ERR_UNSUPPORTED, "%s: tensor '%s' is %s (F32, BF16 or F16 expected)", st_path, nm,
                         gm_dtype_info(t->dtype)->name);
            break;
        }
        gm_dtype_info(t->dtype)->to_f32(t->data, i < nt ? full + T[i].offset : head, numel);
    }
    if (!st && gm_safetensors_count(f) != (size_t)nt + 1)
        st = gm_fail(GM_ERR_FORMAT, "%s: %zu tensors, but a reward model of this config.json has %d", st_path,
                     gm_safetensors_count(f), nt + 1);
    if (!st) {
        if (dist) st = gm_dist_model_scatter(dist, m, full);
        else memcpy(m->params, full, sizeof(float) * np);
    }
    gm_reward_model *rm = NULL;
    if (!st) {
        st = gm_reward_new(m, 0, 0.0f, &rm);
        m = NULL;
    }
    if (!st) memcpy(rm->head, head, sizeof(float) * (size_t)rm->d);
    gm_train_model_free(m);
    gm_safetensors_close(f);
    free(full);
    free(head);
    free(cfg_path);
    free(st_path);
    if (!st) *out = rm;
    return st;
}
