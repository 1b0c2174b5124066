/* SFT data (train/sft.h): records → conversations → chat-formatted token ids with a loss mask on the model
 * turns. The turn texts come from gm_chat_format itself (one or two messages at a time), so trimming and
 * the system fold are the formatter's, never a second copy of its rules. */
#include "train/sft.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "train/dist.h"
#include "train/model_train.h"

/* ---- small helpers ------------------------------------------------------------------------------- */

uint64_t gm_align_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double gm_align_uniform(uint64_t *s) { return (double)(gm_align_rand(s) >> 11) * (1.0 / 9007199254740992.0); }

void gm_align_shuffle(int *idx, int n, uint64_t *s) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(gm_align_rand(s) % (uint64_t)(i + 1));
        int t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
}

gm_status gm_align_tokenizer_path(const char *given, const char *model_dir, char **path) {
    *path = NULL;
    if (given) {
        if (!gm_file_exists(given)) return gm_fail(GM_ERR_IO, "%s: tokenizer file not found", given);
        *path = strdup(given);
        return *path ? GM_OK : gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    const char *names[2] = {"tokenizer.model", "tokenizer.json"};
    for (int i = 0; i < 2 && model_dir; i++) {
        char *p = gm_path_join(model_dir, names[i]);
        if (p && gm_file_exists(p)) {
            *path = p;
            return GM_OK;
        }
        free(p);
    }
    return gm_fail(GM_ERR_ARG, "%s has no tokenizer.model or tokenizer.json: give --tokenizer FILE",
                   model_dir ? model_dir : "the model");
}

gm_status gm_align_load_model(gm_dist *dist, const char *path, const gm_train_opts *o, gm_train_model **out) {
    *out = NULL;
    gm_model *src = NULL;
    gm_load_options lo = gm_load_options_default();
    gm_status st = gm_model_load(path, &lo, &src);
    if (st) return st;
    if (!dist) {
        st = gm_train_model_from_model(src, o, out);
    } else {
        /* the full f32 parameters once, then each rank keeps its shard */
        gm_train_opts one = gm_train_opts_default(1, 1, o->n_threads);
        gm_train_model *full = NULL;
        st = gm_train_model_from_model(src, &one, &full);
        if (!st) st = gm_dist_model_new(dist, gm_model_config(src), o, out);
        if (!st) st = gm_dist_model_scatter(dist, *out, full->params);
        gm_train_model_free(full);
    }
    gm_model_free(src);
    if (st) {
        gm_train_model_free(*out);
        *out = NULL;
    }
    return st;
}

/* ---- conversations ------------------------------------------------------------------------------- */

void gm_sft_conv_clear(gm_sft_conv *c) {
    for (size_t i = 0; i < c->n_owned; i++) free(c->owned[i]);
    free(c->owned);
    free(c->msgs);
    memset(c, 0, sizeof *c);
}

static gm_status conv_add(gm_sft_conv *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 8;
        gm_chat_message *m = realloc(c->msgs, nc * sizeof *m);
        if (!m) return gm_fail(GM_ERR_NOMEM, "out of memory");
        c->msgs = m, c->cap = nc;
    }
    c->msgs[c->n].role = role;
    c->msgs[c->n].content = content;
    c->n++;
    return GM_OK;
}

/* A NUL-terminated copy of a..a+n (or of the concatenation a + sep + b when b is given) owned by c. */
static const char *conv_own(gm_sft_conv *c, const char *a, size_t na, const char *sep, const char *b, size_t nb) {
    if (c->n_owned == c->cap_owned) {
        size_t nc = c->cap_owned ? c->cap_owned * 2 : 8;
        char **o = realloc(c->owned, nc * sizeof *o);
        if (!o) return NULL;
        c->owned = o, c->cap_owned = nc;
    }
    size_t ns = b ? strlen(sep) : 0;
    char *s = malloc(na + ns + (b ? nb : 0) + 1);
    if (!s) return NULL;
    memcpy(s, a, na);
    if (b) {
        memcpy(s + na, sep, ns);
        memcpy(s + na + ns, b, nb);
    }
    s[na + ns + (b ? nb : 0)] = 0;
    c->owned[c->n_owned++] = s;
    return s;
}

static const gm_json *get_str(const gm_json *o, const char *key) {
    const gm_json *v = gm_json_get(o, key);
    return v && v->type == GM_JSON_STRING ? v : NULL;
}

/* A member present with the wrong type is a fault worth naming (a missing one just selects another shape). */
static int wrong_type(const gm_json *o, const char *key, gm_json_type want) {
    const gm_json *v = gm_json_get(o, key);
    return v && v->type != want;
}

