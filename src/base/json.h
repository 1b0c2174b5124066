/* A small, hardened JSON reader (RFC 8259): parses a whole document into a tree held in one arena.
 * Used for config.json, safetensors headers, tokenizer.json and JSONL inputs. Strings are unescaped
 * to UTF-8 and NUL-terminated (their length is kept, since "\u0000" is legal). Depth is limited and
 * invalid UTF-8 is rejected, so hostile files give a clear error rather than a crash. */
#ifndef GM_BASE_JSON_H
#define GM_BASE_JSON_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "gemma.h"

typedef enum { GM_JSON_NULL, GM_JSON_BOOL, GM_JSON_NUMBER, GM_JSON_STRING, GM_JSON_ARRAY, GM_JSON_OBJECT } gm_json_type;

typedef struct gm_json gm_json;
typedef struct gm_json_member gm_json_member;

struct gm_json {
    gm_json_type type;
    int is_int;        /* NUMBER: the literal is an integer that fits int64 (then `i` holds it exactly) */
    int boolean;       /* BOOL */
    int64_t i;         /* NUMBER, when is_int */
    double num;        /* NUMBER */
    size_t len;        /* STRING: byte length; ARRAY/OBJECT: number of items/members */
    const char *str;   /* STRING */
    gm_json *items;    /* ARRAY */
    gm_json_member *members; /* OBJECT, in file order */
};

struct gm_json_member {
    const char *key;
    size_t key_len;
    gm_json value;
};

typedef struct gm_json_doc gm_json_doc;

/* Parse text[0..len). `what` names the source in error messages (e.g. a file path). */
gm_status gm_json_parse(const char *text, size_t len, const char *what, gm_json_doc **out);
void gm_json_free(gm_json_doc *doc);
const gm_json *gm_json_root(const gm_json_doc *doc);

/* Object member lookup (linear; NULL if obj is not an object or has no such key). */
const gm_json *gm_json_get(const gm_json *obj, const char *key);
/* Typed getters: return 1 and store the value if present with the right type, else 0. */
int gm_json_get_int(const gm_json *obj, const char *key, int64_t *out);
int gm_json_get_num(const gm_json *obj, const char *key, double *out);
int gm_json_get_bool(const gm_json *obj, const char *key, int *out);
const char *gm_json_get_str(const gm_json *obj, const char *key); /* NULL if absent or not a string */

/* Writes s as a JSON string literal (quotes, backslash and control characters escaped; UTF-8 passed through). */
void gm_json_write_str(FILE *f, const char *s);

#endif
