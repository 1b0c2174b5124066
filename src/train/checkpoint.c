/* Training checkpoints (see checkpoint.h). Every file is written through a writer that keeps its size
 * and CRC-32 as the bytes go out, so trainer_state.json, written last, can list them without reading
 * anything back; trainer_state.json ends with a CRC of its own text, so a flipped byte anywhere in a
 * checkpoint is found before any of it is used. */
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "formats/safetensors.h"
#include "model/config.h"

#define CKPT_FORMAT "gemma.c-train-checkpoint"
#define CKPT_VERSION 1
#define STATE_FILE "trainer_state.json"
#define MAX_FILES 8

/* ---- CRC-32 (zlib polynomial, slice-by-8) ------------------------------------------------------ */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t gm_crc32(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (n >= 8) {
        uint32_t a = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = crc_tab[7][a & 0xff] ^ crc_tab[6][(a >> 8) & 0xff] ^ crc_tab[5][(a >> 16) & 0xff] ^ crc_tab[4][a >> 24] ^
            crc_tab[3][p[4]] ^ crc_tab[2][p[5]] ^ crc_tab[1][p[6]] ^ crc_tab[0][p[7]];
        p += 8, n -= 8;
    }
    while (n--) c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

/* ---- small helpers ----------------------------------------------------------------------------- */

static char *join(const char *a, const char *b) { return gm_path_join(a, b); }

static gm_status fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return gm_fail(GM_ERR_IO, "%s: cannot open the directory to sync it: %s", dir, strerror(errno));
    int r = fsync(fd), e = errno;
    close(fd);
    /* some file systems refuse fsync on directories (EINVAL): nothing more can be done there */
    if (r != 0 && e != EINVAL) return gm_fail(GM_ERR_IO, "%s: fsync of the directory failed: %s", dir, strerror(e));
    return GM_OK;
}

/* Remove a directory of plain files (what checkpoints hold); anything else in it is left and reported. */
static gm_status remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? GM_OK : gm_fail(GM_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = join(dir, e->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
    if (rmdir(dir) != 0 && errno != ENOENT) return gm_fail(GM_ERR_IO, "%s: cannot remove: %s", dir, strerror(errno));
    return GM_OK;
}

/* parent and base name of a path (no trailing slash handling beyond the last one) */
static void split_path(const char *path, char *parent, size_t pcap, char *base, size_t bcap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(base, bcap, "%.*s", (int)(n - b), path + b);
    if (b == 0) snprintf(parent, pcap, ".");
    else if (b == 1) snprintf(parent, pcap, "/");
    else snprintf(parent, pcap, "%.*s", (int)(b - 1), path);
}

/* ---- a file writer that keeps size and CRC --------------------------------------------------------- */

typedef struct {
    char name[32];
    uint64_t size;
    uint32_t crc;
} file_rec;

typedef struct {
    FILE *f;
    char *path;
    file_rec rec;
    int err; /* errno of the first failure */
} cwriter;

static gm_status cw_open(cwriter *w, const char *dir, const char *name) {
    memset(w, 0, sizeof *w);
    snprintf(w->rec.name, sizeof w->rec.name, "%s", name);
    w->path = join(dir, name);
    if (!w->path) return gm_fail(GM_ERR_NOMEM, "out of memory");
    w->f = fopen(w->path, "wb");
    if (!w->f) {
        gm_status st = gm_fail(GM_ERR_IO, "%s: cannot create: %s", w->path, strerror(errno));
        free(w->path);
        w->path = NULL;
        return st;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    return GM_OK;
}

static void cw_write(cwriter *w, const void *p, size_t n) {
    if (w->err || n == 0) return;
    if (fwrite(p, 1, n, w->f) != n) {
        w->err = errno ? errno : EIO;
        return;
    }
    w->rec.crc = gm_crc32(w->rec.crc, p, n);
    w->rec.size += n;
}

/* flush, fsync and close; the record is complete only when this succeeds */
static gm_status cw_close(cwriter *w) {
    gm_status st = GM_OK;
    if (!w->f) return GM_OK;
    if (!w->err && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)) w->err = errno ? errno : EIO;
    if (fclose(w->f) != 0 && !w->err) w->err = errno ? errno : EIO;
    w->f = NULL;
    if (w->err) st = gm_fail(GM_ERR_IO, "%s: write failed: %s", w->path, strerror(w->err));
    free(w->path);
    w->path = NULL;
    return st;
}

static void cw_abort(cwriter *w) {
    if (w->f) fclose(w->f);
    w->f = NULL;
    free(w->path);
    w->path = NULL;
}

/* Test hook (docs/training.md): GM_TEST_KILL_IN_CHECKPOINT=N sends SIGKILL to this process half-way
 * through writing model.safetensors of the N-th checkpoint it writes (1 = the first), so the tests can
 * check that an interrupted checkpoint leaves the previous one intact. */
static int kill_hook_armed(void) {
    static int writes = 0;
    const char *e = getenv("GM_TEST_KILL_IN_CHECKPOINT");
    writes++;
    return e && atoi(e) == writes;
}

/* ---- safetensors writing ------------------------------------------------------------------------- */

typedef struct {
    char name[112];
    const float *data;
    size_t numel;
    int ndim;
    int64_t shape[2];
    gm_dtype dt; /* F32 or BF16 */
} st_entry;

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = (b->cap ? b->cap * 2 : 4096);
        while (nc < b->len + (size_t)n + 1) nc *= 2;
        char *p = realloc(b->s, nc);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p, b->cap = nc;
    }
}