static const char *TYPE_NAMES[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};

static gm_status messages_conv(const gm_json *arr, const char *key, gm_sft_conv *c) {
    if (arr->type != GM_JSON_ARRAY)
        return gm_fail(GM_ERR_FORMAT, "\"%s\" is %s, not an array", key, TYPE_NAMES[arr->type]);
    if (arr->len == 0) return gm_fail(GM_ERR_FORMAT, "\"%s\" is empty", key);
    for (size_t i = 0; i < arr->len; i++) {
        const gm_json *m = &arr->items[i];
        if (m->type != GM_JSON_OBJECT) return gm_fail(GM_ERR_FORMAT, "\"%s\"[%zu] is not an object", key, i);
        const gm_json *r = gm_json_get(m, "role"), *t = gm_json_get(m, "content");
        if (!r || r->type != GM_JSON_STRING)
            return gm_fail(GM_ERR_FORMAT, "\"%s\"[%zu] has no \"role\" string", key, i);
        if (!t || t->type != GM_JSON_STRING)
            return gm_fail(GM_ERR_FORMAT, "\"%s\"[%zu] (%s) has no \"content\" string", key, i, r->str);
        if (strlen(t->str) != t->len || strlen(r->str) != r->len)
            return gm_fail(GM_ERR_FORMAT, "\"%s\"[%zu] contains a NUL character (\\u0000)", key, i);
        const char *role = r->str;
        if (strcmp(role, "user") && strcmp(role, "model") && strcmp(role, "assistant") && strcmp(role, "system"))
            return gm_fail(GM_ERR_FORMAT, "\"%s\"[%zu] has role \"%s\" (expected user, model, assistant or system)",
                           key, i, role);
        gm_status st = conv_add(c, role, t->str);
        if (st) return st;
    }
    return GM_OK;
}

static gm_status text_field(const gm_json *rec, const char *key, const char **out) {
    const gm_json *v = get_str(rec, key), *any = gm_json_get(rec, key);
    if (!any) return gm_fail(GM_ERR_FORMAT, "\"%s\" is missing", key);
    if (!v) return gm_fail(GM_ERR_FORMAT, "\"%s\" is %s, not a string", key, TYPE_NAMES[any->type]);
    if (strlen(v->str) != v->len) return gm_fail(GM_ERR_FORMAT, "\"%s\" contains a NUL character (\\u0000)", key);
    *out = v->str;
    return GM_OK;
}

gm_status gm_sft_hh_conv(const char *text, size_t len, gm_sft_conv *c) {
    static const char *H = "Human:", *A = "Assistant:";
    size_t i = 0;
    /* the dialogue starts at its first marker; HH writes "\n\n" before every turn, the first included */
    while (i < len && (text[i] == '\n' || text[i] == ' ')) i++;
    if (len - i < 6 || strncmp(text + i, H, 6) != 0)
        return gm_fail(GM_ERR_FORMAT, "Anthropic HH text must start with \"\\n\\nHuman:\"");
    int turn = 0;
    while (i < len) {
        int user = !strncmp(text + i, H, 6);
        size_t start = i + (user ? 6 : 10);
        /* the turn runs to the next "\n\nHuman:" or "\n\nAssistant:" */
        size_t end = start;
        while (end < len) {
            if (text[end] == '\n' && end + 1 < len && text[end + 1] == '\n') {
                size_t k = end + 2;
                if ((len - k >= 6 && !strncmp(text + k, H, 6)) || (len - k >= 10 && !strncmp(text + k, A, 10))) break;
            }
            end++;
        }
        if (user != (turn % 2 == 0))
            return gm_fail(GM_ERR_FORMAT, "Anthropic HH turn %d is from the %s, but turns must alternate Human, "
                           "Assistant", turn + 1, user ? "Human" : "Assistant");
        const char *s = conv_own(c, text + start, end - start, NULL, NULL, 0);
        if (!s) return gm_fail(GM_ERR_NOMEM, "out of memory");
        if (strlen(s) != end - start) return gm_fail(GM_ERR_FORMAT, "Anthropic HH text contains a NUL character");
        gm_status st = conv_add(c, user ? "user" : "model", s);
        if (st) return st;
        turn++;
        i = end < len ? end + 2 : len;
    }
    return GM_OK;
}

