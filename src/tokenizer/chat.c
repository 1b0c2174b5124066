/* gm_chat_format: Gemma's chat template rendered to text, byte for byte what the official Jinja templates
 * produce:
 *   "<bos>" then per message "<start_of_turn>" + role + "\n" + trim(content) + "<end_of_turn>\n",
 *   and with add_generation_prompt "<start_of_turn>model\n".
 * Role "assistant" is written "model". Roles must alternate user, model, user, ... starting with user
 * (GM_ERR_ARG otherwise). A leading "system" message is folded into the first user turn as
 * system + "\n\n" + user, as Gemma 3's template does (Gemma 1/2 templates reject a system role; folding
 * is what llama.cpp does for all Gemmas). Like the templates, message content is trimmed of leading and
 * trailing whitespace (Python's str.strip() set, which Jinja's trim uses); the system text is not trimmed,
 * as in Gemma 3's template. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/utf8.h"

/* Python str.isspace() for one code point: what Jinja's |trim strips. */
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

static void trim(const char *s, size_t n, size_t *b, size_t *e) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = gm_utf8_decode(s + i, n - i, &cp);
        if (!k || !py_isspace(cp)) break;
        i += k;
    }
    size_t j = n;
    while (j > i) {
        /* step back to the start of the last character */
        size_t st = j - 1;
        while (st > i && ((unsigned char)s[st] & 0xC0) == 0x80 && j - st < 4) st--;
        uint32_t cp;
        size_t k = gm_utf8_decode(s + st, j - st, &cp);
        if (k != j - st || !py_isspace(cp)) break;
        j = st;
    }
    *b = i;
    *e = j;
}

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *s, const char *t, size_t n) {
    if (s->oom) return;
    size_t need;
    if (!gm_add_size(s->n, n + 1, &need)) {
        s->oom = 1;
        return;
    }
    if (need > s->cap) {
        size_t nc = s->cap ? s->cap : 256;
        while (nc < need) nc = nc > ((size_t)-1) / 2 ? need : nc * 2;
        char *q = realloc(s->p, nc);
        if (!q) {
            s->oom = 1;
            return;
        }
        s->p = q;
        s->cap = nc;
    }
    memcpy(s->p + s->n, t, n);
    s->n += n;
    s->p[s->n] = 0;
}

static void puts_(sbuf *s, const char *t) { put(s, t, strlen(t)); }

gm_status gm_chat_format(const gm_chat_message *msgs, size_t n, int add_generation_prompt, char **out, size_t *len) {
    if (!out || (!msgs && n)) return gm_fail(GM_ERR_ARG, "gm_chat_format: NULL argument");
    *out = NULL;
    if (len) *len = 0;
    size_t first = 0;
    const char *system = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return gm_fail(GM_ERR_ARG, "chat: message %zu has a NULL role or content", i);
        const char *r = msgs[i].role;
        if (strcmp(r, "user") && strcmp(r, "model") && strcmp(r, "assistant") && strcmp(r, "system"))
            return gm_fail(GM_ERR_ARG, "chat: message %zu has unknown role \"%s\" (user, model, assistant, system)",
                           i, r);
    }
    if (n > 0 && !strcmp(msgs[0].role, "system")) {
        system = msgs[0].content;
        first = 1;
        if (n == 1) return gm_fail(GM_ERR_ARG, "chat: a system message must be followed by a user message");
    }
    for (size_t i = first; i < n; i++) {
        int want_user = (i - first) % 2 == 0;
        const char *r = msgs[i].role;
        int is_user = !strcmp(r, "user");
        if (!strcmp(r, "system"))
            return gm_fail(GM_ERR_ARG, "chat: message %zu: a system message may only come first", i);
        if (is_user != want_user)
            return gm_fail(GM_ERR_ARG, "chat: message %zu has role \"%s\" but roles must alternate user/model "
                           "starting with user", i, r);
    }
    sbuf s = {0};
    puts_(&s, "<bos>");
    for (size_t i = first; i < n; i++) {
        const char *c = msgs[i].content;
        size_t b, e;
        trim(c, strlen(c), &b, &e);
        puts_(&s, "<start_of_turn>");
        puts_(&s, strcmp(msgs[i].role, "user") ? "model" : "user");
        puts_(&s, "\n");
        if (i == first && system) {
            puts_(&s, system);
            puts_(&s, "\n\n");
        }
        put(&s, c + b, e - b);
        puts_(&s, "<end_of_turn>\n");
    }
    if (add_generation_prompt) puts_(&s, "<start_of_turn>model\n");
    if (s.oom) {
        free(s.p);
        return gm_fail(GM_ERR_NOMEM, "chat: out of memory");
    }
    *out = s.p;
    if (len) *len = s.n;
    return GM_OK;
}