/* Writes a safetensors file; kill_at_half (the test hook) raises SIGKILL once half the data is out. */
static gm_status write_safetensors(cwriter *w, const st_entry *e, int n, int kill_at_half) {
    sbuf h = {0};
    size_t off = 0, total = 0;
    sb_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t nb = e[i].numel * (e[i].dt == GM_DT_BF16 ? 2 : 4);
        sb_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e[i].name, e[i].dt == GM_DT_BF16 ? "BF16" : "F32");
        for (int d = 0; d < e[i].ndim; d++) sb_printf(&h, d ? ",%lld" : "%lld", (long long)e[i].shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    total = off;
    sb_printf(&h, "}");
    while (!h.oom && h.len % 8) sb_printf(&h, " ");
    if (h.oom) {
        free(h.s);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    unsigned char hl[8];
    for (int i = 0; i < 8; i++) hl[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    cw_write(w, hl, 8);
    cw_write(w, h.s, h.len);
    free(h.s);
    enum { CHUNK = 1 << 16 };
    uint16_t *tmp = NULL;
    size_t done = 0;
    for (int i = 0; i < n && !w->err; i++) {
        if (e[i].dt == GM_DT_F32) {
            /* the file is little-endian f32, as the host's floats are on every machine we build for */
            for (size_t k = 0; k < e[i].numel && !w->err; k += CHUNK) {
                size_t m = e[i].numel - k < CHUNK ? e[i].numel - k : CHUNK;
                cw_write(w, e[i].data + k, m * 4);
                done += m * 4;
                if (kill_at_half && done >= total / 2) fflush(w->f), raise(SIGKILL);
            }
        } else {
            if (!tmp && !(tmp = malloc(CHUNK * sizeof *tmp))) return gm_fail(GM_ERR_NOMEM, "out of memory");
            for (size_t k = 0; k < e[i].numel && !w->err; k += CHUNK) {
                size_t m = e[i].numel - k < CHUNK ? e[i].numel - k : CHUNK;
                for (size_t j = 0; j < m; j++) tmp[j] = gm_f32_to_bf16(e[i].data[k + j]);
                cw_write(w, tmp, m * 2);
                done += m * 2;
                if (kill_at_half && done >= total / 2) fflush(w->f), raise(SIGKILL);
            }
        }
    }
    free(tmp);
    return GM_OK;
}

/* ---- config.json ------------------------------------------------------------------------------- */


/* integers as 10000.0 (as HF writes floats that are whole), others with 9 significant digits */
static void num(FILE *f, const char *key, double v) {
    double r = floor(v + 0.5);
    if (fabs(v - r) <= 1e-6 * fmax(1.0, fabs(v)) && fabs(r) < 1e15) fprintf(f, "  \"%s\": %.1f,\n", key, r);
    else fprintf(f, "  \"%s\": %.9g,\n", key, v);
}

static float scale_for(const gm_config *c, const char *dtype) {
    float s = (float)sqrt((double)c->hidden_size);
    if (!strcmp(dtype, "bfloat16")) return gm_bf16_to_f32(gm_f32_to_bf16(s));
    if (!strcmp(dtype, "float16")) return gm_f16_to_f32(gm_f32_to_f16(s));
    return s;
}

gm_status gm_ckpt_write_config(FILE *f, const gm_config *c, const char *name, const char *prefer_dtype) {
    static const char *const DTYPES[] = {"float32", "bfloat16", "float16"};
    const char *dtype = NULL;
    if (prefer_dtype && scale_for(c, prefer_dtype) == c->embed_scale) dtype = prefer_dtype;
    for (int i = 0; i < 3 && !dtype; i++)
        if (scale_for(c, DTYPES[i]) == c->embed_scale) dtype = DTYPES[i];
    if (!dtype)
        return gm_fail(GM_ERR_UNSUPPORTED, "embedding scale %.9g is sqrt(%d) in no dtype config.json can name",
                       (double)c->embed_scale, c->hidden_size);
    const char *mt = c->family == 1 ? "gemma" : c->family == 2 ? "gemma2" : "gemma3_text";
    const char *ar = c->family == 1 ? "GemmaForCausalLM" : c->family == 2 ? "Gemma2ForCausalLM" : "Gemma3ForCausalLM";
    fprintf(f, "{\n");
    if (name) {
        fprintf(f, "  \"_name_or_path\": ");
        gm_json_write_str(f, name);
        fprintf(f, ",\n");
    }
    fprintf(f, "  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", ar, mt);
    fprintf(f, "  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n");
    fprintf(f, "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"pad_token_id\": %d,\n", c->bos_id, c->eos_id,
            c->pad_id);
    fprintf(f, "  \"head_dim\": %d,\n", c->head_dim);
    fprintf(f, "  \"hidden_act\": \"gelu_pytorch_tanh\",\n  \"hidden_activation\": \"gelu_pytorch_tanh\",\n");
    fprintf(f, "  \"hidden_size\": %d,\n  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n", c->hidden_size,
            c->ffn_size);
    fprintf(f, "  \"max_position_embeddings\": %d,\n", c->max_pos);
    fprintf(f, "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n",
            c->n_heads, c->n_layers, c->n_kv_heads);
    /* Gemma 1's scale is 1/sqrt(head_dim) and GemmaConfig has no key for it: say it only when it differs */
    double qpas = 1.0 / ((double)c->query_scale * (double)c->query_scale);
    if (c->family >= 2 || fabs(qpas - c->head_dim) > 1e-3 * c->head_dim) num(f, "query_pre_attn_scalar", qpas);
    for (int prec = 6; prec <= 9; prec++) { /* the shortest text that reads back to the same float */
        char b[32];
        snprintf(b, sizeof b, "%.*g", prec, (double)c->rms_eps);
        if ((float)strtod(b, NULL) == c->rms_eps || prec == 9) {
            fprintf(f, "  \"rms_norm_eps\": %s,\n", b);
            break;
        }
    }
    num(f, "rope_theta", c->rope_theta);
    if (c->rope_scale != 1)
        fprintf(f, "  \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": %.9g},\n", (double)c->rope_scale);
    else fprintf(f, "  \"rope_scaling\": null,\n");
    if (c->family >= 2) {
        if (c->attn_softcap > 0) num(f, "attn_logit_softcapping", c->attn_softcap);
        else fprintf(f, "  \"attn_logit_softcapping\": null,\n");
        if (c->final_softcap > 0) num(f, "final_logit_softcapping", c->final_softcap);
        else fprintf(f, "  \"final_logit_softcapping\": null,\n");
        if (c->sliding_window > 0) fprintf(f, "  \"sliding_window\": %d,\n", c->sliding_window);
        else fprintf(f, "  \"sliding_window\": null,\n");
        if (c->family == 3) num(f, "rope_local_base_freq", c->rope_local_theta);
        fprintf(f, "  \"layer_types\": [");
        for (int l = 0; l < c->n_layers; l++)
            fprintf(f, "%s\"%s\"", l ? ", " : "", c->layer_global[l] ? "full_attention" : "sliding_attention");
        fprintf(f, "],\n");
    }
    fprintf(f, "  \"tie_word_embeddings\": true,\n  \"torch_dtype\": \"%s\",\n", dtype);
    fprintf(f, "  \"use_cache\": true,\n  \"vocab_size\": %d\n}\n",
            c->vocab_size);
    return GM_OK;
}

/* ---- writing a checkpoint -------------------------------------------------------------------------- */

/* A whole small file through a cwriter (records its size and CRC). */
static gm_status write_small(const char *dir, const char *name, const void *data, size_t len, file_rec *rec) {
    cwriter w;
    gm_status st = cw_open(&w, dir, name);
    if (st) return st;
    cw_write(&w, data, len);
    if ((st = cw_close(&w))) return st;
    *rec = w.rec;
    return GM_OK;
}

static gm_status write_files(const char *tmp, const gm_ckpt_write_opts *o, file_rec *recs, int *n_recs) {
    gm_status st;
    const gm_ckpt_layout *L = &o->layout;
    int n = 0;
    int kill = kill_hook_armed();
    /* config.json */
    char *text = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&text, &len);
    if (!mf) return gm_fail(GM_ERR_NOMEM, "out of memory");
    st = gm_ckpt_write_config(mf, o->cfg, o->name, o->dtype == GM_DT_BF16 ? "bfloat16" : "float32");
    fclose(mf);
    if (!st) st = write_small(tmp, "config.json", text, len, &recs[n++]);
    free(text);
    if (st) return st;

    /* model.safetensors */
    st_entry *e = calloc((size_t)L->n_tensors * 3 + 1, sizeof *e);
    if (!e) return gm_fail(GM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < L->n_tensors; i++) {
        const gm_train_tensor *t = &L->tensors[i];
        snprintf(e[i].name, sizeof e[i].name, "%s", t->name);
        e[i].data = o->params + t->offset, e[i].numel = t->numel, e[i].ndim = t->ndim;
        e[i].shape[0] = t->shape[0], e[i].shape[1] = t->shape[1];
        e[i].dt = o->dtype;
    }
    cwriter w;
    if (!(st = cw_open(&w, tmp, "model.safetensors"))) {
        st = write_safetensors(&w, e, L->n_tensors, kill);
        if (st) cw_abort(&w);
        else if (!(st = cw_close(&w))) recs[n++] = w.rec;
    }
    /* optimizer.safetensors: the moments, and the f32 master weights when the model file is rounded */
    int k = 0;
    for (int i = 0; i < L->n_tensors && !st; i++) {
        const gm_train_tensor *t = &L->tensors[i];
        const char *suffix[3] = {"exp_avg", "exp_avg_sq", "master"};
        const float *src[3] = {o->exp_avg, o->exp_avg_sq, o->params};
        for (int s = 0; s < (o->dtype == GM_DT_F32 ? 2 : 3); s++) {
            st_entry *x = &e[k++];
            snprintf(x->name, sizeof x->name, "%s.%s", t->name, suffix[s]);
            x->data = src[s] + t->offset, x->numel = t->numel, x->ndim = t->ndim;
            x->shape[0] = t->shape[0], x->shape[1] = t->shape[1];
            x->dt = GM_DT_F32;
        }
    }
    if (!st && !(st = cw_open(&w, tmp, "optimizer.safetensors"))) {
        st = write_safetensors(&w, e, k, 0);
        if (st) cw_abort(&w);
        else if (!(st = cw_close(&w))) recs[n++] = w.rec;
    }
    free(e);
    if (st) return st;

    /* the tokenizer, byte for byte */
    if (o->tokenizer) {
        const char *nm = o->tokenizer_name && !strcmp(o->tokenizer_name, "tokenizer.json") ? "tokenizer.json"
                                                                                              : "tokenizer.model";
        if ((st = write_small(tmp, nm, o->tokenizer, o->tokenizer_len, &recs[n++]))) return st;
    }
    *n_recs = n;
    return GM_OK;
}

static gm_status write_state(const char *tmp, const gm_ckpt_write_opts *o, const file_rec *recs, int n_recs) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return gm_fail(GM_ERR_NOMEM, "out of memory");
    fprintf(f, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n", CKPT_FORMAT, CKPT_VERSION);
    fprintf(f, "  \"step\": %d,\n  \"updates\": %d,\n  \"consecutive_skips\": %d,\n", o->state.step, o->state.updates,
            o->state.skips);
    fprintf(f, "  \"seed\": %" PRIu64 ",\n", o->state.seed);
    fprintf(f, "  \"data_position\": %d,\n", o->state.step);
    fprintf(f, "  \"rng\": \"none: the init and every batch are functions of (seed, step)\",\n");
    fprintf(f, "  \"model_dtype\": \"%s\",\n", o->dtype == GM_DT_BF16 ? "BF16" : "F32");
    fprintf(f, "  \"n_params\": %zu,\n", o->layout.n_params);
    if (o->args_json) fprintf(f, "  \"args\": %s,\n", o->args_json);
    fprintf(f, "  \"files\": {");
    for (int i = 0; i < n_recs; i++)
        fprintf(f, "%s\n    \"%s\": {\"size\": %" PRIu64 ", \"crc32\": \"%08" PRIx32 "\"}", i ? "," : "", recs[i].name,
                recs[i].size, recs[i].crc);
    fprintf(f, "\n  },\n");
    fflush(f);
    /* the CRC of everything before this line, so the state file checks itself */
    uint32_t self = gm_crc32(0, text, len);
    fprintf(f, "  \"self_crc32\": \"%08" PRIx32 "\"\n}\n", self);
    fclose(f);
    if (!text) return gm_fail(GM_ERR_NOMEM, "out of memory");
    file_rec r;
    gm_status st = write_small(tmp, STATE_FILE, text, len, &r);
    free(text);
    return st;
}

gm_status gm_ckpt_write_dir(const char *dir, const gm_ckpt_write_opts *o) {
    if (o->dtype != GM_DT_F32 && o->dtype != GM_DT_BF16)
        return gm_fail(GM_ERR_ARG, "%s: checkpoint weights are F32 or BF16", dir);
    char parent[4096], base[256];
    split_path(dir, parent, sizeof parent, base, sizeof base);
    char tmpname[300], oldname[300];
    snprintf(tmpname, sizeof tmpname, ".%s.tmp", base);
    snprintf(oldname, sizeof oldname, ".%s.old", base);
    char *tmp = join(parent, tmpname), *old = join(parent, oldname);
    gm_status st = tmp && old ? GM_OK : gm_fail(GM_ERR_NOMEM, "out of memory");
    if (!st) st = remove_flat_dir(tmp); /* a previous interrupted write of the same step */
    if (!st && mkdir(tmp, 0755) != 0) st = gm_fail(GM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    file_rec recs[MAX_FILES];
    int n = 0;
    if (!st) st = write_files(tmp, o, recs, &n);
    if (!st) st = write_state(tmp, o, recs, n);
    if (!st) st = fsync_dir(tmp);
    if (!st) {
        /* an older copy of this step (a run resumed from before it): move it aside, then replace it */
        struct stat sb;
        int had = stat(dir, &sb) == 0;
        if (had) remove_flat_dir(old);
        if (had && rename(dir, old) != 0) st = gm_fail(GM_ERR_IO, "%s: cannot move aside: %s", dir, strerror(errno));
        else if (rename(tmp, dir) != 0)
            st = gm_fail(GM_ERR_IO, "%s: cannot rename into place: %s", dir, strerror(errno));
        if (!st) st = fsync_dir(parent);
        if (!st && had) remove_flat_dir(old);
    }
    if (st && tmp) remove_flat_dir(tmp);
    free(tmp);
    free(old);
    return st;
}

/* step of a "checkpoint-N" name, or -1 */
static long ckpt_step(const char *name) {
    if (strncmp(name, "checkpoint-", 11) != 0) return -1;
    const char *p = name + 11;
    if (!*p) return -1;
    long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || v > 100000000L) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

/* Keep the newest `keep` checkpoints at or before `step`; later ones (from a run resumed at an earlier
 * checkpoint) are left alone, as are any other files. */
static void prune(const char *out, int step, int keep) {
    if (keep <= 0) return;
    DIR *d = opendir(out);
    if (!d) return;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long s = ckpt_step(e->d_name);
        if (s < 0 || s > step) continue;
        if (n == cap) {
            long *p = realloc(steps, (cap = cap ? cap * 2 : 16) * sizeof *p);
            if (!p) break;
            steps = p;
        }
        steps[n++] = s;
    }
    closedir(d);
    qsort(steps, n, sizeof *steps, cmp_long);
    for (size_t i = 0; i + (size_t)keep < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "checkpoint-%ld", steps[i]);
        char *p = join(out, name);
        if (p) remove_flat_dir(p);
        free(p);
    }
    free(steps);
}