gm_status gm_sft_pref_conv(const gm_json *rec, const char *side, gm_sft_conv *c) {
    if (rec->type != GM_JSON_OBJECT) return gm_fail(GM_ERR_FORMAT, "the record is not a JSON object");
    const gm_json *s = gm_json_get(rec, side), *p = gm_json_get(rec, "prompt");
    if (!s) return gm_fail(GM_ERR_FORMAT, "no \"%s\" field", side);
    if (s->type != GM_JSON_STRING && s->type != GM_JSON_ARRAY)
        return gm_fail(GM_ERR_FORMAT, "\"%s\" is %s, not a string or a list of messages", side, TYPE_NAMES[s->type]);
    gm_status st = GM_OK;
    if (p) {
        if (p->type == GM_JSON_STRING) {
            if (strlen(p->str) != p->len) return gm_fail(GM_ERR_FORMAT, "\"prompt\" contains a NUL character");
            st = conv_add(c, "user", p->str);
        } else if (p->type == GM_JSON_ARRAY) {
            st = messages_conv(p, "prompt", c);
        } else {
            return gm_fail(GM_ERR_FORMAT, "\"prompt\" is %s, not a string or a list of messages", TYPE_NAMES[p->type]);
        }
        if (st) return st;
        if (s->type == GM_JSON_STRING) {
            if (strlen(s->str) != s->len) return gm_fail(GM_ERR_FORMAT, "\"%s\" contains a NUL character", side);
            return conv_add(c, "model", s->str);
        }
        return messages_conv(s, side, c);
    }
    if (s->type == GM_JSON_ARRAY) return messages_conv(s, side, c);
    st = gm_sft_hh_conv(s->str, s->len, c);
    return st ? gm_fail_prefix(st, "\"%s\": ", side) : GM_OK;
}

int gm_sft_record_conv(const gm_json *rec, size_t k, gm_sft_conv *c) {
    gm_sft_conv_clear(c);
    if (rec->type != GM_JSON_OBJECT) {
        gm_fail(GM_ERR_FORMAT, "the record is %s, not a JSON object", TYPE_NAMES[rec->type]);
        return -1;
    }
    const gm_json *v;
    const char *a = NULL, *b = NULL;
    if ((v = gm_json_get(rec, "messages"))) return messages_conv(v, "messages", c) ? -1 : 1;
    if (gm_json_get(rec, "chosen")) return gm_sft_pref_conv(rec, "chosen", c) ? -1 : 1;
    if (gm_json_get(rec, "instruction")) {
        if (text_field(rec, "instruction", &a)) return -1;
        const gm_json *inst = gm_json_get(rec, "instances");
        const gm_json *item = rec;
        int count = 1;
        if (!gm_json_get(rec, "output") && inst) {
            if (inst->type != GM_JSON_ARRAY || inst->len == 0) {
                gm_fail(GM_ERR_FORMAT, "\"instances\" is not a non-empty array");
                return -1;
            }
            if (k >= inst->len) {
                gm_fail(GM_ERR_ARG, "instance %zu of %zu", k, inst->len);
                return -1;
            }
            item = &inst->items[k];
            count = (int)inst->len;
            if (item->type != GM_JSON_OBJECT) {
                gm_fail(GM_ERR_FORMAT, "\"instances\"[%zu] is not an object", k);
                return -1;
            }
        }
        const char *in = NULL, *out = NULL;
        if (wrong_type(item, "input", GM_JSON_STRING)) {
            gm_fail(GM_ERR_FORMAT, "\"input\" is %s, not a string", TYPE_NAMES[gm_json_get(item, "input")->type]);
            return -1;
        }
        if (get_str(item, "input") && text_field(item, "input", &in)) return -1;
        if (text_field(item, "output", &out)) return -1;
        const char *user = a;
        if (in && *in) {
            user = conv_own(c, a, strlen(a), "\n\n", in, strlen(in));
            if (!user) {
                gm_fail(GM_ERR_NOMEM, "out of memory");
                return -1;
            }
        }
        if (conv_add(c, "user", user) || conv_add(c, "model", out)) return -1;
        return count;
    }
    static const char *PAIRS[][3] = {{"prompt", "response", NULL}, {"prompt", "completion", NULL},
                                     {"question", "answer", NULL}};
    for (size_t i = 0; i < sizeof PAIRS / sizeof PAIRS[0]; i++) {
        if (!gm_json_get(rec, PAIRS[i][0]) || !gm_json_get(rec, PAIRS[i][1])) continue;
        if (text_field(rec, PAIRS[i][0], &a) || text_field(rec, PAIRS[i][1], &b)) return -1;
        if (conv_add(c, "user", a) || conv_add(c, "model", b)) return -1;
        return 1;
    }
    gm_fail(GM_ERR_FORMAT, "no known fields: expected \"messages\", \"instruction\" + \"output\", \"prompt\" + "
            "\"response\", \"question\" + \"answer\" or \"chosen\"");
    return -1;
}

