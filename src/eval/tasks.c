/* Dataset readers and prompt formats for the benchmark tasks (see tasks.h). Every prompt follows the
 * lm-evaluation-harness task definition named beside it, byte for byte, with " " as the target delimiter
 * and "\n\n" between few-shot examples. */
#include "eval/tasks.h"

#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"

static const char TQA_PREAMBLE[] =
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain.";

static const gm_task_info TASKS[GM_TASK_COUNT] = {
    {"arc_easy", GM_KIND_MC, 0, "Question: {question}\\nAnswer:| {choice}"},
    {"arc_challenge", GM_KIND_MC, 0, "Question: {question}\\nAnswer:| {choice}"},
    {"hellaswag", GM_KIND_MC, 0, "{activity_label}: {ctx_a} {Ctx_b}| {ending}"},
    {"piqa", GM_KIND_MC, 0, "Question: {goal}\\nAnswer:| {sol}"},
    {"mmlu", GM_KIND_MC, 5,
     "The following are multiple choice questions (with answers) about {subject}.\\n\\n"
     "[5 x {question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer: {X}\\n\\n]"
     "{question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:| A, B, C or D"},
    {"truthfulqa_mc1", GM_KIND_MC, 0, "{6-shot QA preamble}\\n\\nQ: {question}\\nA:| {answer}"},
    {"truthfulqa_mc2", GM_KIND_MC, 0, "{6-shot QA preamble}\\n\\nQ: {question}\\nA:| {answer}"},
    {"gsm8k", GM_KIND_MATH, 5,
     "[5 x Question: {question}\\nAnswer: {answer}\\n\\n]Question: {question}\\nAnswer:| greedy until \"Question:\""},
    {"humaneval", GM_KIND_CODE, 0,
     "{prompt}| greedy until \\nclass, \\ndef, \\n#, \\nif, \\nprint; run {prompt}{completion}\\n{test}\\ncheck({entry_point})"},
    {"perplexity", GM_KIND_TEXT, 0, "<bos> + a sliding window over the file's tokens"},
};

const gm_task_info *gm_task_get(gm_task t) { return t >= 0 && t < GM_TASK_COUNT ? &TASKS[t] : NULL; }

int gm_task_by_name(const char *name) {
    for (int i = 0; i < GM_TASK_COUNT; i++)
        if (!strcmp(TASKS[i].name, name)) return i;
    return -1;
}