gm_status gm_ckpt_save(const char *out, const gm_ckpt_write_opts *o, int keep, char **written) {
    if (written) *written = NULL;
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return gm_fail(GM_ERR_IO, "%s: cannot create the output directory: %s", out, strerror(errno));
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%d", o->state.step);
    char *dir = join(out, name), *tmp_link = join(out, ".latest.tmp"), *link = join(out, "latest");
    gm_status st = dir && tmp_link && link ? GM_OK : gm_fail(GM_ERR_NOMEM, "out of memory");
    if (!st) st = gm_ckpt_write_dir(dir, o);
    if (!st) { /* latest -> checkpoint-STEP: a new link under a temporary name renamed over the old one */
        unlink(tmp_link);
        if (symlink(name, tmp_link) != 0) st = gm_fail(GM_ERR_IO, "%s: cannot create: %s", tmp_link, strerror(errno));
        else if (rename(tmp_link, link) != 0) st = gm_fail(GM_ERR_IO, "%s: cannot replace: %s", link, strerror(errno));
        if (!st) st = fsync_dir(out);
    }
    if (!st) prune(out, o->state.step, keep);
    if (!st && written) *written = dir, dir = NULL;
    free(dir);
    free(tmp_link);
    free(link);
    return st;
}

void gm_ckpt_clean_tmp(const char *out) {
    DIR *d = opendir(out);
    if (!d) return;
    struct dirent *e;
    char *names[64];
    int n = 0;
    while ((e = readdir(d)) && n < 64) {
        size_t l = strlen(e->d_name);
        if (!strncmp(e->d_name, ".checkpoint-", 12) && l > 4 &&
            (!strcmp(e->d_name + l - 4, ".tmp") || !strcmp(e->d_name + l - 4, ".old")))
            names[n++] = join(out, e->d_name);
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        if (names[i]) remove_flat_dir(names[i]);
        free(names[i]);
    }
    char *l = join(out, ".latest.tmp");
    if (l) unlink(l);
    free(l);
}