gm_status gm_sft_prompt_conv(const gm_json *rec, gm_sft_conv *c) {
    gm_sft_conv_clear(c);
    if (rec->type != GM_JSON_OBJECT)
        return gm_fail(GM_ERR_FORMAT, "the record is %s, not a JSON object", TYPE_NAMES[rec->type]);
    const gm_json *p = gm_json_get(rec, "prompt");
    gm_status st = GM_OK;
    if (p && p->type == GM_JSON_STRING) {
        if (strlen(p->str) != p->len) return gm_fail(GM_ERR_FORMAT, "\"prompt\" contains a NUL character");
        st = conv_add(c, "user", p->str);
    } else if (p && p->type == GM_JSON_ARRAY) {
        st = messages_conv(p, "prompt", c);
    } else if (p) {
        return gm_fail(GM_ERR_FORMAT, "\"prompt\" is %s, not a string or a list of messages", TYPE_NAMES[p->type]);
    } else if (gm_json_get(rec, "instruction") && !gm_json_get(rec, "output") && !gm_json_get(rec, "instances")) {
        const char *a = NULL, *in = NULL;
        if (text_field(rec, "instruction", &a)) return GM_ERR_FORMAT;
        if (get_str(rec, "input") && text_field(rec, "input", &in)) return GM_ERR_FORMAT;
        const char *u = in && *in ? conv_own(c, a, strlen(a), "\n\n", in, strlen(in)) : a;
        if (!u) return gm_fail(GM_ERR_NOMEM, "out of memory");
        st = conv_add(c, "user", u);
    } else if (gm_sft_record_conv(rec, 0, c) < 0) {
        return GM_ERR_FORMAT;
    }
    if (st) return st;
    while (c->n > 0 && strcmp(c->msgs[c->n - 1].role, "user")) c->n--;
    if (c->n == 0 || (c->n == 1 && !strcmp(c->msgs[0].role, "system")))
        return gm_fail(GM_ERR_FORMAT, "the record has no user turn to answer");
    return GM_OK;
}

/* ---- tokenizing ---------------------------------------------------------------------------------- */

typedef struct {
    int32_t *ids;
    uint8_t *mask;
    int n, cap;
} tokbuf;

static gm_status tb_put(tokbuf *t, const int32_t *ids, size_t n, uint8_t m) {
    if (n > (size_t)(1 << 30) || (size_t)t->n + n > (size_t)(1 << 30))
        return gm_fail(GM_ERR_ARG, "conversation longer than 2^30 tokens");
    if (t->n + (int)n > t->cap) {
        int nc = t->cap ? t->cap : 256;
        while (nc < t->n + (int)n) nc *= 2;
        int32_t *a = realloc(t->ids, sizeof(int32_t) * (size_t)nc);
        if (!a) return gm_fail(GM_ERR_NOMEM, "out of memory");
        t->ids = a;
        uint8_t *b = realloc(t->mask, (size_t)nc);
        if (!b) return gm_fail(GM_ERR_NOMEM, "out of memory");
        t->mask = b, t->cap = nc;
    }
    memcpy(t->ids + t->n, ids, sizeof(int32_t) * n);
    memset(t->mask + t->n, m, n);
    t->n += (int)n;
    return GM_OK;
}

static gm_status tb_text(tokbuf *t, const gm_tokenizer *tok, const char *s, size_t len, uint8_t m) {
    int32_t *ids = NULL;
    size_t n = 0;
    /* no special-token parsing: a literal "<eos>" in data stays text, as SentencePiece encodes it */
    gm_status st = gm_tokenizer_encode(tok, s, len, 0, &ids, &n);
    if (!st) st = tb_put(t, ids, n, m);
    free(ids);
    return st;
}

/* The content the formatter renders for turn j (trimmed; the system text folded into the first user turn):
 * format one or two messages and cut the known template around it. */
static gm_status turn_text(const gm_chat_message *msgs, size_t first, size_t j, char **buf, const char **text,
                           size_t *len) {
    static const char *UHEAD = "<bos><start_of_turn>user\n",
                      *MHEAD = "<bos><start_of_turn>user\n<end_of_turn>\n<start_of_turn>model\n",
                      *TAIL = "<end_of_turn>\n";
    gm_chat_message two[2];
    size_t k = 0;
    int user = !strcmp(msgs[j].role, "user");
    if (user && j == first && first == 1) two[k++] = msgs[0];
    if (!user) two[k].role = "user", two[k++].content = "";
    two[k++] = msgs[j];
    size_t n = 0;
    gm_status st = gm_chat_format(two, k, 0, buf, &n);
    if (st) return st;
    const char *head = user ? UHEAD : MHEAD;
    size_t nh = strlen(head), nt = strlen(TAIL);
    if (n < nh + nt || memcmp(*buf, head, nh) || memcmp(*buf + n - nt, TAIL, nt))
        return gm_fail(GM_ERR_UNSUPPORTED, "gm_chat_format rendered a turn in an unexpected template");
    *text = *buf + nh;
    *len = n - nh - nt;
    return GM_OK;
}