/* ---- small string builder ---------------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p, b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_puts(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Take the built string (an empty one if nothing was added); NULL if memory ran out. */
static char *sb_take(sbuf *b) {
    if (b->oom) {
        free(b->s);
        return NULL;
    }
    if (!b->s) return calloc(1, 1);
    return b->s;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Python's str.strip() (ASCII whitespace), as a new string. */
static char *strip_dup(const char *s) {
    size_t n = strlen(s);
    while (n && is_space((unsigned char)s[n - 1])) n--;
    size_t i = 0;
    while (i < n && is_space((unsigned char)s[i])) i++;
    char *p = malloc(n - i + 1);
    if (!p) return NULL;
    memcpy(p, s + i, n - i);
    p[n - i] = 0;
    return p;
}

/* ---- items ------------------------------------------------------------------------------------- */

static void item_free(gm_eval_item *it) {
    free(it->id);
    free(it->group);
    free(it->context);
    for (int i = 0; i < it->n_choices; i++) free(it->choices[i]);
    free(it->choices);
    free(it->labels);
    free(it->target);
    free(it->entry_point);
    memset(it, 0, sizeof *it);
}

void gm_eval_set_free(gm_eval_set *set) {
    if (!set) return;
    for (int i = 0; i < set->n; i++) item_free(&set->items[i]);
    free(set->items);
    free(set->fewshot_source);
    free(set);
}

static gm_eval_item *set_push(gm_eval_set *set) {
    if (set->n == set->cap) {
        int cap = set->cap ? set->cap * 2 : 64;
        gm_eval_item *p = realloc(set->items, sizeof *p * (size_t)cap);
        if (!p) return NULL;
        set->items = p, set->cap = cap;
    }
    gm_eval_item *it = &set->items[set->n++];
    memset(it, 0, sizeof *it);
    it->gold = -1;
    return it;
}

static gm_status oom(void) { return gm_fail(GM_ERR_NOMEM, "out of memory while reading the dataset"); }

/* Give an item n choices, copied from strs (NULL entries are errors of the caller). */
static int item_set_choices(gm_eval_item *it, const char *const *strs, int n) {
    it->choices = calloc((size_t)n, sizeof *it->choices);
    if (!it->choices) return 0;
    it->n_choices = n;
    for (int i = 0; i < n; i++)
        if (!(it->choices[i] = xstrdup(strs[i]))) return 0;
    return 1;
}

/* ---- files ------------------------------------------------------------------------------------- */

/* Read a whole data file; compressed input gets the command that unpacks it. */
static gm_status read_data(const char *path, char **data, size_t *len) {
    gm_status st = gm_file_read_all(path, data, len);
    if (st) return st;
    const unsigned char *u = (const unsigned char *)*data;
    const char *tool = NULL;
    if (*len >= 2 && u[0] == 0x1f && u[1] == 0x8b) tool = "gzip";
    else if (*len >= 3 && u[0] == 'B' && u[1] == 'Z' && u[2] == 'h') tool = "bzip2";
    if (tool) {
        free(*data);
        *data = NULL;
        return gm_fail(GM_ERR_FORMAT, "%s is %s-compressed: unpack it first (%s -dk %s) and pass the unpacked file",
                       path, tool, tool, path);
    }
    return GM_OK;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Call fn on every non-empty line of a JSONL file, parsed. */
typedef gm_status (*jsonl_fn)(void *user, const gm_json *obj, const char *where, int line);

static gm_status for_each_jsonl(const char *path, jsonl_fn fn, void *user) {
    char *data;
    size_t len;
    gm_status st = read_data(path, &data, &len);
    if (st) return st;
    size_t pos = 0;
    int line = 0;
    char where[64];
    while (pos < len && !st) {
        size_t e = pos;
        while (e < len && data[e] != '\n') e++;
        line++;
        size_t b = pos;
        while (b < e && is_space((unsigned char)data[b])) b++;
        if (b < e) {
            gm_json_doc *doc = NULL;
            snprintf(where, sizeof where, "line %d", line);
            st = gm_json_parse(data + b, e - b, path, &doc);
            if (!st) {
                const gm_json *root = gm_json_root(doc);
                if (root->type != GM_JSON_OBJECT) st = gm_fail(GM_ERR_FORMAT, "%s line %d: not a JSON object", path, line);
                else st = fn(user, root, where, line);
                gm_json_free(doc);
            } else {
                st = gm_fail_prefix(st, "line %d: ", line);
            }
        }
        pos = e + 1;
    }
    free(data);
    return st;
}

static const char *need_str(const gm_json *o, const char *key, const char *path, int line, gm_status *st) {
    const char *s = gm_json_get_str(o, key);
    if (!s && !*st) *st = gm_fail(GM_ERR_FORMAT, "%s line %d: missing string field \"%s\"", path, line, key);
    return s;
}

/* ---- CSV (RFC 4180) ---------------------------------------------------------------------------- */

void gm_csv_free(gm_csv_row *rows, int n_rows) {
    if (!rows) return;
    for (int r = 0; r < n_rows; r++) {
        for (int i = 0; i < rows[r].n; i++) free(rows[r].f[i]);
        free(rows[r].f);
    }
    free(rows);
}

gm_status gm_csv_parse(const char *text, size_t len, const char *what, gm_csv_row **rows_out, int *n_out) {
    *rows_out = NULL;
    *n_out = 0;
    size_t p = 0;
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB && (unsigned char)text[2] == 0xBF)
        p = 3;
    gm_csv_row *rows = NULL;
    int n_rows = 0, cap_rows = 0, line = 1;
    gm_status st = GM_OK;
    while (p < len && !st) {
        /* one record */
        gm_csv_row row = {0, NULL};
        int cap_f = 0;
        for (;;) {
            sbuf f = {0};
            if (p < len && text[p] == '"') {
                int start_line = line;
                p++;
                for (;;) {
                    if (p >= len) {
                        st = gm_fail(GM_ERR_FORMAT, "%s line %d: unterminated quoted field", what, start_line);
                        break;
                    }
                    if (text[p] == '"') {
                        if (p + 1 < len && text[p + 1] == '"') {
                            sb_add(&f, "\"", 1);
                            p += 2;
                            continue;
                        }
                        p++;
                        break;
                    }
                    if (text[p] == '\n') line++;
                    sb_add(&f, text + p, 1);
                    p++;
                }
                if (!st && p < len && text[p] != ',' && text[p] != '\n' && text[p] != '\r')
                    st = gm_fail(GM_ERR_FORMAT, "%s line %d: text after a closing quote", what, line);
            } else {
                size_t b = p;
                while (p < len && text[p] != ',' && text[p] != '\n' && text[p] != '\r') p++;
                sb_add(&f, text + b, p - b);
            }
            char *field = sb_take(&f);
            if (!field) st = oom();
            if (st) {
                free(field);
                break;
            }
            if (row.n == cap_f) {
                cap_f = cap_f ? cap_f * 2 : 8;
                char **nf = realloc(row.f, sizeof *nf * (size_t)cap_f);
                if (!nf) {
                    free(field);
                    st = oom();
                    break;
                }
                row.f = nf;
            }
            row.f[row.n++] = field;
            if (p < len && text[p] == ',') {
                p++;
                continue;
            }
            if (p < len && text[p] == '\r') p++;
            if (p < len && text[p] == '\n') p++, line++;
            break;
        }
        if (!st && n_rows == cap_rows) {
            cap_rows = cap_rows ? cap_rows * 2 : 64;
            gm_csv_row *nr = realloc(rows, sizeof *nr * (size_t)cap_rows);
            if (!nr) st = oom();
            else rows = nr;
        }
        if (st) {
            for (int i = 0; i < row.n; i++) free(row.f[i]);
            free(row.f);
            break;
        }
        /* a blank line is one empty field: skip it */
        if (row.n == 1 && !row.f[0][0]) {
            free(row.f[0]);
            free(row.f);
            continue;
        }
        rows[n_rows++] = row;
    }
    if (st) {
        gm_csv_free(rows, n_rows);
        return st;
    }
    *rows_out = rows;
    *n_out = n_rows;
    return GM_OK;
}

/* ---- few-shot ---------------------------------------------------------------------------------- */

/* "{context} {gold choice}\n\n" for the first k items of an exemplar set: the harness's fewshot block. */
static char *fewshot_block(const gm_eval_set *ex, int k) {
    sbuf b = {0};
    for (int i = 0; i < k && i < ex->n; i++) {
        const gm_eval_item *it = &ex->items[i];
        sb_puts(&b, it->context);
        if (it->gold >= 0) {
            sb_puts(&b, " ");
            sb_puts(&b, it->choices[it->gold]);
        } else if (it->target) { /* GSM8K: the full worked answer */
            sb_puts(&b, " ");
            sb_puts(&b, it->target);
        }
        sb_puts(&b, "\n\n");
    }
    return sb_take(&b);
}

/* Prefix every item's context with a few-shot block. */
static gm_status prepend_all(gm_eval_set *set, const char *block) {
    size_t bl = strlen(block);
    for (int i = 0; i < set->n; i++) {
        char *c = set->items[i].context;
        size_t cl = strlen(c);
        char *n = malloc(bl + cl + 1);
        if (!n) return oom();
        memcpy(n, block, bl);
        memcpy(n + bl, c, cl + 1);
        free(c);
        set->items[i].context = n;
    }
    return GM_OK;
}

/* ---- ARC --------------------------------------------------------------------------------------- */

typedef struct {
    gm_eval_set *set;
    const char *path;
} load_ctx;

static gm_status arc_line(void *user, const gm_json *o, const char *where, int line) {
    load_ctx *lc = user;
    gm_status st = GM_OK;
    (void)where;
    const char *q = gm_json_get_str(o, "question");
    const gm_json *ch = gm_json_get(o, "choices");
    const char *key = need_str(o, "answerKey", lc->path, line, &st);
    const gm_json *texts = NULL, *labels = NULL;
    if (!q) { /* the original allenai layout: question {stem, choices [{text, label}]} */
        const gm_json *qo = gm_json_get(o, "question");
        q = gm_json_get_str(qo, "stem");
        ch = gm_json_get(qo, "choices");
        if (!q || !ch || ch->type != GM_JSON_ARRAY)
            return gm_fail(GM_ERR_FORMAT, "%s line %d: no \"question\" string or {stem, choices}", lc->path, line);
    } else {
        texts = gm_json_get(ch, "text");
        labels = gm_json_get(ch, "label");
        if (!texts || !labels || texts->type != GM_JSON_ARRAY || labels->type != GM_JSON_ARRAY || texts->len != labels->len)
            return gm_fail(GM_ERR_FORMAT, "%s line %d: \"choices\" needs parallel \"text\" and \"label\" arrays", lc->path,
                           line);
    }
    if (st) return st;
    size_t n = texts ? texts->len : ch->len;
    if (n < 2 || n > 16) return gm_fail(GM_ERR_FORMAT, "%s line %d: %zu choices", lc->path, line, n);
    const char *tx[16], *lb[16];
    for (size_t i = 0; i < n; i++) {
        const gm_json *t = texts ? &texts->items[i] : gm_json_get(&ch->items[i], "text");
        const gm_json *l = labels ? &labels->items[i] : gm_json_get(&ch->items[i], "label");
        if (!t || !l || t->type != GM_JSON_STRING || l->type != GM_JSON_STRING)
            return gm_fail(GM_ERR_FORMAT, "%s line %d: choice %zu is not a text/label string pair", lc->path, line, i);
        tx[i] = t->str, lb[i] = l->str;
    }
    int gold = -1;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(lb[i], key)) gold = (int)i;
    if (gold < 0) return gm_fail(GM_ERR_FORMAT, "%s line %d: answerKey \"%s\" is not among the labels", lc->path, line, key);
    gm_eval_item *it = set_push(lc->set);
    if (!it) return oom();
    sbuf b = {0};
    sb_puts(&b, "Question: ");
    sb_puts(&b, q);
    sb_puts(&b, "\nAnswer:");
    it->context = sb_take(&b);
    const char *id = gm_json_get_str(o, "id");
    char lid[32];
    snprintf(lid, sizeof lid, "line %d", line);
    it->id = xstrdup(id ? id : lid);
    it->gold = gold;
    if (!it->context || !it->id || !item_set_choices(it, tx, (int)n)) return oom();
    return GM_OK;
}