int gm_ckpt_any(const char *out, char *first, size_t cap) {
    DIR *d = opendir(out);
    if (!d) return 0;
    struct dirent *e;
    int any = 0;
    while ((e = readdir(d)) && !any)
        if (ckpt_step(e->d_name) >= 0) {
            any = 1;
            if (first && cap) snprintf(first, cap, "%s", e->d_name);
        }
    closedir(d);
    return any;
}

gm_status gm_ckpt_resolve(const char *path, char **dir) {
    *dir = NULL;
    char *state = join(path, STATE_FILE), *link = join(path, "latest"), *cfg = join(path, "config.json");
    gm_status st = state && link && cfg ? GM_OK : gm_fail(GM_ERR_NOMEM, "out of memory");
    struct stat sb;
    if (!st) {
        if (stat(state, &sb) == 0) {
            *dir = strdup(path);
        } else if (lstat(link, &sb) == 0) {
            char target[4096];
            ssize_t n = readlink(link, target, sizeof target - 1);
            if (n <= 0) st = gm_fail(GM_ERR_IO, "%s: cannot read the link: %s", link, strerror(errno));
            else {
                target[n] = 0;
                *dir = target[0] == '/' ? strdup(target) : join(path, target);
            }
        } else if (stat(path, &sb) != 0) {
            st = gm_fail(GM_ERR_IO, "%s: no such checkpoint or output directory", path);
        } else if (cfg && gm_file_exists(cfg)) {
            st = gm_fail(GM_ERR_FORMAT, "%s: a model directory, not a training checkpoint (no %s): to start from a "
                         "model, use --init", path, STATE_FILE);
        } else {
            st = gm_fail(GM_ERR_IO, "%s: no checkpoint here (neither %s nor a 'latest' link)", path, STATE_FILE);
        }
        if (!st && !*dir) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    free(state);
    free(link);
    free(cfg);
    return st;
}

/* ---- reading ----------------------------------------------------------------------------------- */

struct gm_ckpt {
    char *dir;
    gm_config cfg;
    gm_ckpt_state state;
    gm_dtype model_dt;
    size_t n_params;
    gm_json_doc *doc;
    const gm_json *args;
    char *tokenizer;
};

void gm_ckpt_close(gm_ckpt *c) {
    if (!c) return;
    free(c->dir);
    free(c->tokenizer);
    gm_json_free(c->doc);
    free(c);
}

const gm_config *gm_ckpt_config(const gm_ckpt *c) { return &c->cfg; }
const gm_ckpt_state *gm_ckpt_get_state(const gm_ckpt *c) { return &c->state; }
const gm_json *gm_ckpt_args(const gm_ckpt *c) { return c->args; }
const char *gm_ckpt_tokenizer(const gm_ckpt *c) { return c->tokenizer; }

/* Size and CRC of a file against what trainer_state.json says, reading it once in 4 MiB pieces. */
static gm_status verify_file(const char *path, uint64_t size, uint32_t crc) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return gm_fail(GM_ERR_FORMAT, "%s: missing from the checkpoint (%s lists it): %s", path, STATE_FILE,
                       strerror(errno));
    if ((uint64_t)sb.st_size != size)
        return gm_fail(GM_ERR_FORMAT, "%s: %lld bytes, the checkpoint wrote %" PRIu64 " (truncated or changed)", path,
                       (long long)sb.st_size, size);
    FILE *f = fopen(path, "rb");
    if (!f) return gm_fail(GM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    enum { BUF = 4 << 20 };
    unsigned char *buf = malloc(BUF);
    if (!buf) {
        fclose(f);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    uint32_t c = 0;
    uint64_t got = 0;
    size_t r;
    while ((r = fread(buf, 1, BUF, f)) > 0) c = gm_crc32(c, buf, r), got += r;
    int err = ferror(f);
    fclose(f);
    free(buf);
    if (err || got != size) return gm_fail(GM_ERR_IO, "%s: read failed after %" PRIu64 " bytes", path, got);
    if (c != crc)
        return gm_fail(GM_ERR_FORMAT, "%s: checksum mismatch (CRC-32 %08" PRIx32 ", the checkpoint wrote %08" PRIx32
                       "): the file is corrupt", path, c, crc);
    return GM_OK;
}

static int safe_name(const char *s) { return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, ".."); }

static gm_status get_int(const gm_json *o, const char *what, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    if (!gm_json_get_int(o, key, out) || *out < lo || *out > hi)
        return gm_fail(GM_ERR_FORMAT, "%s: field '%s' is missing or out of range", what, key);
    return GM_OK;
}

gm_status gm_ckpt_open(const char *dir, gm_ckpt **out) {
    *out = NULL;
    gm_ckpt *c = calloc(1, sizeof *c);
    if (!c) return gm_fail(GM_ERR_NOMEM, "out of memory");
    c->dir = strdup(dir);
    char *sp = join(dir, STATE_FILE), *text = NULL;
    size_t len = 0;
    gm_status st = c->dir && sp ? GM_OK : gm_fail(GM_ERR_NOMEM, "out of memory");
    struct stat sb;
    if (!st && stat(dir, &sb) != 0)
        st = gm_fail(GM_ERR_IO, "%s: no such checkpoint directory: %s", dir, strerror(errno));
    if (!st && !gm_file_exists(sp))
        st = gm_fail(GM_ERR_FORMAT, "%s: missing: %s is not a training checkpoint (to start from a model, use --init)",
                     sp, dir);
    if (!st) st = gm_file_read_all(sp, &text, &len);
    if (st) goto done;
    /* the self-check first: a damaged state file must not steer what else gets read */
    const char *key = "  \"self_crc32\": \"";
    const char *p = NULL;
    for (const char *q = text; (q = strstr(q, key)); q++) p = q;
    if (!p || (size_t)(p - text) + strlen(key) + 8 > len) {
        st = gm_fail(GM_ERR_FORMAT, "%s: no self_crc32 line: truncated or not written by gemma train", sp);
        goto done;
    }
    char want[9];
    memcpy(want, p + strlen(key), 8);
    want[8] = 0;
    if ((size_t)(p - text) + strlen(key) + 8 + 4 != len || memcmp(p + strlen(key) + 8, "\"\n}\n", 4) != 0) {
        st = gm_fail(GM_ERR_FORMAT, "%s: the text after its checksum line is damaged", sp);
        goto done;
    }
    char got[9];
    snprintf(got, sizeof got, "%08" PRIx32, gm_crc32(0, text, (size_t)(p - text)));
    if (strcmp(want, got) != 0) {
        st = gm_fail(GM_ERR_FORMAT, "%s: checksum mismatch (CRC-32 %s, the file says %s): the file is corrupt", sp, got,
                     want);
        goto done;
    }
    if ((st = gm_json_parse(text, len, sp, &c->doc))) goto done;
    const gm_json *root = gm_json_root(c->doc);
    const char *fmt = gm_json_get_str(root, "format");
    int64_t v, step, upd, skips, seed, np = 0;
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0) {
        st = gm_fail(GM_ERR_FORMAT, "%s: 'format' is not \"%s\"", sp, CKPT_FORMAT);
        goto done;
    }
    if ((st = get_int(root, sp, "version", 1, 1000, &v))) goto done;
    if (v != CKPT_VERSION) {
        st = gm_fail(GM_ERR_UNSUPPORTED, "%s: checkpoint version %lld (this build reads %d)", sp, (long long)v,
                     CKPT_VERSION);
        goto done;
    }
    if ((st = get_int(root, sp, "step", 0, INT32_MAX, &step)) || (st = get_int(root, sp, "updates", 0, step, &upd)) ||
        (st = get_int(root, sp, "consecutive_skips", 0, INT32_MAX, &skips)) ||
        (st = get_int(root, sp, "seed", 0, INT64_MAX, &seed)) ||
        (st = get_int(root, sp, "n_params", 0, INT64_MAX, &np)))
        goto done;
    c->state.step = (int)step, c->state.updates = (int)upd, c->state.skips = (int)skips, c->state.seed = (uint64_t)seed;
    c->n_params = (size_t)np;
    const char *mdt = gm_json_get_str(root, "model_dtype");
    if (mdt && !strcmp(mdt, "F32")) c->model_dt = GM_DT_F32;
    else if (mdt && !strcmp(mdt, "BF16")) c->model_dt = GM_DT_BF16;
    else {
        st = gm_fail(GM_ERR_FORMAT, "%s: 'model_dtype' must be \"F32\" or \"BF16\"", sp);
        goto done;
    }
    c->args = gm_json_get(root, "args");
    if (c->args && c->args->type != GM_JSON_OBJECT) c->args = NULL;
    const gm_json *files = gm_json_get(root, "files");
    if (!files || files->type != GM_JSON_OBJECT) {
        st = gm_fail(GM_ERR_FORMAT, "%s: missing object 'files'", sp);
        goto done;
    }
    const char *required[3] = {"config.json", "model.safetensors", "optimizer.safetensors"};
    for (int i = 0; i < 3; i++)
        if (!gm_json_get(files, required[i])) {
            st = gm_fail(GM_ERR_FORMAT, "%s: does not list %s", sp, required[i]);
            goto done;
        }
    for (size_t i = 0; i < files->len && !st; i++) {
        const gm_json_member *m = &files->members[i];
        int64_t size;
        const char *crc = gm_json_get_str(&m->value, "crc32");
        if (!safe_name(m->key) || !gm_json_get_int(&m->value, "size", &size) || size < 0 || !crc || strlen(crc) != 8) {
            st = gm_fail(GM_ERR_FORMAT, "%s: bad entry for file '%s'", sp, m->key);
            break;
        }
        char *fp = join(dir, m->key);
        if (!fp) {
            st = gm_fail(GM_ERR_NOMEM, "out of memory");
            break;
        }
        st = verify_file(fp, (uint64_t)size, (uint32_t)strtoul(crc, NULL, 16));
        if (!st && (!strcmp(m->key, "tokenizer.model") || !strcmp(m->key, "tokenizer.json")) && !c->tokenizer)
            c->tokenizer = fp, fp = NULL;
        free(fp);
    }
    if (st) goto done;
    char *cp = join(dir, "config.json");
    st = cp ? gm_config_load(cp, &c->cfg) : gm_fail(GM_ERR_NOMEM, "out of memory");
    free(cp);
done:
    free(sp);
    free(text);
    if (st) {
        gm_ckpt_close(c);
        return st;
    }
    *out = c;
    return GM_OK;
}