/* mode 0: training example (ends with a model turn, masks set); 1: generation prompt (ends with a user
 * turn, then "<start_of_turn>model\n"). */
static gm_status encode_conv(const gm_tokenizer *tok, const gm_chat_message *msgs, size_t n, int mode,
                             int no_final_newline, tokbuf *t) {
    if (!tok) return gm_fail(GM_ERR_ARG, "chat formatting needs a tokenizer");
    int32_t sot = gm_tokenizer_piece_id(tok, "<start_of_turn>"), eot = gm_tokenizer_piece_id(tok, "<end_of_turn>");
    if (sot < 0 || eot < 0)
        return gm_fail(GM_ERR_UNSUPPORTED, "the tokenizer has no <start_of_turn> / <end_of_turn> pieces: the chat "
                       "format needs a Gemma tokenizer");
    if (n == 0) return gm_fail(GM_ERR_FORMAT, "the conversation has no messages");
    /* the formatter's own checks (roles known, alternation, system placement) on the whole conversation */
    char *all = NULL;
    gm_status st = gm_chat_format(msgs, n, 0, &all, NULL);
    free(all);
    if (st) {
        /* the message lives in the buffer gm_fail writes: copy it out first */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", gm_last_error());
        return gm_fail(GM_ERR_FORMAT, "%s", msg + (strncmp(msg, "chat: ", 6) ? 0 : 6));
    }
    int last_user = !strcmp(msgs[n - 1].role, "user");
    if (mode == 0 && last_user)
        return gm_fail(GM_ERR_FORMAT, "the conversation ends with a user turn (message %zu): a training example must "
                       "end with the model's answer", n - 1);
    if (mode == 1 && !last_user)
        return gm_fail(GM_ERR_FORMAT, "a prompt must end with a user turn (message %zu is %s)", n - 1,
                       msgs[n - 1].role);
    size_t first = !strcmp(msgs[0].role, "system") ? 1 : 0;
    int32_t bos = gm_tokenizer_bos(tok);
    if (bos < 0) return gm_fail(GM_ERR_UNSUPPORTED, "the tokenizer has no <bos> piece");
    st = tb_put(t, &bos, 1, 0);
    for (size_t j = first; j < n && !st; j++) {
        char *buf = NULL;
        const char *text = "";
        size_t len = 0;
        st = turn_text(msgs, first, j, &buf, &text, &len);
        int user = !strcmp(msgs[j].role, "user");
        if (!st) st = tb_put(t, &sot, 1, 0);
        if (!st && user) {
            /* "user\n" + content is one run between two frozen turn markers, as in the whole formatted text */
            char *u = malloc(len + 6);
            if (!u) st = gm_fail(GM_ERR_NOMEM, "out of memory");
            if (!st) {
                memcpy(u, "user\n", 5);
                memcpy(u + 5, text, len);
                st = tb_text(t, tok, u, len + 5, 0);
            }
            free(u);
            if (!st) st = tb_put(t, &eot, 1, 0);
        } else if (!st) {
            st = tb_text(t, tok, "model\n", 6, 0);
            if (!st) st = tb_text(t, tok, text, len, mode == 0);
            if (!st) st = tb_put(t, &eot, 1, mode == 0);
        }
        if (!st && !(no_final_newline && j == n - 1)) st = tb_text(t, tok, "\n", 1, 0);
        free(buf);
        if (st) st = gm_fail_prefix(st, "message %zu (%s): ", j, msgs[j].role);
    }
    if (!st && mode == 1) {
        st = tb_put(t, &sot, 1, 0);
        if (!st) st = tb_text(t, tok, "model\n", 6, 0);
    }
    return st;
}

gm_status gm_sft_encode(const gm_tokenizer *tok, const gm_chat_message *msgs, size_t n, int no_final_newline,
                        gm_sft_example *out) {
    memset(out, 0, sizeof *out);
    tokbuf t = {0};
    gm_status st = encode_conv(tok, msgs, n, 0, no_final_newline, &t);
    if (st) {
        free(t.ids);
        free(t.mask);
        return st;
    }
    out->ids = t.ids, out->mask = t.mask, out->n = t.n;
    for (int i = 0; i < t.n; i++) out->n_loss += t.mask[i];
    return GM_OK;
}