/* ARC-Easy-test.jsonl -> ARC-Easy-train.jsonl (the harness draws ARC exemplars from the train split). */
static char *sibling_replace(const char *path, const char *const *from, const char *to) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    for (int i = 0; from[i]; i++) {
        const char *hit = strstr(base, from[i]);
        if (!hit) continue;
        size_t pre = (size_t)(hit - path), fl = strlen(from[i]), tl = strlen(to), rest = strlen(hit + fl);
        char *p = malloc(pre + tl + rest + 1);
        if (!p) return NULL;
        memcpy(p, path, pre);
        memcpy(p + pre, to, tl);
        memcpy(p + pre + tl, hit + fl, rest + 1);
        if (gm_file_exists(p)) return p;
        free(p);
    }
    return NULL;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1;
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, path, n);
    p[n] = 0;
    return p;
}

/* ---- HellaSwag --------------------------------------------------------------------------------- */

char *gm_hellaswag_preprocess(const char *text) {
    char *s = strip_dup(text);
    if (!s) return NULL;
    sbuf a = {0};
    for (const char *p = s; *p;) { /* " [title]" -> ". " */
        if (!strncmp(p, " [title]", 8)) {
            sb_puts(&a, ". ");
            p += 8;
        } else sb_add(&a, p++, 1);
    }
    free(s);
    if (!(s = sb_take(&a))) return NULL;
    sbuf b = {0};
    for (const char *p = s; *p;) { /* re.sub("\[.*?\]", "") */
        if (*p == '[') {
            const char *q = strchr(p + 1, ']');
            const char *nl = strchr(p + 1, '\n'); /* "." does not match a newline */
            if (q && (!nl || nl > q)) {
                p = q + 1;
                continue;
            }
        }
        sb_add(&b, p++, 1);
    }
    free(s);
    if (!(s = sb_take(&b))) return NULL;
    sbuf c = {0};
    for (const char *p = s; *p;) { /* "  " -> " ", one pass like str.replace */
        if (p[0] == ' ' && p[1] == ' ') {
            sb_add(&c, " ", 1);
            p += 2;
        } else sb_add(&c, p++, 1);
    }
    free(s);
    return sb_take(&c);
}

