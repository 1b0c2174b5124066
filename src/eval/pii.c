/* Personal-data scanners (rules in pii.h): one pass over the text dispatching on the byte at each word
 * start to small hand-written matchers, each bounded in how far it looks, so scanning stays linear; then
 * the candidates are sorted and overlaps resolved. */
#include "eval/pii.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/utf8.h"

/* ---- names ------------------------------------------------------------------------------------- */

static const char *const TYPE_NAMES[GM_PII_N_TYPES] = {"EMAIL", "PHONE",  "CARD",        "IBAN",   "NATIONAL_ID",
                                                       "IPV4",  "IPV6",   "PRIVATE_KEY", "API_KEY"};
/* Overlap priority (higher wins a partial overlap or an identical span). */
static const int TYPE_PRIORITY[GM_PII_N_TYPES] = {4, 1, 5, 7, 6, 2, 3, 9, 8};

const char *gm_pii_type_name(gm_pii_type t) {
    return (unsigned)t < GM_PII_N_TYPES ? TYPE_NAMES[t] : NULL;
}

int gm_pii_type_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < GM_PII_N_TYPES; i++)
        if (!strcmp(name, TYPE_NAMES[i])) return i;
    return -1;
}

gm_pii_severity gm_pii_type_severity(gm_pii_type t) {
    switch (t) {
    case GM_PII_EMAIL:
    case GM_PII_PHONE:
    case GM_PII_IPV4:
    case GM_PII_IPV6:
        return GM_PII_PERSONAL;
    default:
        return GM_PII_SENSITIVE;
    }
}

const char *gm_pii_severity_name(gm_pii_severity s) { return s == GM_PII_SENSITIVE ? "sensitive" : "personal"; }

/* ---- characters -------------------------------------------------------------------------------- */

static inline int is_digit(int c) { return c >= '0' && c <= '9'; }
static inline int is_upper(int c) { return c >= 'A' && c <= 'Z'; }
static inline int is_lower(int c) { return c >= 'a' && c <= 'z'; }
static inline int is_alpha(int c) { return is_upper(c) || is_lower(c); }
static inline int is_alnum(int c) { return is_alpha(c) || is_digit(c); }
static inline int is_hex(int c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static inline int lower(int c) { return is_upper(c) ? c + 32 : c; }

/* Byte at i, or -1 past the end: lets the matchers read ahead without a length check at every step. */
static inline int at(const char *s, size_t len, size_t i) { return i < len ? (unsigned char)s[i] : -1; }

/* Is a non-ASCII code point part of a word? A coarse table: letters of every script count, punctuation,
 * symbols, spaces and emoji do not. Good enough to keep findings from starting or ending inside words. */
static int cp_is_word(uint32_t cp) {
    if (cp < 0x80) return is_alnum((int)cp) || cp == '_';
    if (cp <= 0xBF) return cp == 0xAA || cp == 0xB5 || cp == 0xBA;
    if (cp == 0xD7 || cp == 0xF7) return 0;
    if (cp >= 0x2000 && cp <= 0x2BFF) return 0; /* punctuation, super/subscripts, currency, arrows, symbols */
    if (cp >= 0x3000 && cp <= 0x303F) return 0; /* CJK punctuation */
    if (cp >= 0xFE10 && cp <= 0xFE6F) return 0; /* vertical / small forms */
    if (cp >= 0xFF00 && cp <= 0xFF0F) return 0; /* fullwidth punctuation */
    if (cp >= 0xFF1A && cp <= 0xFF20) return 0;
    if (cp >= 0xFF3B && cp <= 0xFF40) return 0;
    if (cp >= 0xFF5B && cp <= 0xFF65) return 0;
    if (cp >= 0xFFF0 && cp <= 0xFFFF) return 0;
    if (cp >= 0x1F000 && cp <= 0x1FAFF) return 0; /* emoji and pictographs */
    /* CJK, kana and hangul: these scripts write numbers and addresses right next to words without spaces,
     * so their characters count as boundaries */
    if ((cp >= 0x2E80 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7AF) || (cp >= 0xF900 && cp <= 0xFAFF) ||
        (cp >= 0x20000 && cp <= 0x3FFFF))
        return 0;
    return 1;
}

/* Code point ending just before i (-1 at the start; 0xFFFD for malformed bytes). */
static long prev_cp(const char *s, size_t i) {
    if (i == 0) return -1;
    unsigned char b = (unsigned char)s[i - 1];
    if (b < 0x80) return b;
    size_t j = i - 1, k = 0;
    while (k < 3 && j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--, k++;
    uint32_t cp;
    size_t n = gm_utf8_decode(s + j, i - j, &cp);
    return n == i - j ? (long)cp : 0xFFFD;
}

/* Code point starting at i (-1 at the end; 0xFFFD for malformed bytes); *n = its byte length. */
static long next_cp(const char *s, size_t len, size_t i, size_t *n) {
    if (i >= len) {
        if (n) *n = 0;
        return -1;
    }
    unsigned char b = (unsigned char)s[i];
    if (b < 0x80) {
        if (n) *n = 1;
        return b;
    }
    uint32_t cp;
    size_t k = gm_utf8_decode(s + i, len - i, &cp);
    if (n) *n = k ? k : 1;
    return k ? (long)cp : 0xFFFD;
}

/* "\n", "\t", "\r" escapes (JSON, code) end at i: the letter is not part of the next word. */
static int escape_before(const char *s, size_t i) {
    return i >= 2 && s[i - 2] == '\\' && (s[i - 1] == 'n' || s[i - 1] == 't' || s[i - 1] == 'r');
}

static int word_before(const char *s, size_t i) {
    long c = prev_cp(s, i);
    return c >= 0 && cp_is_word((uint32_t)c) && !escape_before(s, i);
}
static int word_after(const char *s, size_t len, size_t e) {
    long c = next_cp(s, len, e, NULL);
    return c >= 0 && cp_is_word((uint32_t)c);
}

static int iban_length(int a, int b);

/* Is position i (after a space) inside a print-form IBAN-like run "CCdd XXXX XXXX ..."? Looks back at most
 * eight groups of four uppercase letters or digits for one that starts with a country code and two digits. */
static int after_iban_groups(const char *s, size_t i) {
    for (int g = 0; g < 8; g++) {
        if (i < 5 || s[i - 1] != ' ') return 0;
        size_t b = i - 5;
        for (size_t k = b; k < b + 4; k++)
            if (!is_upper((unsigned char)s[k]) && !is_digit((unsigned char)s[k])) return 0;
        if (b > 0 && s[b - 1] != ' ' && s[b - 1] != '\n' && s[b - 1] != ':' && s[b - 1] != '(') return 0;
        if (is_upper((unsigned char)s[b]) && is_upper((unsigned char)s[b + 1]) && is_digit((unsigned char)s[b + 2]) &&
            is_digit((unsigned char)s[b + 3]) && iban_length(s[b], s[b + 1]))
            return 1;
        i = b;
    }
    return 0;
}

/* A number-like finding may start at i: not inside a word, not after '+', not continuing a longer dotted,
 * dashed or slashed token ("1.192.0.2.1", "x-123-45-6789", a UUID's groups) and not the next group of a
 * spaced number ("DE12 4111 1111 1111 1111 00" is one IBAN-like token, not a card). */
static int num_left_ok(const char *s, size_t i) {
    if (word_before(s, i)) return 0;
    if (i < 2) return i == 0 || s[0] != '+';
    int c = (unsigned char)s[i - 1], d = (unsigned char)s[i - 2];
    if (c == '+') return 0;
    if ((c == '.' || c == '-' || c == '/') && is_alnum(d)) return 0;
    if (c == ' ' && is_digit(d)) return 0;
    if (c == ' ' && is_upper(d) && after_iban_groups(s, i)) return 0;
    return 1;
}
/* ... and may end at e: not inside a word, not followed by ".5", "-7" or "/3". */
static int num_right_ok(const char *s, size_t len, size_t e) {
    if (word_after(s, len, e)) return 0;
    int c = at(s, len, e);
    if ((c == '.' || c == '-' || c == '/') && is_digit(at(s, len, e + 1))) return 0;
    return 1;
}

/* Run of digits starting at i (at most max+1 counted, so a caller can tell "too long"). */
static size_t digit_run(const char *s, size_t len, size_t i, size_t max) {
    size_t k = 0;
    while (k <= max && is_digit(at(s, len, i + k))) k++;
    return k;
}

/* Shannon entropy in bits per character of s[0..n). */
static double entropy(const char *s, size_t n) {
    if (n == 0) return 0;
    unsigned cnt[256] = {0};
    for (size_t i = 0; i < n; i++) cnt[(unsigned char)s[i]]++;
    double h = 0;
    for (int c = 0; c < 256; c++)
        if (cnt[c]) {
            double p = (double)cnt[c] / (double)n;
            h -= p * log2(p);
        }
    return h;
}

static int has_digit_and_letter(const char *s, size_t n) {
    int d = 0, a = 0;
    for (size_t i = 0; i < n; i++) {
        d |= is_digit((unsigned char)s[i]);
        a |= is_alpha((unsigned char)s[i]);
    }
    return d && a;
}

/* ---- checksums --------------------------------------------------------------------------------- */

int gm_pii_luhn_valid(const char *d, size_t n) {
    if (n == 0) return 0;
    unsigned sum = 0;
    for (size_t k = 0; k < n; k++) {
        int c = (unsigned char)d[n - 1 - k];
        if (!is_digit(c)) return 0;
        unsigned v = (unsigned)(c - '0');
        if (k & 1) {
            v *= 2;
            if (v > 9) v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

/* Registered IBAN lengths (SWIFT IBAN registry). */
static const char IBAN_LENGTHS[] =
    "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BI27BR29BY28CH21CR22CY28CZ24DE22DJ27DK18DO28EE20EG29ES24FI18FK18"
    "FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28IE22IL23IQ23IS26IT27JO30KW30KZ20LB28LC32LI21LT20LU20LV21LY25"
    "MC27MD24ME22MK19MN20MR27MT31MU30NI28NL18NO15OM23PK24PL28PS29PT25QA29RO24RS22RU33SA24SC31SD18SE24SI19"
    "SK24SM27SO23ST25SV28TL23TN24TR26UA29VA22VG24XK20YE30";

static int iban_length(int a, int b) {
    for (const char *p = IBAN_LENGTHS; *p; p += 4)
        if (p[0] == a && p[1] == b) return (p[2] - '0') * 10 + (p[3] - '0');
    return 0;
}

/* c[0..n): compact IBAN (uppercase letters and digits). */
static int iban_check(const char *c, size_t n) {
    if (n < 15 || n > 34) return 0;
    if (!is_upper((unsigned char)c[0]) || !is_upper((unsigned char)c[1]) || !is_digit((unsigned char)c[2]) ||
        !is_digit((unsigned char)c[3]))
        return 0;
    if ((size_t)iban_length(c[0], c[1]) != n) return 0;
    unsigned rem = 0;
    for (size_t k = 0; k < n; k++) {
        int ch = (unsigned char)c[(k + 4) % n];
        if (is_digit(ch)) rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
        else if (is_upper(ch)) rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
        else return 0;
    }
    return rem == 1;
}

int gm_pii_iban_valid(const char *s, size_t n) {
    char c[40];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') continue;
        if (k == sizeof c) return 0;
        c[k++] = s[i];
    }
    return iban_check(c, k);
}

static int verhoeff_valid(const char *d, size_t n) {
    static const unsigned char D[10][10] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5}, {2, 3, 4, 0, 1, 7, 8, 9, 5, 6},
        {3, 4, 0, 1, 2, 8, 9, 5, 6, 7}, {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
        {6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3}, {8, 7, 6, 5, 9, 3, 2, 1, 0, 4},
        {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}};
    static const unsigned char P[8][10] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4}, {5, 8, 0, 3, 7, 9, 6, 1, 4, 2},
        {8, 9, 1, 6, 0, 4, 3, 5, 2, 7}, {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
        {2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8}};
    unsigned c = 0;
    for (size_t k = 0; k < n; k++) c = D[c][P[k % 8][d[n - 1 - k] - '0']];
    return c == 0;
}

static int valid_date(int y, int m, int d) {
    static const int DAYS[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1) return 0;
    int dm = DAYS[m - 1];
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) dm = 29;
    return d <= dm;
}

static int num2(const char *p) { return (p[0] - '0') * 10 + (p[1] - '0'); }

/* ---- candidates -------------------------------------------------------------------------------- */

typedef struct {
    gm_pii_finding f;
    int rank; /* priority * 2 + 1 for a specific rule over a generic one of the same type */
} cand;

typedef struct {
    cand *v;
    size_t n, cap;
    int oom;
    uint32_t types;
    int skip_local_ip;
    size_t vrun_start, vrun_end; /* last run of secret-value characters scanned (match_assigned_secret) */
} scan_ctx;

static void push(scan_ctx *c, gm_pii_type t, size_t s, size_t e, const char *rule, int specific) {
    if (c->oom || e <= s) return;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        cand *nv = realloc(c->v, nc * sizeof *nv);
        if (!nv) {
            c->oom = 1;
            return;
        }
        c->v = nv;
        c->cap = nc;
    }
    cand *x = &c->v[c->n++];
    x->f.type = t;
    x->f.severity = gm_pii_type_severity(t);
    x->f.start = s;
    x->f.end = e;
    x->f.rule = rule;
    x->rank = TYPE_PRIORITY[t] * 2 + (specific ? 1 : 0);
}