gm_status gm_sft_encode_prompt(const gm_tokenizer *tok, const gm_chat_message *msgs, size_t n, int32_t **ids,
                               int *n_ids) {
    *ids = NULL, *n_ids = 0;
    tokbuf t = {0};
    gm_status st = encode_conv(tok, msgs, n, 1, 0, &t);
    free(t.mask);
    if (st) {
        free(t.ids);
        return st;
    }
    *ids = t.ids, *n_ids = t.n;
    return GM_OK;
}

void gm_sft_example_free(gm_sft_example *e) {
    free(e->ids);
    free(e->mask);
    memset(e, 0, sizeof *e);
}

/* ---- data sets ----------------------------------------------------------------------------------- */

static gm_status data_push(gm_sft_data *d, gm_sft_example *e) {
    if (d->n == d->cap) {
        int nc = d->cap ? d->cap * 2 : 64;
        gm_sft_example *x = realloc(d->ex, sizeof *x * (size_t)nc);
        if (!x) return gm_fail(GM_ERR_NOMEM, "out of memory");
        d->ex = x, d->cap = nc;
    }
    d->ex[d->n++] = *e;
    d->n_tokens += (size_t)e->n;
    d->n_loss_tokens += (size_t)e->n_loss;
    memset(e, 0, sizeof *e);
    return GM_OK;
}

void gm_sft_data_free(gm_sft_data *d) {
    for (int i = 0; i < d->n; i++) gm_sft_example_free(&d->ex[i]);
    free(d->ex);
    memset(d, 0, sizeof *d);
}

static void report(const gm_sft_load_opts *o, int *reports, const char *what) {
    if (!o->log) return;
    int cap = o->max_reports > 0 ? o->max_reports : 20;
    if (*reports < cap) fprintf(o->log, "%s: skipped\n", what);
    else if (*reports == cap) fprintf(o->log, "(more skipped records are counted, not listed)\n");
    (*reports)++;
}

gm_status gm_align_each_record(const char *path, const gm_sft_load_opts *o, gm_align_record_fn fn, void *ctx,
                               long *n_records, long *n_bad) {
    *n_records = 0, *n_bad = 0;
    char *text = NULL;
    size_t len = 0;
    gm_status st = gm_file_read_all(path, &text, &len);
    if (st) return st;
    int reports = 0;
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
    char where[512];
    if (i < len && text[i] == '[') {
        /* a JSON array of records (Alpaca's and Code Alpaca's own files) */
        gm_json_doc *doc = NULL;
        st = gm_json_parse(text, len, path, &doc);
        const gm_json *root = doc ? gm_json_root(doc) : NULL;
        for (size_t r = 0; !st && r < root->len; r++) {
            snprintf(where, sizeof where, "%s: record %zu", path, r + 1);
            (*n_records)++;
            gm_status rs = fn(ctx, &root->items[r], where, (long)r + 1);
            if (rs == GM_ERR_NOMEM || (rs && o->on_bad == GM_ON_BAD_STOP)) st = rs;
            else if (rs) (*n_bad)++, report(o, &reports, gm_last_error());
        }
        gm_json_free(doc);
    } else {
        long line = 0;
        for (size_t p = 0; p < len && !st;) {
            size_t e = p;
            while (e < len && text[e] != '\n') e++;
            line++;
            size_t b = p;
            while (b < e && (text[b] == ' ' || text[b] == '\t' || text[b] == '\r')) b++;
            if (b < e) {
                snprintf(where, sizeof where, "%s:%ld", path, line);
                (*n_records)++;
                gm_json_doc *doc = NULL;
                gm_status rs = gm_json_parse(text + p, e - p, where, &doc);
                if (!rs) rs = fn(ctx, gm_json_root(doc), where, line);
                else if (rs != GM_ERR_NOMEM) rs = GM_ERR_FORMAT;
                gm_json_free(doc);
                if (rs == GM_ERR_NOMEM || (rs && o->on_bad == GM_ON_BAD_STOP)) st = rs;
                else if (rs) (*n_bad)++, report(o, &reports, gm_last_error());
            }
            p = e + 1;
        }
    }
    free(text);
    return st;
}

typedef struct {
    const gm_tokenizer *tok;
    const gm_sft_load_opts *o;
    gm_sft_data *d;
    int reports;
} sft_ctx;