/* Python's str.capitalize() on ASCII: first letter up, the rest down. */
static void capitalize(char *s) {
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) s[i] = (char)(i ? tolower(c) : toupper(c));
    }
}

static gm_status hellaswag_json_line(void *user, const gm_json *o, const char *where, int line) {
    load_ctx *lc = user;
    gm_status st = GM_OK;
    (void)where;
    const char *act = need_str(o, "activity_label", lc->path, line, &st);
    const char *ca = need_str(o, "ctx_a", lc->path, line, &st);
    const char *cb = need_str(o, "ctx_b", lc->path, line, &st);
    if (st) return st;
    const gm_json *ends = gm_json_get(o, "endings");
    if (!ends || ends->type != GM_JSON_ARRAY || ends->len < 2 || ends->len > 16)
        return gm_fail(GM_ERR_FORMAT, "%s line %d: \"endings\" must be an array of 2..16 strings", lc->path, line);
    int64_t label;
    const char *ls = gm_json_get_str(o, "label");
    if (ls) label = strtol(ls, NULL, 10);
    else if (!gm_json_get_int(o, "label", &label))
        return gm_fail(GM_ERR_FORMAT, "%s line %d: missing \"label\"", lc->path, line);
    if (label < 0 || label >= (int64_t)ends->len)
        return gm_fail(GM_ERR_FORMAT, "%s line %d: label %lld outside the endings", lc->path, line, (long long)label);
    char *cbc = xstrdup(cb);
    if (!cbc) return oom();
    capitalize(cbc);
    sbuf b = {0};
    sb_puts(&b, act);
    sb_puts(&b, ": ");
    sb_puts(&b, ca);
    sb_puts(&b, " ");
    sb_puts(&b, cbc);
    free(cbc);
    char *raw = sb_take(&b);
    if (!raw) return oom();
    gm_eval_item *it = set_push(lc->set);
    if (!it) {
        free(raw);
        return oom();
    }
    it->context = gm_hellaswag_preprocess(raw);
    free(raw);
    it->choices = calloc(ends->len, sizeof *it->choices);
    if (!it->context || !it->choices) return oom();
    it->n_choices = (int)ends->len;
    for (size_t i = 0; i < ends->len; i++) {
        if (ends->items[i].type != GM_JSON_STRING)
            return gm_fail(GM_ERR_FORMAT, "%s line %d: ending %zu is not a string", lc->path, line, i);
        if (!(it->choices[i] = gm_hellaswag_preprocess(ends->items[i].str))) return oom();
    }
    it->gold = (int)label;
    int64_t ind;
    char id[48];
    if (gm_json_get_int(o, "ind", &ind)) snprintf(id, sizeof id, "%lld", (long long)ind);
    else snprintf(id, sizeof id, "line %d", line);
    if (!(it->id = xstrdup(id))) return oom();
    return GM_OK;
}

/* llama.cpp's hellaswag_val_full.txt: 6 lines per task (context, gold 0-3, four endings), already cleaned
 * by its converter. ctx_b is not capitalized there (the split into ctx_a/ctx_b is lost), the one known
 * difference from the harness's prompt. */
static gm_status hellaswag_txt(gm_eval_set *set, const char *path, const char *data, size_t len) {
    const char *lines[6];
    size_t lens[6];
    size_t p = 0;
    int line = 0, k = 0, task_line = 1;
    while (p < len) {
        size_t e = p;
        while (e < len && data[e] != '\n') e++;
        size_t l = e - p;
        if (l && data[p + l - 1] == '\r') l--;
        line++;
        if (k == 0) task_line = line;
        lines[k] = data + p, lens[k] = l;
        k++;
        p = e + 1;
        if (k < 6) continue;
        k = 0;
        if (lens[1] != 1 || lines[1][0] < '0' || lines[1][0] > '3')
            return gm_fail(GM_ERR_FORMAT, "%s line %d: the gold label must be 0..3 (6 lines per task: context, label, 4 endings)",
                           path, task_line + 1);
        gm_eval_item *it = set_push(set);
        if (!it) return oom();
        it->choices = calloc(4, sizeof *it->choices);
        it->context = strndup(lines[0], lens[0]);
        if (!it->choices || !it->context) return oom();
        it->n_choices = 4;
        for (int i = 0; i < 4; i++)
            if (!(it->choices[i] = strndup(lines[2 + i], lens[2 + i]))) return oom();
        it->gold = lines[1][0] - '0';
        char id[32];
        snprintf(id, sizeof id, "%d", set->n - 1);
        if (!(it->id = xstrdup(id))) return oom();
    }
    if (k != 0) {
        /* a final newline-free blank line is fine; anything else is a truncated task */
        int blank = k == 1 && lens[0] == 0;
        if (!blank)
            return gm_fail(GM_ERR_FORMAT, "%s: %d lines left over at line %d (expected 6 lines per task)", path, k,
                           task_line);
    }
    return GM_OK;
}