static inline int want(const scan_ctx *c, gm_pii_type t) { return (c->types >> t) & 1u; }

/* ---- e-mail ------------------------------------------------------------------------------------ */

static const char CCTLD[] =
    "ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo bq br bs bt bv bw "
    "by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg eh er es et eu fi "
    "fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io "
    "iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg "
    "mh mk ml mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk "
    "pl pm pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st su sv sx sy sz "
    "tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug uk um us uy uz va vc ve vg vi vn vu wf ws ye yt za zm "
    "zw ";

/* Names after the last dot that are file extensions or local-only, not public domains. */
static const char *const TLD_DENY[] = {
    "png",  "jpg",  "jpeg", "gif",  "svg",  "webp",   "bmp",      "ico",      "tif",   "tiff", "pdf",  "doc",
    "docx", "xls",  "xlsx", "ppt",  "pptx", "txt",    "csv",      "tsv",      "json",  "xml",  "yaml", "yml",
    "html", "htm",  "js",   "mjs",  "cjs",  "css",    "scss",     "php",      "exe",   "dll",  "zip",  "tar",
    "tgz",  "rar",  "bin",  "dat",  "log",  "ini",    "cfg",      "conf",     "lock",  "wav",  "avi",  "mov",
    "mkv",  "ogg",  "flac", "woff", "ttf",  "otf",    "eot",      "map",      "tsx",   "jsx",  "vue",  "java",
    "class", "jar", "cpp",  "hpp",  "bat",  "cmd",    "sql",      "db",       "sqlite", "bak", "tmp",  "swp",
    "orig", "patch", "diff", "min", "local", "localhost", "internal", "localdomain", "lan", "home", "corp",
    "invalid", "gz", "md", "sh", "py", "rs", "so", "ts", "go"};

static int tld_ok(const char *s, size_t n) {
    /* punycode IDN TLD */
    if (n > 4 && lower((unsigned char)s[0]) == 'x' && lower((unsigned char)s[1]) == 'n' && s[2] == '-' &&
        s[3] == '-')
        return 1;
    int ascii = 1, nonascii = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) ascii = 0;
        else {
            nonascii = 0;
            if (!is_alpha(c)) return 0;
        }
    }
    if (nonascii) return 1; /* all non-ASCII letters (checked by the label scanner) */
    if (!ascii || n < 2 || n > 24) return 0;
    char t[25];
    for (size_t i = 0; i < n; i++) t[i] = (char)lower((unsigned char)s[i]);
    t[n] = 0;
    for (size_t i = 0; i < sizeof TLD_DENY / sizeof TLD_DENY[0]; i++)
        if (!strcmp(t, TLD_DENY[i])) return 0;
    if (n == 2) {
        for (const char *p = CCTLD; *p; p += 3)
            if (p[0] == t[0] && p[1] == t[1]) return 1;
        return 0;
    }
    return 1;
}