/* One record → its examples: all of them or, on a fault (returned located), none. */
static gm_status load_record(void *vctx, const gm_json *rec, const char *where, long line) {
    sft_ctx *x = vctx;
    gm_sft_data *d = x->d;
    const gm_sft_load_opts *o = x->o;
    gm_sft_conv c = {0};
    int count = gm_sft_record_conv(rec, 0, &c);
    gm_status st = count < 0 ? GM_ERR_FORMAT : GM_OK;
    gm_sft_example *tmp = count > 0 ? calloc((size_t)count, sizeof *tmp) : NULL;
    if (count > 0 && !tmp) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    for (int k = 0; k < count && !st; k++) {
        if (k > 0 && gm_sft_record_conv(rec, (size_t)k, &c) < 0) st = GM_ERR_FORMAT;
        if (!st) st = gm_sft_encode(x->tok, c.msgs, c.n, 0, &tmp[k]);
        if (st && count > 1) st = gm_fail_prefix(st, "instance %d: ", k);
    }
    gm_sft_conv_clear(&c);
    for (int k = 0; k < count && !st; k++) {
        gm_sft_example *e = &tmp[k];
        e->line = line;
        if (o->max_len > 0 && e->n > o->max_len) {
            int left = 0;
            for (int i = 0; i < o->max_len; i++) left += e->mask[i];
            if (!left) {
                d->n_too_long++;
                char msg[640];
                snprintf(msg, sizeof msg, "%s: no model token within the first %d tokens (%d in all)", where,
                         o->max_len, e->n);
                report(o, &x->reports, msg);
                gm_sft_example_free(e);
                continue;
            }
            e->n = o->max_len, e->n_loss = left;
            d->n_truncated++;
        }
        st = data_push(d, e);
    }
    for (int k = 0; k < count; k++) gm_sft_example_free(&tmp[k]);
    free(tmp);
    if (st == GM_ERR_NOMEM) return st;
    return st ? gm_fail_prefix(GM_ERR_FORMAT, "%s: ", where) : GM_OK;
}

gm_status gm_sft_load(const char *path, const gm_tokenizer *tok, const gm_sft_load_opts *o, gm_sft_data *out) {
    memset(out, 0, sizeof *out);
    sft_ctx x = {tok, o, out, 0};
    gm_status st = gm_align_each_record(path, o, load_record, &x, &out->n_records, &out->n_bad);
    if (!st && out->n == 0)
        st = gm_fail(GM_ERR_FORMAT, "%s: no usable examples (%ld records, %ld bad, %ld too long)", path,
                     out->n_records, out->n_bad, out->n_too_long);
    if (st) gm_sft_data_free(out);
    return st;
}

gm_status gm_align_holdout(int n, double frac, uint64_t seed, unsigned char **held) {
    *held = NULL;
    if (!(frac >= 0 && frac < 1)) return gm_fail(GM_ERR_ARG, "held-out fraction %g is not in [0, 1)", frac);
    int k = (int)(frac * n + 0.5);
    if (frac > 0 && k == 0 && n >= 2) k = 1;
    if (k == 0) return GM_OK;
    int *idx = malloc(sizeof(int) * (size_t)n);
    unsigned char *h = calloc((size_t)n, 1);
    if (!idx || !h) {
        free(idx);
        free(h);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) idx[i] = i;
    gm_align_shuffle(idx, n, &seed);
    for (int i = 0; i < k; i++) h[idx[i]] = 1;
    free(idx);
    *held = h;
    return GM_OK;
}

gm_status gm_sft_split(gm_sft_data *d, double frac, uint64_t seed, gm_sft_data *eval) {
    memset(eval, 0, sizeof *eval);
    unsigned char *held = NULL;
    gm_status st = gm_align_holdout(d->n, frac, seed, &held);
    if (st || !held) return st;
    int w = 0;
    size_t tok = 0, loss = 0;
    for (int i = 0; i < d->n; i++) {
        if (held[i] && !st) {
            st = data_push(eval, &d->ex[i]);
            if (!st) continue;
        }
        tok += (size_t)d->ex[i].n, loss += (size_t)d->ex[i].n_loss;
        d->ex[w++] = d->ex[i];
    }
    d->n = w, d->n_tokens = tok, d->n_loss_tokens = loss;
    free(held);
    return st;
}

void gm_sft_batch(const gm_sft_example *const *rows, int B, int T, int32_t pad, int32_t *inputs, int32_t *targets) {
    for (int b = 0; b < B; b++) {
        const gm_sft_example *e = rows[b];
        int32_t *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        int n = e ? e->n : 0;
        for (int t = 0; t < T; t++) {
            in[t] = t < n ? e->ids[t] : pad;
            tg[t] = t + 1 < n && e->mask[t + 1] ? e->ids[t + 1] : -1;
        }
    }
}