/* ---- PIQA -------------------------------------------------------------------------------------- */

typedef struct {
    load_ctx lc;
    const char *labels; /* contents of valid-labels.lst, or NULL */
    size_t labels_len, lpos;
} piqa_ctx;

static gm_status piqa_line(void *user, const gm_json *o, const char *where, int line) {
    piqa_ctx *pc = user;
    gm_status st = GM_OK;
    (void)where;
    const char *goal = need_str(o, "goal", pc->lc.path, line, &st);
    const char *s1 = need_str(o, "sol1", pc->lc.path, line, &st);
    const char *s2 = need_str(o, "sol2", pc->lc.path, line, &st);
    if (st) return st;
    int64_t label = -1;
    if (!gm_json_get_int(o, "label", &label)) {
        if (!pc->labels)
            return gm_fail(GM_ERR_FORMAT, "%s line %d: no \"label\" field and no labels file (valid-labels.lst beside it)",
                           pc->lc.path, line);
        while (pc->lpos < pc->labels_len && is_space((unsigned char)pc->labels[pc->lpos])) pc->lpos++;
        if (pc->lpos >= pc->labels_len)
            return gm_fail(GM_ERR_FORMAT, "%s line %d: the labels file has fewer lines than the data", pc->lc.path, line);
        label = pc->labels[pc->lpos++] - '0';
    }
    if (label != 0 && label != 1) return gm_fail(GM_ERR_FORMAT, "%s line %d: label must be 0 or 1", pc->lc.path, line);
    gm_eval_item *it = set_push(pc->lc.set);
    if (!it) return oom();
    sbuf b = {0};
    sb_puts(&b, "Question: ");
    sb_puts(&b, goal);
    sb_puts(&b, "\nAnswer:");
    it->context = sb_take(&b);
    const char *ch[2] = {s1, s2};
    char id[32];
    snprintf(id, sizeof id, "%d", pc->lc.set->n - 1);
    it->id = xstrdup(id);
    it->gold = (int)label;
    if (!it->context || !it->id || !item_set_choices(it, ch, 2)) return oom();
    return GM_OK;
}

/* ---- MMLU -------------------------------------------------------------------------------------- */

/* One subject's CSV (HF layout with header `question,choice0..3,answer` 0-3, or the original headerless one
 * with A-D): append its items, each "{question.strip()}\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer:". */
static gm_status mmlu_csv(gm_eval_set *set, const char *path, const char *subject, int limit) {
    char *data;
    size_t len;
    gm_status st = read_data(path, &data, &len);
    if (st) return st;
    gm_csv_row *rows;
    int n_rows;
    st = gm_csv_parse(data, len, path, &rows, &n_rows);
    free(data);
    if (st) return st;
    int added = 0;
    for (int r = 0; r < n_rows && !st; r++) {
        gm_csv_row *row = &rows[r];
        if (r == 0 && row->n == 6 && !strcmp(row->f[0], "question") && !strcmp(row->f[5], "answer")) continue;
        if (row->n != 6) {
            st = gm_fail(GM_ERR_FORMAT, "%s: record %d has %d fields (want question, 4 choices, answer)", path, r + 1, row->n);
            break;
        }
        const char *a = row->f[5];
        int gold = -1;
        if (a[0] >= '0' && a[0] <= '3' && !a[1]) gold = a[0] - '0';
        else if (a[0] >= 'A' && a[0] <= 'D' && !a[1]) gold = a[0] - 'A';
        if (gold < 0) {
            st = gm_fail(GM_ERR_FORMAT, "%s: record %d: answer \"%s\" is not 0-3 or A-D", path, r + 1, a);
            break;
        }
        if (limit > 0 && added >= limit) break;
        gm_eval_item *it = set_push(set);
        if (!it) {
            st = oom();
            break;
        }
        char *q = strip_dup(row->f[0]);
        sbuf b = {0};
        if (q) sb_puts(&b, q);
        free(q);
        static const char *L[4] = {"\nA. ", "\nB. ", "\nC. ", "\nD. "};
        for (int i = 0; i < 4; i++) {
            sb_puts(&b, L[i]);
            sb_puts(&b, row->f[1 + i]);
        }
        sb_puts(&b, "\nAnswer:");
        it->context = q ? sb_take(&b) : (free(b.s), NULL);
        static const char *const LET[4] = {"A", "B", "C", "D"};
        char id[300];
        snprintf(id, sizeof id, "%s/%d", subject, added);
        it->id = xstrdup(id);
        it->group = xstrdup(subject);
        it->gold = gold;
        if (!it->context || !it->id || !it->group || !item_set_choices(it, LET, 4)) st = oom();
        added++;
    }
    gm_csv_free(rows, n_rows);
    return st;
}