static int local_char(long c) {
    if (c < 0) return 0;
    if (c < 0x80) return is_alnum((int)c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
    return cp_is_word((uint32_t)c);
}

/* s[a] == '@': find the address around it. */
static void match_email(scan_ctx *ctx, const char *s, size_t len, size_t a) {
    /* local part, backwards, at most 64 bytes */
    size_t b = a;
    while (b > 0) {
        long c = prev_cp(s, b);
        if (!local_char(c)) break;
        size_t w = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
        if (a - (b - w) > 64) return; /* longer than any valid local part */
        b -= w;
    }
    if (b > 0 && s[b - 1] == '@') return;
    if (b < a && escape_before(s, b + 1)) b++; /* "\nname@..." in JSON or code: the n is the escape's */
    /* trim leading punctuation; reject dots at the end or doubled */
    while (b < a && (s[b] == '.' || s[b] == '%' || s[b] == '+' || s[b] == '-')) b++;
    if (b == a || s[a - 1] == '.') return;
    for (size_t i = b; i + 1 < a; i++)
        if (s[i] == '.' && s[i + 1] == '.') return;
    /* domain, forwards */
    size_t p = a + 1, label_start = p, n_labels = 0, last_label = p;
    for (;;) {
        size_t q = p;
        while (q < len && q - p <= 63) {
            size_t w;
            long c = next_cp(s, len, q, &w);
            if (c < 0x80 ? (is_alnum((int)c) || c == '-') : cp_is_word((uint32_t)c)) q += w;
            else break;
        }
        if (q - p > 63) return;
        if (q == p) break;
        if (s[p] == '-' || s[q - 1] == '-') return;
        n_labels++;
        last_label = p;
        p = q;
        if (p - label_start > 253) return;
        if (at(s, len, p) == '.' && p + 1 < len) {
            size_t w;
            long c = next_cp(s, len, p + 1, &w);
            if (c >= 0 && (c < 0x80 ? is_alnum((int)c) : cp_is_word((uint32_t)c))) {
                p++;
                continue;
            }
        }
        break;
    }
    if (n_labels < 2) return;
    int nx = at(s, len, p);
    if (nx == '@' || nx == '_' || nx == '-' || word_after(s, len, p)) return;
    if (!tld_ok(s + last_label, p - last_label)) return;
    push(ctx, GM_PII_EMAIL, b, p, "email", 1);
}

/* ---- phone numbers ----------------------------------------------------------------------------- */

/* Is the start of these digits an assigned ITU country code? */
static int country_code_ok(const char *d, size_t n) {
    if (n < 1) return 0;
    int a = d[0] - '0';
    if (a == 1 || a == 7) return 1;
    if (n < 2) return 0;
    int ab = a * 10 + (d[1] - '0');
    static const unsigned char TWO[] = {20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46,
                                        47, 48, 49, 51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63,
                                        64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98};
    for (size_t i = 0; i < sizeof TWO; i++)
        if (TWO[i] == ab) return 1;
    if (n < 3) return 0;
    static const unsigned char ZONES3[] = {21, 22, 23, 24, 25, 26, 29, 35, 37, 38, 42, 50,
                                           59, 67, 68, 69, 80, 85, 87, 88, 96, 97, 99};
    for (size_t i = 0; i < sizeof ZONES3; i++)
        if (ZONES3[i] == ab) return 1;
    return 0;
}

static int phone_left_ok(const char *s, size_t i) {
    if (!num_left_ok(s, i)) return 0;
    if (i > 0 && (s[i - 1] == '#' || s[i - 1] == '$')) return 0;
    return 1;
}

/* '+' CC ... or "00" CC ... */
static size_t match_phone_intl(const char *s, size_t len, size_t i) {
    if (!phone_left_ok(s, i)) return 0;
    size_t p = i + (s[i] == '+' ? 1 : 2);
    int c0 = at(s, len, p);
    if (!is_digit(c0) || c0 == '0') return 0;
    char dig[16];
    size_t nd = 0, end = 0;
    for (;;) {
        int c = at(s, len, p);
        if (c == '(') {
            size_t k = digit_run(s, len, p + 1, 5);
            if (k < 1 || k > 5 || at(s, len, p + 1 + k) != ')' || nd == 0) break;
            if (!(k == 1 && s[p + 1] == '0')) { /* "(0)" is the trunk prefix: not dialled from abroad */
                if (nd + k > 15) return 0;
                memcpy(dig + nd, s + p + 1, k);
                nd += k;
            }
            p += k + 2;
            end = p;
            if (is_digit(at(s, len, p))) continue;
        } else if (is_digit(c)) {
            size_t k = digit_run(s, len, p, 15);
            if (nd + k > 15) return 0;
            memcpy(dig + nd, s + p, k);
            nd += k;
            p += k;
            end = p;
        } else {
            break;
        }
        c = at(s, len, p);
        int c1 = at(s, len, p + 1);
        if ((c == ' ' || c == '-' || c == '.') && (is_digit(c1) || c1 == '(')) {
            p++;
            continue;
        }
        if (c == '(') continue;
        break;
    }
    if (nd < 8 || nd > 15 || !country_code_ok(dig, nd)) return 0;
    if (!num_right_ok(s, len, end)) return 0;
    return end;
}

/* [1 sep] NXX sep NXX sep XXXX  or  [1 sep] (NXX) NXX-XXXX */
static size_t match_phone_nanp(const char *s, size_t len, size_t i) {
    if (!phone_left_ok(s, i)) return 0;
    size_t p = i;
    int c = at(s, len, p);
    if (c == '1') {
        int sp = at(s, len, p + 1), nx = at(s, len, p + 2);
        if ((sp == '-' || sp == '.' || sp == ' ') && (nx == '(' || is_digit(nx))) p += 2;
        else return 0;
    }
    int sep;
    if (at(s, len, p) == '(') {
        if (digit_run(s, len, p + 1, 3) != 3 || at(s, len, p + 4) != ')' || s[p + 1] < '2') return 0;
        p += 5;
        if (at(s, len, p) == ' ' || at(s, len, p) == '-') p++;
        if (digit_run(s, len, p, 3) != 3 || s[p] < '2') return 0;
        p += 3;
        sep = at(s, len, p);
        if (sep != '-' && sep != '.' && sep != ' ') return 0;
        p++;
    } else {
        if (digit_run(s, len, p, 3) != 3 || s[p] < '2') return 0;
        sep = at(s, len, p + 3);
        if (sep != '-' && sep != '.' && sep != ' ') return 0;
        p += 4;
        if (digit_run(s, len, p, 3) != 3 || s[p] < '2' || at(s, len, p + 3) != sep) return 0;
        p += 4;
    }
    if (digit_run(s, len, p, 4) != 4) return 0;
    p += 4;
    if (!num_right_ok(s, len, p)) return 0;
    if (sep != ' ' && at(s, len, p) == sep && is_digit(at(s, len, p + 1))) return 0;
    return p;
}

/* National number with trunk prefix 0: 0XX[X] sep group sep group..., 9-12 digits. */
static size_t match_phone_trunk(const char *s, size_t len, size_t i) {
    if (!phone_left_ok(s, i)) return 0;
    size_t p = i, nd = 0, groups = 0, end;
    int sep = 0;
    if (s[p] == '(') {
        size_t k = digit_run(s, len, p + 1, 5);
        if (k < 2 || k > 5 || s[p + 1] != '0' || s[p + 2] == '0' || at(s, len, p + 1 + k) != ')') return 0;
        nd = k;
        p += k + 2;
        int c = at(s, len, p);
        if (c == ' ' || c == '-') p++;
        if (!is_digit(at(s, len, p))) return 0;
        sep = -1; /* any separator next */
        groups = 1;
    } else {
        size_t k = digit_run(s, len, p, 5);
        if (k < 2 || k > 5 || s[p + 1] == '0') return 0;
        nd = k;
        p += k;
        groups = 1;
        int c = at(s, len, p);
        if (c == '/') {
            p++;
            sep = -1;
        } else if (c == ' ' || c == '-' || c == '.') {
            sep = c;
            p++;
        } else {
            return 0;
        }
    }
    end = p;
    size_t first_len = nd;
    int pairs = 1, long_groups = 1; /* later groups all of 2 digits (01 99 00 12 34), or all of 3+ */
    for (;;) {
        size_t k = digit_run(s, len, p, 8);
        if (k < 2 || k > 8 || nd + k > 12) break;
        if (!(pairs && k == 2) && !(long_groups && k >= 3)) break;
        pairs &= k == 2;
        long_groups &= k >= 3;
        nd += k;
        p += k;
        end = p;
        groups++;
        int c = at(s, len, p);
        if (!(c == ' ' || c == '-' || c == '.')) break;
        if (sep == -1) sep = c;
        else if (c != sep) break;
        if (!is_digit(at(s, len, p + 1))) break;
        p++;
    }
    if (groups < 2 || nd < 9 || nd > 12) return 0;
    if (pairs && (first_len != 2 || groups < 5)) return 0;
    if (word_after(s, len, end)) return 0;
    int c = at(s, len, end);
    if ((c == '-' || c == '.' || c == '/') && is_digit(at(s, len, end + 1))) return 0;
    return end;
}

/* ---- payment cards ----------------------------------------------------------------------------- */

static const char *card_brand(const char *d, size_t n) {
    int p1 = d[0] - '0', p2 = num2(d), p3 = p2 * 10 + (d[2] - '0'), p4 = p3 * 10 + (d[3] - '0');
    if (p1 == 4 && (n == 13 || n == 16 || n == 19)) return "visa";
    if (((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n == 16) return "mastercard";
    if ((p2 == 34 || p2 == 37) && n == 15) return "amex";
    if ((p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649)) && n >= 16) return "discover";
    if (p4 >= 3528 && p4 <= 3589 && n >= 16) return "jcb";
    if (((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38 || p2 == 39) && n >= 14) return "diners";
    if (p2 == 62 && n >= 16) return "unionpay";
    if (p4 >= 2200 && p4 <= 2204 && n >= 16) return "mir";
    if ((p2 == 50 || (p2 >= 56 && p2 <= 58) || p2 == 63 || p2 == 67) && n >= 13) return "maestro";
    return NULL;
}

static void match_card(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    if (!num_left_ok(s, i)) return;
    char d[20];
    size_t glen[20], gend[20], ng = 0, nd = 0, p = i;
    int sep = 0;
    for (;;) {
        size_t k = digit_run(s, len, p, 19);
        if (k == 0 || nd + k > 19) {
            if (k && ng == 0) return; /* a run of more than 19 digits */
            break;
        }
        memcpy(d + nd, s + p, k);
        nd += k;
        p += k;
        glen[ng] = k;
        gend[ng++] = p;
        int c = at(s, len, p);
        if ((c == ' ' || c == '-') && (sep == 0 || c == sep) && is_digit(at(s, len, p + 1)) && ng < 19) {
            sep = c;
            p++;
            continue;
        }
        break;
    }
    /* Try the longest prefix of groups that forms a valid number. */
    for (size_t g = ng; g >= 1; g--) {
        size_t n = 0;
        for (size_t k = 0; k < g; k++) n += glen[k];
        if (n < 13 || n > 19) continue;
        int shape_ok;
        if (g == 1) shape_ok = 1;
        else if (g == 3 && glen[0] == 4 && glen[1] == 6 && (glen[2] == 5 || glen[2] == 4)) shape_ok = 1;
        else {
            shape_ok = 1;
            for (size_t k = 0; k + 1 < g; k++) shape_ok &= glen[k] == 4;
            shape_ok &= glen[g - 1] >= 1 && glen[g - 1] <= 4;
        }
        const char *brand = card_brand(d, n);
        if (!shape_ok || !brand) continue;
        /* The longest grouping that is a plausible card decides: "4000 0079 0871 0558 256" fails Luhn as
         * 19 digits and is not then tried as 16 (the way "4111 1111 1111 1111 12/29" is, 18 being no
         * Visa length). */
        size_t e = gend[g - 1];
        int c = at(s, len, e);
        if (word_after(s, len, e)) return;
        if (g == ng && (c == '.' || c == '-' || c == '/') && is_digit(at(s, len, e + 1))) return;
        if (g < ng && sep == '-') return; /* "4111-1111-1111-1111-22": part of something longer */
        if (gm_pii_luhn_valid(d, n)) push(ctx, GM_PII_CARD, i, e, brand, 1);
        return;
    }
}

/* ---- IBAN -------------------------------------------------------------------------------------- */

static void match_iban(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    if (word_before(s, i)) return;
    int L = iban_length(at(s, len, i), at(s, len, i + 1));
    if (!L || !is_digit(at(s, len, i + 2)) || !is_digit(at(s, len, i + 3))) return;
    char c[40];
    size_t n = 0, p = i;
    int printed = at(s, len, i + 4) == ' ';
    while (n < (size_t)L) {
        int ch = at(s, len, p);
        if (is_upper(ch) || is_digit(ch)) {
            c[n++] = (char)ch;
            p++;
            if (printed && n % 4 == 0 && n < (size_t)L) {
                if (at(s, len, p) != ' ') return;
                p++;
            }
        } else {
            return;
        }
    }
    if (word_after(s, len, p)) return;
    if (!iban_check(c, n)) return;
    push(ctx, GM_PII_IBAN, i, p, "iban", 1);
}

/* ---- national IDs ------------------------------------------------------------------------------ */

static void match_ssn(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    if (!num_left_ok(s, i)) return;
    if (digit_run(s, len, i, 3) != 3) return;
    int sep = at(s, len, i + 3);
    if (sep != '-' && sep != ' ') return;
    if (digit_run(s, len, i + 4, 2) != 2 || at(s, len, i + 6) != sep || digit_run(s, len, i + 7, 4) != 4) return;
    size_t e = i + 11;
    if (!num_right_ok(s, len, e)) return;
    if (sep == ' ' && at(s, len, e) == ' ' && is_digit(at(s, len, e + 1))) return;
    int area = (s[i] - '0') * 100 + num2(s + i + 1), group = num2(s + i + 4);
    int serial = num2(s + i + 7) * 100 + num2(s + i + 9);
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0) return;
    if (area == 78 && group == 5 && serial == 1120) return; /* the Woolworth wallet card number, voided */
    push(ctx, GM_PII_NATIONAL_ID, i, e, "us_ssn", 1);
}

static void match_nino(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    int a = at(s, len, i), b = at(s, len, i + 1);
    if (!is_upper(a) || !is_upper(b) || word_before(s, i)) return;
    if (strchr("DFIQUV", a) || strchr("DFIOQUV", b)) return;
    static const char *const BAD[] = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"};
    for (size_t k = 0; k < 7; k++)
        if (BAD[k][0] == a && BAD[k][1] == b) return;
    size_t p = i + 2;
    int spaced = at(s, len, p) == ' ';
    if (!spaced) {
        if (digit_run(s, len, p, 6) != 6) return;
        p += 6;
    }
    for (int k = 0; k < 3 && spaced; k++) {
        if (at(s, len, p) != ' ' || digit_run(s, len, p + 1, 2) != 2) return;
        p += 3;
    }
    if (spaced) {
        if (at(s, len, p) != ' ') return;
        p++;
    }
    int suf = at(s, len, p);
    if (suf < 'A' || suf > 'D') return;
    p++;
    if (word_after(s, len, p)) return;
    push(ctx, GM_PII_NATIONAL_ID, i, p, "uk_nino", 1);
}

static const char DNI_LETTERS[] = "TRWAGMYFPDXBNJZSQVHLCKE";

static void match_dni(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    if (!num_left_ok(s, i)) return;
    int first = at(s, len, i);
    int nie = first == 'X' || first == 'Y' || first == 'Z';
    if (nie && word_before(s, i)) return;
    size_t nd = nie ? 7 : 8, p = i + (nie ? 1 : 0);
    if (digit_run(s, len, p, nd) != nd) return;
    unsigned long v = nie ? (unsigned long)(first - 'X') : 0;
    for (size_t k = 0; k < nd; k++) v = v * 10 + (unsigned long)(s[p + k] - '0');
    p += nd;
    if (at(s, len, p) == '-') p++;
    if (at(s, len, p) != DNI_LETTERS[v % 23]) return;
    p++;
    if (word_after(s, len, p) || (at(s, len, p) == '-' && is_alnum(at(s, len, p + 1)))) return;
    push(ctx, GM_PII_NATIONAL_ID, i, p, nie ? "es_nie" : "es_dni", 1);
}

static void match_cn_ric(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    if (!num_left_ok(s, i) || digit_run(s, len, i, 18) < 17) return;
    int last = at(s, len, i + 17);
    if (!is_digit(last) && last != 'X' && last != 'x') return;
    if (!num_right_ok(s, len, i + 18)) return;
    int region = num2(s + i);
    if (!((region >= 11 && region <= 15) || (region >= 21 && region <= 23) || (region >= 31 && region <= 37) ||
          (region >= 41 && region <= 46) || (region >= 50 && region <= 54) || (region >= 61 && region <= 65) ||
          region == 71 || region == 81 || region == 82))
        return;
    int y = num2(s + i + 6) * 100 + num2(s + i + 8), m = num2(s + i + 10), d = num2(s + i + 12);
    if (y < 1900 || y > 2099 || !valid_date(y, m, d)) return;
    static const int W[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    int sum = 0;
    for (int k = 0; k < 17; k++) sum += W[k] * (s[i + k] - '0');
    if ("10X98765432"[sum % 11] != (last == 'x' ? 'X' : last)) return;
    push(ctx, GM_PII_NATIONAL_ID, i, i + 18, "cn_ric", 1);
}

static void match_hetu(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    if (!num_left_ok(s, i) || digit_run(s, len, i, 6) != 6) return;
    int cs = at(s, len, i + 6);
    int century;
    if (cs == '+') century = 1800;
    else if (cs == '-' || (cs >= 'U' && cs <= 'Y')) century = 1900;
    else if (cs >= 'A' && cs <= 'F') century = 2000;
    else return;
    if (!is_digit(at(s, len, i + 7)) || !is_digit(at(s, len, i + 8)) || !is_digit(at(s, len, i + 9))) return;
    int q = at(s, len, i + 10);
    if (q < 0 || word_after(s, len, i + 11)) return;
    int dd = num2(s + i), mm = num2(s + i + 2), yy = num2(s + i + 4);
    int ind = (s[i + 7] - '0') * 100 + num2(s + i + 8);
    if (ind < 2 || ind > 899 || !valid_date(century + yy, mm, dd)) return;
    unsigned long v = 0;
    for (int k = 0; k < 6; k++) v = v * 10 + (unsigned long)(s[i + k] - '0');
    v = v * 1000 + (unsigned long)ind;
    if ("0123456789ABCDEFHJKLMNPRSTUVWXY"[v % 31] != q) return;
    if (at(s, len, i + 11) == '-' && is_digit(at(s, len, i + 12))) return;
    push(ctx, GM_PII_NATIONAL_ID, i, i + 11, "fi_hetu", 1);
}

static void match_aadhaar(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    if (!num_left_ok(s, i) || s[i] < '2') return;
    if (digit_run(s, len, i, 4) != 4) return;
    int sep = at(s, len, i + 4);
    if (sep != ' ' && sep != '-') return;
    if (digit_run(s, len, i + 5, 4) != 4 || at(s, len, i + 9) != sep || digit_run(s, len, i + 10, 4) != 4) return;
    size_t e = i + 14;
    if (!num_right_ok(s, len, e) || (at(s, len, e) == sep && is_digit(at(s, len, e + 1)))) return;
    char d[12];
    memcpy(d, s + i, 4);
    memcpy(d + 4, s + i + 5, 4);
    memcpy(d + 8, s + i + 10, 4);
    if (!verhoeff_valid(d, 12)) return;
    push(ctx, GM_PII_NATIONAL_ID, i, e, "in_aadhaar", 1);
}

/* ---- IP addresses ------------------------------------------------------------------------------ */

/* Dotted quad at s[i..]: returns its end (0 if none) and the four octets. */
static size_t parse_ipv4(const char *s, size_t len, size_t i, unsigned char oct[4]) {
    size_t p = i;
    for (int k = 0; k < 4; k++) {
        if (k) {
            if (at(s, len, p) != '.') return 0;
            p++;
        }
        size_t n = digit_run(s, len, p, 3);
        if (n < 1 || n > 3 || (n > 1 && s[p] == '0')) return 0;
        int v = 0;
        for (size_t j = 0; j < n; j++) v = v * 10 + (s[p + j] - '0');
        if (v > 255) return 0;
        oct[k] = (unsigned char)v;
        p += n;
    }
    return p;
}

static int ipv4_local(const unsigned char o[4]) {
    return o[0] == 0 || o[0] == 10 || o[0] == 127 || (o[0] == 169 && o[1] == 254) ||
           (o[0] == 172 && (o[1] & 0xF0) == 16) || (o[0] == 192 && o[1] == 168);
}

static void match_ipv4(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    if (word_before(s, i)) return;
    if (i > 0 && (s[i - 1] == '.' || s[i - 1] == '-') && i >= 2 && is_alnum((unsigned char)s[i - 2])) return;
    if (i >= 8 && !strncmp(s + i - 8, "version ", 8)) return;
    if (i >= 8 && !strncmp(s + i - 8, "Version ", 8)) return;
    unsigned char o[4];
    size_t e = parse_ipv4(s, len, i, o);
    if (!e || word_after(s, len, e)) return;
    int c = at(s, len, e);
    if ((c == '.' || c == '-') && is_alnum(at(s, len, e + 1))) return;
    if (ctx->skip_local_ip && ipv4_local(o)) return;
    push(ctx, GM_PII_IPV4, i, e, "ipv4", 1);
}

static int ipv6_char(int c) { return is_hex(c) || c == ':'; }

static void match_ipv6(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    if (word_before(s, i)) return;
    if (i > 0 && (s[i - 1] == ':' || s[i - 1] == '.')) return;
    size_t p = i;
    int groups = 0, dc = -1, digit_seen = 0, v4 = 0;
    unsigned g[8];
    if (s[p] == ':') {
        if (at(s, len, p + 1) != ':') return;
        dc = 0;
        p += 2;
    }
    for (;;) {
        size_t k = 0;
        while (k < 5 && is_hex(at(s, len, p + k))) k++;
        if (k == 0) break;
        if (k > 4) return;
        /* an IPv4 tail? */
        if (at(s, len, p + k) == '.' && groups <= 6) {
            unsigned char o[4];
            size_t e = parse_ipv4(s, len, p, o);
            if (!e) return;
            g[groups++] = (unsigned)o[0] << 8 | o[1];
            g[groups++] = (unsigned)o[2] << 8 | o[3];
            p = e;
            v4 = 1;
            digit_seen = 1;
            break;
        }
        if (groups == 8) return;
        unsigned v = 0;
        for (size_t j = 0; j < k; j++) {
            int c = (unsigned char)s[p + j];
            digit_seen |= is_digit(c);
            v = v * 16 + (unsigned)(is_digit(c) ? c - '0' : lower(c) - 'a' + 10);
        }
        g[groups++] = v;
        p += k;
        if (at(s, len, p) == ':' && at(s, len, p + 1) == ':') {
            if (dc >= 0) return;
            dc = groups;
            p += 2;
            if (!is_hex(at(s, len, p))) break;
            continue;
        }
        if (at(s, len, p) == ':' && is_hex(at(s, len, p + 1))) {
            p++;
            continue;
        }
        break;
    }
    if (dc < 0 ? groups != 8 : (groups > 7 || groups == 0)) return;
    if (dc >= 0 && !digit_seen) return;
    if (dc >= 0 && !v4 && groups <= 2 && !(groups == 1 && dc == 0 && g[0] == 1)) {
        /* "::3", "1::2" are Python slices far more often than addresses: a short compressed form needs a
         * group with a hex letter or four digits (fe80::1, 2001::, ff02::2), or is ::1 */
        int strong = 0;
        size_t q = i;
        while (q < p && !strong) {
            size_t k = 0;
            int letter = 0;
            while (q + k < p && is_hex((unsigned char)s[q + k])) letter |= !is_digit((unsigned char)s[q + k]), k++;
            strong = letter || k == 4;
            q += k ? k : 1;
        }
        if (!strong) return;
    }
    if (groups > 8) return;
    size_t e = p;
    /* zone id */
    if (at(s, len, e) == '%' && !v4) {
        size_t k = 0;
        while (k < 32) {
            int c = at(s, len, e + 1 + k);
            if (!(is_alnum(c) || c == '.' || c == '_' || c == '~' || c == '-')) break;
            k++;
        }
        if (k > 0 && k < 32) e += 1 + k;
    }
    if (word_after(s, len, e)) return;
    int c = at(s, len, e);
    if (c == ':' && ipv6_char(at(s, len, e + 1))) return;
    if (c == '.' && is_alnum(at(s, len, e + 1))) return;
    if (ctx->skip_local_ip) {
        unsigned full[8] = {0};
        if (dc < 0) memcpy(full, g, sizeof full);
        else {
            for (int k = 0; k < dc; k++) full[k] = g[k];
            for (int k = dc; k < groups; k++) full[8 - (groups - k)] = g[k];
        }
        int zero6 = !(full[0] | full[1] | full[2] | full[3] | full[4] | full[5] | full[6]);
        if ((zero6 && full[7] <= 1) || (full[0] & 0xFFC0) == 0xFE80 || (full[0] & 0xFE00) == 0xFC00) return;
    }
    push(ctx, GM_PII_IPV6, i, e, "ipv6", 1);
}

/* ---- credentials ------------------------------------------------------------------------------- */

static int b64_char(int c) { return is_alnum(c) || c == '+' || c == '/' || c == '='; }

/* s[i..] == "-----BEGIN ": returns the end of the block (0 if none). */
static size_t match_pem(const char *s, size_t len, size_t i) {
    static const char BEGIN[] = "-----BEGIN ";
    if (len - i < sizeof BEGIN - 1 + 16 || memcmp(s + i, BEGIN, sizeof BEGIN - 1)) return 0;
    size_t lab = i + sizeof BEGIN - 1, p = lab;
    while (p < len && p - lab < 64 && (is_upper((unsigned char)s[p]) || is_digit((unsigned char)s[p]) || s[p] == ' '))
        p++;
    size_t lab_len = p - lab;
    if (len - p < 5 || memcmp(s + p, "-----", 5)) return 0;
    const char *l = s + lab;
    int ok = (lab_len >= 11 && !memcmp(l + lab_len - 11, "PRIVATE KEY", 11)) ||
             (lab_len >= 17 && !memcmp(l + lab_len - 17, "PRIVATE KEY BLOCK", 17));
    if (!ok) return 0;
    /* The body, line by line: base64 lines, blank lines and, before any base64, "Proc-Type: 4,ENCRYPTED" or
     * "Version: ..." header lines, up to the END marker with the same label. Any other line ends the scan
     * (a truncated key: the base64 seen so far is the finding). Another BEGIN line is such a line, so the
     * scans of successive BEGINs never overlap and scanning stays linear. */
    size_t body = p + 5, k = body, last = body, nb = 0, end = 0;
    size_t limit = len - body < 65536 ? len : body + 65536;
    while (k < limit && !end) {
        size_t line_nb = 0, line_last = 0, line_start = k;
        int other = 0, colon = 0;
        for (; k < limit && s[k] != '\n'; k++) {
            int c = (unsigned char)s[k];
            if (c == '\\' && k + 1 < limit && (s[k + 1] == 'n' || s[k + 1] == 'r')) { /* JSON/code-escaped */
                k++;
                break;
            }
            if (c == '-' && limit - k >= 9 && !memcmp(s + k, "-----END ", 9)) {
                if (limit - k >= 9 + lab_len + 5 && !memcmp(s + k + 9, l, lab_len) &&
                    !memcmp(s + k + 9 + lab_len, "-----", 5))
                    end = k + 9 + lab_len + 5;
                else other = 1;
                break;
            }
            if (b64_char(c)) {
                line_nb++;
                line_last = k + 1;
            } else if (c != ' ' && c != '\t' && c != '\r') {
                other = 1;
                colon |= c == ':';
            }
            /* a line that is not base64 can only be a short header line before the base64 */
            if (other && (nb > 0 || k - line_start > 256)) break;
        }
        if (!other) {
            nb += line_nb;
            if (line_nb) last = line_last;
        } else if (!(colon && nb == 0 && !end)) {
            break;
        }
        if (end) break;
        k++; /* past the newline */
    }
    if (!end) end = last;
    return nb >= 32 ? end : 0;
}

enum { CS_ALNUM = 1, CS_UPPER_DIGIT, CS_ALNUM_US, CS_ALNUM_DASH_US, CS_ALNUM_DASH, CS_ALNUM_DOT_DASH_US };

static int cs_has(int cs, int c) {
    switch (cs) {
    case CS_ALNUM: return is_alnum(c);
    case CS_UPPER_DIGIT: return is_upper(c) || is_digit(c);
    case CS_ALNUM_US: return is_alnum(c) || c == '_';
    case CS_ALNUM_DASH_US: return is_alnum(c) || c == '_' || c == '-';
    case CS_ALNUM_DASH: return is_alnum(c) || c == '-';
    case CS_ALNUM_DOT_DASH_US: return is_alnum(c) || c == '_' || c == '-' || c == '.';
    default: return 0;
    }
}

static const struct {
    const char *prefix;
    int cs;
    unsigned short min, max;
    float min_h;   /* bits per character of the body */
    int need_mix;  /* body needs both letters and digits */
    const char *rule;
} KEYS[] = {
    {"AKIA", CS_UPPER_DIGIT, 16, 16, 3.0f, 0, "aws_access_key"},
    {"ASIA", CS_UPPER_DIGIT, 16, 16, 3.0f, 0, "aws_access_key"},
    {"ABIA", CS_UPPER_DIGIT, 16, 16, 3.0f, 0, "aws_access_key"},
    {"ACCA", CS_UPPER_DIGIT, 16, 16, 3.0f, 0, "aws_access_key"},
    {"AGPA", CS_UPPER_DIGIT, 16, 16, 3.0f, 0, "aws_access_key"},
    {"AIDA", CS_UPPER_DIGIT, 16, 16, 3.0f, 0, "aws_access_key"},
    {"AROA", CS_UPPER_DIGIT, 16, 16, 3.0f, 0, "aws_access_key"},
    {"ANPA", CS_UPPER_DIGIT, 16, 16, 3.0f, 0, "aws_access_key"},
    {"ANVA", CS_UPPER_DIGIT, 16, 16, 3.0f, 0, "aws_access_key"},
    {"APKA", CS_UPPER_DIGIT, 16, 16, 3.0f, 0, "aws_access_key"},
    {"AIza", CS_ALNUM_DASH_US, 35, 35, 3.5f, 0, "google_api_key"},
    {"ghp_", CS_ALNUM, 30, 60, 3.5f, 1, "github_token"},
    {"gho_", CS_ALNUM, 30, 60, 3.5f, 1, "github_token"},
    {"ghu_", CS_ALNUM, 30, 60, 3.5f, 1, "github_token"},
    {"ghs_", CS_ALNUM, 30, 60, 3.5f, 1, "github_token"},
    {"ghr_", CS_ALNUM, 30, 60, 3.5f, 1, "github_token"},
    {"github_pat_", CS_ALNUM_US, 40, 120, 3.5f, 1, "github_token"},
    {"glpat-", CS_ALNUM_DASH_US, 20, 64, 3.5f, 1, "gitlab_token"},
    {"xoxb-", CS_ALNUM_DASH, 20, 250, 3.0f, 1, "slack_token"},
    {"xoxp-", CS_ALNUM_DASH, 20, 250, 3.0f, 1, "slack_token"},
    {"xoxa-", CS_ALNUM_DASH, 20, 250, 3.0f, 1, "slack_token"},
    {"xoxr-", CS_ALNUM_DASH, 20, 250, 3.0f, 1, "slack_token"},
    {"xoxs-", CS_ALNUM_DASH, 20, 250, 3.0f, 1, "slack_token"},
    {"xoxe-", CS_ALNUM_DASH, 20, 250, 3.0f, 1, "slack_token"},
    {"sk_live_", CS_ALNUM, 16, 128, 3.5f, 1, "stripe_key"},
    {"sk_test_", CS_ALNUM, 16, 128, 3.5f, 1, "stripe_key"},
    {"rk_live_", CS_ALNUM, 16, 128, 3.5f, 1, "stripe_key"},
    {"rk_test_", CS_ALNUM, 16, 128, 3.5f, 1, "stripe_key"},
    {"sk-", CS_ALNUM_DASH_US, 20, 200, 3.5f, 1, "openai_key"},
    {"hf_", CS_ALNUM, 30, 40, 3.5f, 1, "huggingface_token"},
    {"npm_", CS_ALNUM, 36, 36, 3.5f, 1, "npm_token"},
    {"pypi-", CS_ALNUM_DASH_US, 50, 300, 3.5f, 1, "pypi_token"},
    {"SG.", CS_ALNUM_DOT_DASH_US, 60, 70, 3.5f, 1, "sendgrid_key"},
};

static int key_body_ok(const char *b, size_t n, float min_h, int need_mix) {
    if (need_mix && !has_digit_and_letter(b, n)) return 0;
    return entropy(b, n) >= min_h;
}

/* Could a KEYS prefix start with these two bytes? (Most words cannot: this keeps prose fast.) */
static int key_prefix_possible(int a, int b) {
    switch (a) {
    case 'A': return b == 'K' || b == 'S' || b == 'B' || b == 'C' || b == 'G' || b == 'I' || b == 'R' || b == 'N' ||
                     b == 'P';
    case 'g': return b == 'h' || b == 'l' || b == 'i';
    case 'x': return b == 'o';
    case 's': case 'r': return b == 'k';
    case 'h': return b == 'f';
    case 'n': return b == 'p';
    case 'p': return b == 'y';
    case 'S': return b == 'G';
    default: return 0;
    }
}

static void match_api_key(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    for (size_t k = 0; k < sizeof KEYS / sizeof KEYS[0]; k++) {
        const char *pre = KEYS[k].prefix;
        if (pre[0] != s[i] || pre[1] != at(s, len, i + 1)) continue;
        size_t pl = strlen(pre);
        if (len - i < pl || memcmp(s + i, pre, pl)) continue;
        if (word_before(s, i)) return;
        if (i >= 2 && (s[i - 1] == '-' || s[i - 1] == '.') && is_alnum((unsigned char)s[i - 2])) return;
        size_t b = i + pl, n = 0;
        while (n <= KEYS[k].max && cs_has(KEYS[k].cs, at(s, len, b + n))) n++;
        size_t e = b + n;
        /* a trailing '.' ends the sentence, not the key ('-' and '_' can end base64url bodies) */
        while (n > 0 && s[e - 1] == '.') {
            n--;
            e--;
        }
        if (n < KEYS[k].min || n > KEYS[k].max || word_after(s, len, e)) continue;
        if (!key_body_ok(s + b, n, KEYS[k].min_h, KEYS[k].need_mix)) continue;
        push(ctx, GM_PII_API_KEY, i, e, KEYS[k].rule, 1);
        return;
    }
}

static int secret_value_char(int c) {
    return is_alnum(c) || c == '+' || c == '/' || c == '=' || c == '_' || c == '-' || c == '.' || c == '~';
}

/* s[i] is '=' or ':': NAME = VALUE where NAME suggests a secret. */
static void match_assigned_secret(scan_ctx *ctx, const char *s, size_t len, size_t i) {
    /* the name, backwards: skip spaces and a closing quote */
    size_t p = i;
    if (s[i] == ':' && at(s, len, i + 1) == '=') { /* := */
    } else if (s[i] == '=' && i > 0 && (s[i - 1] == '=' || s[i - 1] == '!' || s[i - 1] == '<' || s[i - 1] == '>')) {
        return;
    }
    while (p > 0 && i - p < 4 && s[p - 1] == ' ') p--;
    if (p > 0 && (s[p - 1] == '"' || s[p - 1] == '\'')) p--;
    size_t ne = p;
    while (p > 0 && ne - p < 64 &&
           (is_alnum((unsigned char)s[p - 1]) || s[p - 1] == '_' || s[p - 1] == '-' || s[p - 1] == '.'))
        p--;
    if (ne - p < 3 || ne - p >= 64) return;
    char name[64];
    for (size_t k = p; k < ne; k++) name[k - p] = (char)lower((unsigned char)s[k]);
    name[ne - p] = 0;
    static const char *const HINTS[] = {"key", "secret", "token", "passw", "pwd", "credential", "auth"};
    int hit = 0;
    for (size_t k = 0; k < sizeof HINTS / sizeof HINTS[0] && !hit; k++) hit = strstr(name, HINTS[k]) != NULL;
    if (!hit) return;
    /* the value */
    size_t v = i + 1;
    if (at(s, len, v) == '=' || at(s, len, v) == '>') v++; /* := or => */
    size_t sp = 0;
    while (sp < 4 && (at(s, len, v) == ' ' || at(s, len, v) == '\t')) v++, sp++;
    if (len - v > 7 && (!strncmp(s + v, "Bearer ", 7) || !strncmp(s + v, "bearer ", 7))) v += 7;
    int q = at(s, len, v);
    int quoted = q == '"' || q == '\'' || q == '`';
    if (quoted) v++;
    /* the run of value characters from v: cached, since "key=key=key=..." would rescan it per '=' */
    size_t run_end;
    if (v >= ctx->vrun_start && v < ctx->vrun_end) {
        run_end = ctx->vrun_end;
    } else {
        run_end = v;
        while (run_end < len && secret_value_char((unsigned char)s[run_end])) run_end++;
        ctx->vrun_start = v;
        ctx->vrun_end = run_end;
    }
    size_t n = run_end - v;
    while (n > 0 && s[v + n - 1] == '.') n--;
    if (n < 16 || n > 512) return;
    if (quoted ? at(s, len, v + n) != q : word_after(s, len, v + n)) return;
    double h = entropy(s + v, n), floor = 0.8 * log2((double)n);
    if (floor > 3.5) floor = 3.5;
    if (!has_digit_and_letter(s + v, n) || h < floor) return;
    push(ctx, GM_PII_API_KEY, v, v + n, "assigned_secret", 0);
}

/* ---- driver ------------------------------------------------------------------------------------ */

/* All detectors that can start with a digit (s[i] starts a word), each tried only if the length of the
 * digit run and the byte after it fit its format (gsm8k-style text is full of short numbers). */
static void scan_digit_start(scan_ctx *c, const char *s, size_t len, size_t i) {
    int ch = (unsigned char)s[i];
    size_t k = digit_run(s, len, i, 19);
    int nx = at(s, len, i + k);
    int sep = nx == ' ' || nx == '-' || nx == '.' || nx == '/';
    if (!sep && k < 6 && nx != ':' && !is_hex(nx) && !is_upper(nx)) return; /* "12", "3)", "2024," */
    if (want(c, GM_PII_CARD) && (k >= 13 || (k == 4 && sep))) match_card(c, s, len, i);
    if (want(c, GM_PII_NATIONAL_ID)) {
        if (k == 3 && sep) match_ssn(c, s, len, i);
        if (k == 8) match_dni(c, s, len, i);
        if (k >= 17) match_cn_ric(c, s, len, i);
        if (k == 6) match_hetu(c, s, len, i);
        if (k == 4 && sep) match_aadhaar(c, s, len, i);
    }
    if (want(c, GM_PII_IPV4) && k <= 3 && nx == '.') match_ipv4(c, s, len, i);
    if (want(c, GM_PII_IPV6) && k <= 4) {
        size_t h = k;
        while (h < 5 && is_hex(at(s, len, i + h))) h++;
        if (at(s, len, i + h) == ':') match_ipv6(c, s, len, i);
    }
    if (want(c, GM_PII_PHONE)) {
        size_t e = 0;
        const char *rule = NULL;
        if (ch == '0' && at(s, len, i + 1) == '0') e = match_phone_intl(s, len, i), rule = "phone_intl";
        else if (ch == '0') {
            if (sep) e = match_phone_trunk(s, len, i), rule = "phone_national";
        } else if (sep && (k == 3 || k == 1)) e = match_phone_nanp(s, len, i), rule = "phone_nanp";
        if (e) push(c, GM_PII_PHONE, i, e, rule, 1);
    }
}

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->f.start != y->f.start) return x->f.start < y->f.start ? -1 : 1;
    if (x->f.end != y->f.end) return x->f.end > y->f.end ? -1 : 1; /* longer first */
    if (x->rank != y->rank) return x->rank > y->rank ? -1 : 1;
    return 0;
}

static int contains(const gm_pii_finding *a, const gm_pii_finding *b) {
    return a->start <= b->start && b->end <= a->end;
}

gm_status gm_pii_scan(const char *s, size_t len, const gm_pii_options *opt, gm_pii_finding **out, size_t *n_out) {
    if (!out || !n_out || (!s && len)) return gm_fail(GM_ERR_ARG, "gm_pii_scan: NULL argument");
    *out = NULL;
    *n_out = 0;
    scan_ctx c = {0};
    c.types = opt && opt->types ? opt->types : (1u << GM_PII_N_TYPES) - 1;
    c.skip_local_ip = opt ? opt->skip_local_ip : 0;
    const int w_num = want(&c, GM_PII_CARD) || want(&c, GM_PII_NATIONAL_ID) || want(&c, GM_PII_PHONE) ||
                      want(&c, GM_PII_IPV4) || want(&c, GM_PII_IPV6);
    size_t i = 0;
    while (i < len) {
        int ch = (unsigned char)s[i];
        if (is_alnum(ch) || ch == '_') {
            /* i starts a run of word characters (the loop skips whole runs); most words are plain prose,
             * so each detector's cheapest test on the next bytes comes first */
            int c1 = at(s, len, i + 1);
            if (is_digit(ch)) {
                if (w_num) scan_digit_start(&c, s, len, i);
            } else if (ch != '_') {
                if (is_upper(ch)) {
                    if (want(&c, GM_PII_IBAN) && is_upper(c1) && is_digit(at(s, len, i + 2))) match_iban(&c, s, len, i);
                    if (want(&c, GM_PII_NATIONAL_ID)) {
                        int c2 = at(s, len, i + 2);
                        if (is_upper(c1) && (is_digit(c2) || c2 == ' ')) match_nino(&c, s, len, i);
                        if (ch >= 'X' && is_digit(c1)) match_dni(&c, s, len, i);
                    }
                }
                if (want(&c, GM_PII_API_KEY) && key_prefix_possible(ch, c1)) match_api_key(&c, s, len, i);
                if (want(&c, GM_PII_IPV6) && is_hex(ch)) {
                    size_t k = 1;
                    while (k < 5 && is_hex(at(s, len, i + k))) k++;
                    if (at(s, len, i + k) == ':') match_ipv6(&c, s, len, i);
                }
            }
            size_t j = i + 1;
            /* "\n4111...": after an escape's letter the next character starts a word */
            if (!((ch == 'n' || ch == 't' || ch == 'r') && i > 0 && s[i - 1] == '\\'))
                while (j < len && (is_alnum((unsigned char)s[j]) || s[j] == '_')) j++;
            i = j;
            continue;
        }
        switch (ch) {
        case '@':
            if (want(&c, GM_PII_EMAIL)) match_email(&c, s, len, i);
            break;
        case '+':
            if (want(&c, GM_PII_PHONE) && is_digit(at(s, len, i + 1))) {
                size_t e = match_phone_intl(s, len, i);
                if (e) push(&c, GM_PII_PHONE, i, e, "phone_intl", 1);
            }
            break;
        case '(':
            if (want(&c, GM_PII_PHONE) && is_digit(at(s, len, i + 1))) {
                int trunk = at(s, len, i + 1) == '0';
                size_t e = trunk ? match_phone_trunk(s, len, i) : match_phone_nanp(s, len, i);
                if (e) push(&c, GM_PII_PHONE, i, e, trunk ? "phone_national" : "phone_nanp", 1);
            }
            break;
        case '-':
            if (want(&c, GM_PII_PRIVATE_KEY) && at(s, len, i + 5) == 'B') {
                size_t e = match_pem(s, len, i);
                if (e) {
                    push(&c, GM_PII_PRIVATE_KEY, i, e, "pem", 1);
                    i = e; /* nothing inside a key block is reported separately */
                    continue;
                }
            }
            break;
        case ':':
            if (want(&c, GM_PII_IPV6) && at(s, len, i + 1) == ':') match_ipv6(&c, s, len, i);
            /* fall through */
        case '=':
            if (want(&c, GM_PII_API_KEY)) match_assigned_secret(&c, s, len, i);
            break;
        default:
            break;
        }
        i++;
    }
    if (c.oom) {
        free(c.v);
        return gm_fail(GM_ERR_NOMEM, "gm_pii_scan: out of memory");
    }
    if (c.n == 0) {
        free(c.v);
        return GM_OK;
    }
    qsort(c.v, c.n, sizeof *c.v, cand_cmp);
    /* sweep: keep a span that contains an overlapping one, else the higher rank */
    size_t k = 0;
    for (size_t j = 0; j < c.n; j++) {
        if (k == 0 || c.v[j].f.start >= c.v[k - 1].f.end) {
            c.v[k++] = c.v[j];
            continue;
        }
        cand *last = &c.v[k - 1], *x = &c.v[j];
        if (contains(&last->f, &x->f) && !(last->f.start == x->f.start && last->f.end == x->f.end)) continue;
        if (x->rank > last->rank) *last = *x;
    }
    gm_pii_finding *f = malloc(k * sizeof *f);
    if (!f) {
        free(c.v);
        return gm_fail(GM_ERR_NOMEM, "gm_pii_scan: out of memory");
    }
    for (size_t j = 0; j < k; j++) f[j] = c.v[j].f;
    free(c.v);
    *out = f;
    *n_out = k;
    return GM_OK;
}

gm_status gm_pii_redact(const char *text, size_t len, const gm_pii_finding *f, size_t n, char **out,
                        size_t *out_len) {
    if (!out || !out_len || (!text && len) || (!f && n)) return gm_fail(GM_ERR_ARG, "gm_pii_redact: NULL argument");
    *out = NULL;
    *out_len = 0;
    size_t total = len, pos = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = gm_pii_type_name(f[i].type);
        if (!name || f[i].start < pos || f[i].end <= f[i].start || f[i].end > len)
            return gm_fail(GM_ERR_ARG, "gm_pii_redact: finding %zu is out of order, overlapping or out of bounds", i);
        total = total - (f[i].end - f[i].start) + strlen(name) + 2;
        pos = f[i].end;
    }
    char *o = malloc(total + 1);
    if (!o) return gm_fail(GM_ERR_NOMEM, "gm_pii_redact: out of memory");
    size_t w = 0;
    pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (f[i].start > pos) memcpy(o + w, text + pos, f[i].start - pos);
        w += f[i].start - pos;
        const char *name = gm_pii_type_name(f[i].type);
        size_t nl = strlen(name);
        o[w++] = '[';
        memcpy(o + w, name, nl);
        w += nl;
        o[w++] = ']';
        pos = f[i].end;
    }
    if (len > pos) memcpy(o + w, text + pos, len - pos);
    w += len - pos;
    o[w] = 0;
    *out = o;
    *out_len = w;
    return GM_OK;
}