/* ---- packing ------------------------------------------------------------------------------------- */

int gm_sft_positions(const gm_sft_example *e, int T) {
    int n = e->n < T + 1 ? e->n : T + 1;
    return n > 1 ? n - 1 : 1; /* a lone <bos> (never loaded: no trained token) still takes its place */
}

void gm_sft_packing_free(gm_sft_packing *p) {
    free(p->items);
    free(p->row_start);
    free(p->row_len);
    memset(p, 0, sizeof *p);
}

/* First-fit needs "the lowest row with room >= need" per example: a max-tree over the room of n candidate rows
 * (at most n are ever opened; unopened ones have room T, so opening a row is finding the first of those). */
gm_status gm_sft_pack(const gm_sft_example *ex, const int *order, int n, int T, gm_sft_packing *out) {
    memset(out, 0, sizeof *out);
    if (T < 1) return gm_fail(GM_ERR_ARG, "packing rows of %d positions (need at least 1)", T);
    if (n < 0) return gm_fail(GM_ERR_ARG, "packing %d examples", n);
    size_t leaves = 1;
    while (leaves < (size_t)n) leaves *= 2;
    int *tree = malloc(sizeof(int) * 2 * leaves), *row_of = malloc(sizeof(int) * ((size_t)n + 1));
    out->items = malloc(sizeof(int) * ((size_t)n + 1));
    out->row_start = calloc((size_t)n + 2, sizeof(int));
    out->row_len = calloc((size_t)n + 1, sizeof(int));
    if (!tree || !row_of || !out->items || !out->row_start || !out->row_len) {
        free(tree);
        free(row_of);
        gm_sft_packing_free(out);
        return gm_fail(GM_ERR_NOMEM, "out of memory packing %d examples", n);
    }
    for (size_t i = 0; i < leaves; i++) tree[leaves + i] = i < (size_t)n ? T : 0;
    for (size_t i = leaves - 1; i >= 1; i--) tree[i] = tree[2 * i] > tree[2 * i + 1] ? tree[2 * i] : tree[2 * i + 1];
    int rows = 0;
    for (int i = 0; i < n; i++) {
        int need = gm_sft_positions(&ex[order ? order[i] : i], T);
        size_t v = 1;
        while (v < leaves) v = tree[2 * v] >= need ? 2 * v : 2 * v + 1;
        int row = (int)(v - leaves);
        row_of[i] = row;
        if (row + 1 > rows) rows = row + 1;
        out->row_len[row] += need;
        for (tree[v] -= need, v /= 2; v >= 1; v /= 2)
            tree[v] = tree[2 * v] > tree[2 * v + 1] ? tree[2 * v] : tree[2 * v + 1];
    }
    /* counting sort by row, stable: each row lists its examples in the order they were placed */
    for (int i = 0; i < n; i++) out->row_start[row_of[i] + 1]++;
    for (int r = 0; r < rows; r++) out->row_start[r + 1] += out->row_start[r];
    int *next = malloc(sizeof(int) * ((size_t)rows + 1));
    if (!next) {
        free(tree);
        free(row_of);
        gm_sft_packing_free(out);
        return gm_fail(GM_ERR_NOMEM, "out of memory packing %d examples", n);
    }
    memcpy(next, out->row_start, sizeof(int) * (size_t)rows);
    for (int i = 0; i < n; i++) out->items[next[row_of[i]]++] = order ? order[i] : i;
    free(next);
    free(tree);
    free(row_of);
    out->n_rows = rows, out->n_items = n, out->T = T;
    for (int r = 0; r < rows; r++) out->n_positions += (size_t)out->row_len[r];
    return GM_OK;
}

void gm_sft_pack_row(const gm_sft_example *ex, const gm_sft_packing *p, int r, int T, int32_t pad, int32_t *inputs,
                     int32_t *targets, int32_t *pos) {
    int t = 0;
    for (int i = p->row_start[r]; i < p->row_start[r + 1]; i++) {
        const gm_sft_example *e = &ex[p->items[i]];
        int k = gm_sft_positions(e, p->T);
        for (int j = 0; j < k && t < T; j++, t++) {
            inputs[t] = j < e->n ? e->ids[j] : pad; /* an empty example still fills its one place */
            targets[t] = j + 1 < e->n && e->mask[j + 1] ? e->ids[j + 1] : -1;
            pos[t] = j;
        }
    }
    for (; t < T; t++) inputs[t] = pad, targets[t] = -1, pos[t] = 0;
}

void gm_sft_epoch_order(int n, uint64_t seed, long epoch, int *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1;
    gm_align_shuffle(order, n, &s);
}