static int str_ends(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Load one subject: test rows, then its description and k dev exemplars in front of each. */
static gm_status mmlu_subject(gm_eval_set *set, const char *test_path, const char *subject, const char *dev_path,
                              int shots, int limit) {
    int first = set->n;
    gm_status st = mmlu_csv(set, test_path, subject, limit);
    if (st) return st;
    sbuf b = {0};
    sb_puts(&b, "The following are multiple choice questions (with answers) about ");
    for (const char *p = subject; *p; p++) sb_add(&b, *p == '_' ? " " : p, 1);
    sb_puts(&b, ".\n\n");
    if (shots > 0) {
        if (!dev_path || !gm_file_exists(dev_path)) {
            free(b.s);
            return gm_fail(GM_ERR_IO, "MMLU %d-shot needs the dev file of \"%s\" (%s); pass --fewshot or --shots 0",
                           shots, subject, dev_path ? dev_path : "not found");
        }
        gm_eval_set dev = {0};
        st = mmlu_csv(&dev, dev_path, subject, 0);
        if (!st && dev.n < shots)
            st = gm_fail(GM_ERR_FORMAT, "%s has %d examples, fewer than --shots %d", dev_path, dev.n, shots);
        if (!st) {
            char *blk = fewshot_block(&dev, shots);
            if (!blk) st = oom();
            else sb_puts(&b, blk);
            free(blk);
        }
        for (int i = 0; i < dev.n; i++) item_free(&dev.items[i]);
        free(dev.items);
        if (st) {
            free(b.s);
            return st;
        }
    }
    char *pre = sb_take(&b);
    if (!pre) return oom();
    gm_eval_set view = {.n = set->n - first, .items = set->items + first};
    st = prepend_all(&view, pre);
    free(pre);
    return st;
}

static char *path_fmt(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static char *path_fmt(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0) p = NULL;
    va_end(ap);
    return p;
}

static gm_status load_mmlu(gm_eval_set *set, const char *path, int shots, const char *fewshot, int limit) {
    gm_status st = GM_OK;
    if (!is_dir(path)) {
        /* one subject file: .../test/anatomy_test.csv, dev at .../dev/anatomy_dev.csv or beside it */
        const char *slash = strrchr(path, '/');
        char *subject = xstrdup(slash ? slash + 1 : path);
        if (!subject) return oom();
        if (str_ends(subject, "_test.csv")) subject[strlen(subject) - 9] = 0;
        else if (str_ends(subject, ".csv")) subject[strlen(subject) - 4] = 0;
        char *dev = NULL;
        if (fewshot) dev = xstrdup(fewshot);
        else if (shots > 0) {
            char *d = dir_of(path);
            dev = d ? path_fmt("%s/../dev/%s_dev.csv", d, subject) : NULL;
            if (dev && !gm_file_exists(dev)) {
                free(dev);
                dev = d ? path_fmt("%s/%s_dev.csv", d, subject) : NULL;
            }
            free(d);
        }
        st = mmlu_subject(set, path, subject, dev, shots, limit);
        free(dev);
        free(subject);
        return st;
    }
    char *test_dir = path_fmt("%s/test", path);
    char *dev_dir = fewshot ? xstrdup(fewshot) : path_fmt("%s/dev", path);
    if (!test_dir || !dev_dir) st = oom();
    if (!st && !is_dir(test_dir)) { /* the directory holds the *_test.csv files itself */
        free(test_dir);
        test_dir = xstrdup(path);
        if (!fewshot) {
            free(dev_dir);
            dev_dir = path_fmt("%s/../dev", path);
        }
        if (!test_dir || !dev_dir) st = oom();
    }
    char **names = NULL;
    int n_names = 0, cap = 0;
    if (!st) {
        DIR *d = opendir(test_dir);
        if (!d) st = gm_fail(GM_ERR_IO, "cannot open the MMLU directory %s", test_dir);
        struct dirent *e;
        while (!st && (e = readdir(d))) {
            if (!str_ends(e->d_name, "_test.csv")) continue;
            if (n_names == cap) {
                cap = cap ? cap * 2 : 64;
                char **nn = realloc(names, sizeof *nn * (size_t)cap);
                if (!nn) {
                    st = oom();
                    break;
                }
                names = nn;
            }
            if (!(names[n_names] = xstrdup(e->d_name))) st = oom();
            else n_names++;
        }
        if (d) closedir(d);
    }
    if (!st && n_names == 0) st = gm_fail(GM_ERR_IO, "no *_test.csv files in %s", test_dir);
    if (!st) qsort(names, (size_t)n_names, sizeof *names, cmp_str);
    for (int i = 0; i < n_names && !st; i++) {
        char *subject = xstrdup(names[i]);
        if (!subject) {
            st = oom();
            break;
        }
        subject[strlen(subject) - 9] = 0;
        char *tp = path_fmt("%s/%s", test_dir, names[i]);
        char *dp = path_fmt("%s/%s_dev.csv", dev_dir, subject);
        if (!tp || !dp) st = oom();
        else st = mmlu_subject(set, tp, subject, shots > 0 ? dp : NULL, shots, limit);
        free(tp);
        free(dp);
        free(subject);
    }
    for (int i = 0; i < n_names; i++) free(names[i]);
    free(names);
    if (!st && shots > 0 && !(set->fewshot_source = xstrdup(dev_dir))) st = oom();
    free(test_dir);
    free(dev_dir);
    return st;
}

/* ---- TruthfulQA -------------------------------------------------------------------------------- */

static gm_status load_truthfulqa(gm_eval_set *set, const char *path, int mc2) {
    char *data;
    size_t len;
    gm_status st = read_data(path, &data, &len);
    if (st) return st;
    gm_json_doc *doc = NULL;
    st = gm_json_parse(data, len, path, &doc);
    free(data);
    if (st) return st;
    const gm_json *root = gm_json_root(doc);
    if (root->type != GM_JSON_ARRAY) st = gm_fail(GM_ERR_FORMAT, "%s: expected a JSON array of questions (mc_task.json)", path);
    const char *key = mc2 ? "mc2_targets" : "mc1_targets";
    for (size_t i = 0; !st && i < root->len; i++) {
        const gm_json *o = &root->items[i];
        const char *q = gm_json_get_str(o, "question");
        const gm_json *tg = gm_json_get(o, key);
        if (!q || !tg || tg->type != GM_JSON_OBJECT || tg->len < 2) {
            st = gm_fail(GM_ERR_FORMAT, "%s: question %zu needs \"question\" and a \"%s\" object of 2+ answers", path, i, key);
            break;
        }
        gm_eval_item *it = set_push(set);
        if (!it) {
            st = oom();
            break;
        }
        sbuf b = {0};
        sb_puts(&b, TQA_PREAMBLE);
        sb_puts(&b, "\n\nQ: ");
        sb_puts(&b, q);
        sb_puts(&b, "\nA:");
        it->context = sb_take(&b);
        it->choices = calloc(tg->len, sizeof *it->choices);
        it->labels = calloc(tg->len, 1);
        char id[32];
        snprintf(id, sizeof id, "%zu", i);
        it->id = xstrdup(id);
        if (!it->context || !it->choices || !it->labels || !it->id) {
            st = oom();
            break;
        }
        it->n_choices = (int)tg->len;
        int n_true = 0;
        for (size_t c = 0; c < tg->len && !st; c++) {
            const gm_json *v = &tg->members[c].value;
            if (v->type != GM_JSON_NUMBER || !v->is_int || (v->i != 0 && v->i != 1)) {
                st = gm_fail(GM_ERR_FORMAT, "%s: question %zu: %s values must be 0 or 1", path, i, key);
                break;
            }
            it->labels[c] = (unsigned char)v->i;
            if (v->i && it->gold < 0) it->gold = (int)c;
            n_true += (int)v->i;
            if (!(it->choices[c] = xstrdup(tg->members[c].key))) st = oom();
        }
        if (!st && (n_true == 0 || n_true == (int)tg->len))
            st = gm_fail(GM_ERR_FORMAT, "%s: question %zu: %s needs both true and false answers", path, i, key);
        if (!st && !mc2 && n_true != 1)
            st = gm_fail(GM_ERR_FORMAT, "%s: question %zu: mc1_targets has %d true answers (want 1)", path, i, n_true);
        if (!mc2 && !st) {
            free(it->labels);
            it->labels = NULL;
        }
    }
    gm_json_free(doc);
    return st;
}

/* ---- GSM8K and HumanEval ----------------------------------------------------------------------- */

static gm_status gsm8k_line(void *user, const gm_json *o, const char *where, int line) {
    load_ctx *lc = user;
    gm_status st = GM_OK;
    (void)where;
    const char *q = need_str(o, "question", lc->path, line, &st);
    const char *a = need_str(o, "answer", lc->path, line, &st);
    if (st) return st;
    gm_eval_item *it = set_push(lc->set);
    if (!it) return oom();
    sbuf b = {0};
    sb_puts(&b, "Question: ");
    sb_puts(&b, q);
    sb_puts(&b, "\nAnswer:");
    it->context = sb_take(&b);
    it->target = xstrdup(a);
    char id[32];
    snprintf(id, sizeof id, "%d", lc->set->n - 1);
    it->id = xstrdup(id);
    if (!it->context || !it->target || !it->id) return oom();
    return GM_OK;
}

static gm_status humaneval_line(void *user, const gm_json *o, const char *where, int line) {
    load_ctx *lc = user;
    gm_status st = GM_OK;
    (void)where;
    const char *id = need_str(o, "task_id", lc->path, line, &st);
    const char *prompt = need_str(o, "prompt", lc->path, line, &st);
    const char *test = need_str(o, "test", lc->path, line, &st);
    const char *entry = need_str(o, "entry_point", lc->path, line, &st);
    if (st) return st;
    gm_eval_item *it = set_push(lc->set);
    if (!it) return oom();
    it->id = xstrdup(id);
    it->context = xstrdup(prompt);
    it->target = xstrdup(test);
    it->entry_point = xstrdup(entry);
    if (!it->id || !it->context || !it->target || !it->entry_point) return oom();
    return GM_OK;
}

/* ---- entry point ------------------------------------------------------------------------------- */

static gm_status load_plain(gm_task task, const char *path, gm_eval_set *set) {
    load_ctx lc = {set, path};
    switch (task) {
    case GM_TASK_ARC_EASY:
    case GM_TASK_ARC_CHALLENGE: return for_each_jsonl(path, arc_line, &lc);
    case GM_TASK_GSM8K: return for_each_jsonl(path, gsm8k_line, &lc);
    case GM_TASK_HUMANEVAL: return for_each_jsonl(path, humaneval_line, &lc);
    case GM_TASK_TRUTHFULQA_MC1: return load_truthfulqa(set, path, 0);
    case GM_TASK_TRUTHFULQA_MC2: return load_truthfulqa(set, path, 1);
    case GM_TASK_HELLASWAG: {
        char *data;
        size_t len;
        gm_status st = read_data(path, &data, &len);
        if (st) return st;
        size_t i = 0;
        while (i < len && is_space((unsigned char)data[i])) i++;
        if (i < len && data[i] == '{') st = for_each_jsonl(path, hellaswag_json_line, &lc);
        else st = hellaswag_txt(set, path, data, len);
        free(data);
        return st;
    }
    case GM_TASK_PIQA: {
        piqa_ctx pc = {lc, NULL, 0, 0};
        char *lab = NULL;
        size_t ll = 0;
        static const char *const from[] = {".jsonl", NULL};
        char *lp = sibling_replace(path, from, "-labels.lst");
        gm_status st = GM_OK;
        if (lp && (st = read_data(lp, &lab, &ll))) {
            free(lp);
            return st;
        }
        free(lp);
        pc.labels = lab, pc.labels_len = ll;
        st = for_each_jsonl(path, piqa_line, &pc);
        free(lab);
        return st;
    }
    default: return gm_fail(GM_ERR_ARG, "task %s has no dataset reader", gm_task_get(task) ? gm_task_get(task)->name : "?");
    }
}

gm_status gm_eval_load(gm_task task, const char *path, const gm_eval_load_opts *opt, gm_eval_set **out) {
    *out = NULL;
    const gm_task_info *ti = gm_task_get(task);
    if (!ti || ti->kind == GM_KIND_TEXT) return gm_fail(GM_ERR_ARG, "not a dataset task");
    int shots = opt && opt->shots >= 0 ? opt->shots : ti->default_shots;
    int limit = opt ? opt->limit : 0;
    const char *fewshot = opt ? opt->fewshot_path : NULL;
    if (shots > 0 && (task == GM_TASK_TRUTHFULQA_MC1 || task == GM_TASK_TRUTHFULQA_MC2))
        return gm_fail(GM_ERR_ARG, "TruthfulQA's prompt carries its fixed 6-shot QA preamble: --shots must be 0");
    if (shots > 0 && task == GM_TASK_HUMANEVAL) return gm_fail(GM_ERR_ARG, "HumanEval is 0-shot: --shots must be 0");
    gm_eval_set *set = calloc(1, sizeof *set);
    if (!set) return oom();
    set->task = task;
    set->shots = shots;
    gm_status st;
    if (task == GM_TASK_MMLU) {
        st = load_mmlu(set, path, shots, fewshot, limit);
    } else {
        st = load_plain(task, path, set);
        if (!st && set->n == 0) st = gm_fail(GM_ERR_FORMAT, "%s holds no items", path);
        if (!st && limit > 0 && limit < set->n) {
            for (int i = limit; i < set->n; i++) item_free(&set->items[i]);
            set->n = limit;
        }
        if (!st && shots > 0) {
            char *src = fewshot ? xstrdup(fewshot) : NULL;
            if (!src && (task == GM_TASK_ARC_EASY || task == GM_TASK_ARC_CHALLENGE)) {
                static const char *const from[] = {"-test.", "-validation.", "-Test.", "-Dev.", NULL};
                src = sibling_replace(path, from, "-train.");
            } else if (!src && task == GM_TASK_GSM8K) {
                char *d = dir_of(path);
                src = d ? path_fmt("%s/train.jsonl", d) : NULL;
                free(d);
                if (src && !gm_file_exists(src)) {
                    free(src);
                    src = NULL;
                }
            }
            if (!src)
                st = gm_fail(GM_ERR_ARG, "%s with --shots %d needs exemplars: pass --fewshot FILE (same format as --data)",
                             ti->name, shots);
            gm_eval_set *ex = NULL;
            if (!st) {
                gm_eval_load_opts eo = {0, NULL, shots};
                st = gm_eval_load(task, src, &eo, &ex);
                if (st) st = gm_fail_prefix(st, "few-shot file: ");
            }
            if (!st && ex->n < shots) st = gm_fail(GM_ERR_FORMAT, "%s has %d items, fewer than --shots %d", src, ex->n, shots);
            if (!st) {
                char *blk = fewshot_block(ex, shots);
                st = blk ? prepend_all(set, blk) : oom();
                free(blk);
            }
            gm_eval_set_free(ex);
            if (!st) set->fewshot_source = src;
            else free(src);
        }
    }
    if (!st && set->n == 0) st = gm_fail(GM_ERR_FORMAT, "%s holds no items", path);
    if (st) {
        gm_eval_set_free(set);
        return st;
    }
    *out = set;
    return GM_OK;
}