/* One tensor of a file: present, the dtype expected, the layout's shape; copied to dst as f32 (dst NULL:
 * only checked). */
static gm_status take(const gm_st_file *f, const char *name, const gm_train_tensor *t, gm_dtype want, float *dst) {
    const gm_st_tensor *x = gm_safetensors_find(f, name);
    const char *path = gm_safetensors_path(f);
    if (!x) return gm_fail(GM_ERR_FORMAT, "%s: no tensor '%s'", path, name);
    if (x->dtype != want)
        return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' is %s, expected %s", path, name, gm_dtype_info(x->dtype)->name,
                       gm_dtype_info(want)->name);
    int same = x->ndim == t->ndim;
    for (int d = 0; d < t->ndim && same; d++) same = x->shape[d] == t->shape[d];
    if (!same) {
        char a[64] = "[", b[64] = "[";
        for (int d = 0; d < x->ndim && d < 4; d++)
            snprintf(a + strlen(a), 64 - strlen(a), d ? ", %lld" : "%lld", (long long)x->shape[d]);
        for (int d = 0; d < t->ndim; d++)
            snprintf(b + strlen(b), 64 - strlen(b), d ? ", %lld" : "%lld", (long long)t->shape[d]);
        return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' has shape %s], the config implies %s]", path, name, a, b);
    }
    if (!dst) return GM_OK;
    if (want == GM_DT_F32) memcpy(dst, x->data, t->numel * sizeof(float));
    else {
        const uint16_t *h = x->data;
        for (size_t i = 0; i < t->numel; i++) dst[i] = gm_bf16_to_f32(h[i]);
    }
    return GM_OK;
}

gm_status gm_ckpt_load(gm_ckpt *c, const gm_ckpt_layout *L, float *params, float *exp_avg, float *exp_avg_sq) {
    if (L->n_params != c->n_params)
        return gm_fail(GM_ERR_FORMAT, "%s: the checkpoint holds %zu parameters, the model has %zu", c->dir, c->n_params,
                       L->n_params);
    char *mp = join(c->dir, "model.safetensors"), *op = join(c->dir, "optimizer.safetensors");
    gm_st_file *mf = NULL, *of = NULL;
    gm_status st = mp && op ? GM_OK : gm_fail(GM_ERR_NOMEM, "out of memory");
    int need_model = params && c->model_dt == GM_DT_F32;
    int need_opt = exp_avg || exp_avg_sq || (params && c->model_dt != GM_DT_F32);
    /* the model file is checked even when the parameters come from the master copy: it is what others load */
    if (!st) st = gm_safetensors_open(mp, 1, &mf);
    if (!st && need_opt) st = gm_safetensors_open(op, 1, &of);
    if (!st && gm_safetensors_count(mf) != (size_t)L->n_tensors)
        st = gm_fail(GM_ERR_FORMAT, "%s: %zu tensors, the config implies %d", mp, gm_safetensors_count(mf),
                     L->n_tensors);
    char name[160];
    for (int i = 0; i < L->n_tensors && !st; i++) {
        const gm_train_tensor *t = &L->tensors[i];
        st = take(mf, t->name, t, c->model_dt, need_model ? params + t->offset : NULL);
        if (!st && params && !need_model) {
            snprintf(name, sizeof name, "%s.master", t->name);
            st = take(of, name, t, GM_DT_F32, params + t->offset);
        }
        if (!st && exp_avg) {
            snprintf(name, sizeof name, "%s.exp_avg", t->name);
            st = take(of, name, t, GM_DT_F32, exp_avg + t->offset);
        }
        if (!st && exp_avg_sq) {
            snprintf(name, sizeof name, "%s.exp_avg_sq", t->name);
            st = take(of, name, t, GM_DT_F32, exp_avg_sq + t->offset);
        }
    }
    gm_safetensors_close(mf);
    gm_safetensors_close(of);
    free(mp);
    free(op);
    return st;
}
