/* Supervised fine-tuning data: conversations (JSONL {"messages": [...]}, Alpaca {"instruction", "input",
 * "output"} and a few other common record shapes) rendered with the project's chat formatter, tokenized,
 * and given a loss mask that is 1 on the model turns' tokens and their <end_of_turn> only. Malformed
 * records are reported by file:line and skipped or fatal, as the caller chooses. Also the pieces the
 * reward model and RLHF share: Anthropic HH dialogues as chat turns, a seeded RNG, shuffles. */
#ifndef GM_TRAIN_SFT_H
#define GM_TRAIN_SFT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/json.h"
#include "gemma.h"

/* ---- conversations from records ------------------------------------------------------------------ */

/* A conversation parsed from one record: messages whose strings point into the record's JSON document or
 * into strings the conversation owns (freed by gm_sft_conv_clear). */
typedef struct gm_sft_conv {
    gm_chat_message *msgs;
    size_t n, cap;
    char **owned;
    size_t n_owned, cap_owned;
} gm_sft_conv;

void gm_sft_conv_clear(gm_sft_conv *c); /* frees what it owns; the struct can be reused */

/* The conversations a training record holds (most hold one), and the k-th of them into *conv:
 *   {"messages": [{"role": "user"|"model"|"assistant"|"system", "content": STR}, ...]}
 *   {"instruction", "input" (optional), "output"}        user = instruction + "\n\n" + input, model = output
 *   {"instruction", "instances": [{"input", "output"}]}  one conversation per instance (self-instruct)
 *   {"prompt", "response"|"completion"}, {"question", "answer"}   one user turn, one model turn
 *   {"chosen": "\n\nHuman: ...\n\nAssistant: ..."}        an Anthropic HH dialogue (the chosen side)
 * Returns the count (>= 1) or -1 with the fault in gm_last_error() (no location: the caller adds it). */
int gm_sft_record_conv(const gm_json *rec, size_t k, gm_sft_conv *conv);

/* An Anthropic HH dialogue ("\n\nHuman: A\n\nAssistant: B\n\nHuman: ...") as alternating user / model
 * messages appended to conv (the text between the markers; the formatter trims it). */
gm_status gm_sft_hh_conv(const char *text, size_t len, gm_sft_conv *conv);

/* One side ("chosen" or "rejected") of a preference record as a whole conversation:
 *   {"prompt": STR | MESSAGES, "chosen": STR | MESSAGES, ...}   prompt turns, then the side's model turn(s)
 *   {"chosen": "\n\nHuman: ...\n\nAssistant: ...", ...}         Anthropic HH
 *   {"chosen": MESSAGES, ...}                                   a whole conversation (TRL's layout) */
gm_status gm_sft_pref_conv(const gm_json *rec, const char *side, gm_sft_conv *conv);

/* A prompt for generation from a record: {"prompt": TEXT | MESSAGES}, or any record gm_sft_record_conv
 * reads (its first conversation), cut after its last user turn: a dialogue's final model answer, or an
 * Alpaca output, is dropped. */
gm_status gm_sft_prompt_conv(const gm_json *rec, gm_sft_conv *conv);

/* ---- tokenized examples -------------------------------------------------------------------------- */

typedef struct gm_sft_example {
    int32_t *ids;   /* n tokens: <bos> then the turns, exactly the ids of the formatted conversation */
    uint8_t *mask;  /* n flags: 1 = trained on (a model turn's content or its <end_of_turn>) */
    int n;
    int n_loss;     /* flags set */
    long line;      /* where it came from: 1-based line (JSONL) or record index (JSON array) */
} gm_sft_example;

/* Tokenize a conversation (roles as gm_chat_format takes them; it must end with a model turn) into ids and
 * loss mask. The text of every turn is what gm_chat_format renders (trim, system fold); each turn is
 * <start_of_turn> + encode(role "\n" ...) + <end_of_turn> + encode("\n"), with a model turn encoded as
 * encode("model\n") then encode(content) so the content's tokens are those the model itself emits after
 * the generation prompt. With Gemma's vocabularies (turn markers and newlines are frozen pieces) the ids
 * equal encoding the whole formatted text at once, "<bos>" as the bos id; check 1 of the alignment tests
 * holds us to SentencePiece on it. The tokenizer needs <start_of_turn> and <end_of_turn> pieces.
 * no_final_newline: stop after the last <end_of_turn> (the reward model scores that token). */
gm_status gm_sft_encode(const gm_tokenizer *tok, const gm_chat_message *msgs, size_t n, int no_final_newline,
                        gm_sft_example *out);
/* The generation prompt of a conversation that ends with a user turn: <bos> + turns + "<start_of_turn>model\n"
 * (what `gemma chat` feeds before the model answers). *ids is malloc'd. */
gm_status gm_sft_encode_prompt(const gm_tokenizer *tok, const gm_chat_message *msgs, size_t n, int32_t **ids,
                               int *n_ids);
void gm_sft_example_free(gm_sft_example *e);

/* ---- data sets ----------------------------------------------------------------------------------- */

typedef enum { GM_ON_BAD_STOP = 0, GM_ON_BAD_SKIP = 1 } gm_on_bad;

typedef struct gm_sft_load_opts {
    gm_on_bad on_bad;
    int max_len;     /* tokens per example at most (the trainer's T + 1); longer ones are cut at the end and
                        kept if a trained token is left (counted in n_truncated), else left out (n_too_long) */
    FILE *log;       /* skipped records are reported here ("FILE:LINE: what is wrong"); NULL = quiet */
    int max_reports; /* at most this many such lines, then a count (0 = 20) */
} gm_sft_load_opts;

typedef struct gm_sft_data {
    gm_sft_example *ex;
    int n, cap;
    long n_records, n_bad, n_truncated, n_too_long;
    size_t n_tokens, n_loss_tokens;
} gm_sft_data;

/* Read a JSONL file (one record per line; blank lines ignored) or a JSON array of records. A bad record
 * (invalid JSON, missing or mistyped fields, roles out of order, no model turn, text the tokenizer
 * rejects) is GM_ERR_FORMAT "FILE:LINE: what is wrong" with on_bad STOP; with SKIP it is reported to
 * o->log, counted in n_bad and left out. */
gm_status gm_sft_load(const char *path, const gm_tokenizer *tok, const gm_sft_load_opts *o, gm_sft_data *out);

/* The record walk under gm_sft_load (and the preference and prompt loaders): fn gets every record of a
 * JSONL file or JSON array with its location ("FILE:LINE" or "FILE: record N") and returns a fault
 * already prefixed with it; with on_bad STOP the first fault is returned, with SKIP it is reported to
 * o->log and counted. Invalid JSON is a bad record like any other. */
typedef gm_status (*gm_align_record_fn)(void *ctx, const gm_json *rec, const char *where, long line);
gm_status gm_align_each_record(const char *path, const gm_sft_load_opts *o, gm_align_record_fn fn, void *ctx,
                               long *n_records, long *n_bad);
void gm_sft_data_free(gm_sft_data *d);
/* Move a held-out fraction of d's examples (a seeded choice, at least 1 when frac > 0 and d has 2 or more)
 * into *eval; the rest stay in d in their file order. */
gm_status gm_sft_split(gm_sft_data *d, double frac, uint64_t seed, gm_sft_data *eval);

/* Rows of a batch from examples (one example per row, no packing): inputs[b][t] = ids[t], targets[b][t] =
 * ids[t+1] where mask[t+1] is set, else -1; past an example's end inputs are pad and targets -1 (causal
 * attention makes the padding invisible to real tokens). Examples longer than T + 1 are cut. */
void gm_sft_batch(const gm_sft_example *const *rows, int B, int T, int32_t pad, int32_t *inputs, int32_t *targets);

/* ---- packing ------------------------------------------------------------------------------------- */

/* Several examples per row of T positions, attention kept inside each (gm_train_forward_backward_packed).
 * An example takes its ids but the last one as inputs: min(n, T + 1) − 1 positions (the last id is only a
 * target, so no target ever crosses into the next example; examples longer than T + 1 are cut as
 * gm_sft_batch cuts them, never split over rows). */
int gm_sft_positions(const gm_sft_example *e, int T);

typedef struct gm_sft_packing {
    int *items;      /* example indices, row after row; a row's in the order they were placed */
    int *row_start;  /* n_rows + 1 offsets into items */
    int *row_len;    /* positions a row uses (<= T) */
    int n_rows, n_items, T;
    size_t n_positions; /* Σ row_len: the real tokens, so n_positions / (n_rows · T) is the packing efficiency */
} gm_sft_packing;

/* Greedy first-fit: ex[order[i]] for i = 0..n−1 in turn (order NULL: 0..n−1), each into the first row (lowest
 * index) with room for its positions, a new row when none has; O(n log n) (a max-tree over the rows' room).
 * Deterministic in (order, T). GM_ERR_ARG for T < 1. */
gm_status gm_sft_pack(const gm_sft_example *ex, const int *order, int n, int T, gm_sft_packing *out);
void gm_sft_packing_free(gm_sft_packing *p);

/* Row r of p as one batch row of T >= p->row_len[r] positions: segment by segment, inputs = the example's ids
 * (but its last), targets = the next id where the mask is set, else −1, pos = 0, 1, ... from each example's
 * start; then padding (input pad, target −1, pos 0: each pad token a segment of its own, so it attends to
 * itself only and costs one score). */
void gm_sft_pack_row(const gm_sft_example *ex, const gm_sft_packing *p, int r, int T, int32_t pad, int32_t *inputs,
                     int32_t *targets, int32_t *pos);

/* The example order of an epoch, packed or not: a seeded permutation of 0..n−1, fresh for every epoch. */
void gm_sft_epoch_order(int n, uint64_t seed, long epoch, int *order);

/* ---- small shared helpers ------------------------------------------------------------------------ */

/* The tokenizer file for a run: `given` if set (it must exist), else model_dir's tokenizer.model or
 * tokenizer.json. *path is malloc'd. */
gm_status gm_align_tokenizer_path(const char *given, const char *model_dir, char **path);
/* A trainable model from a Hugging Face directory or GGUF file (any stored dtype → f32), built for batches
 * up to o: over the mesh of dist (each rank its shard; NULL = one process). */
struct gm_dist;
struct gm_train_model;
struct gm_train_opts;
gm_status gm_align_load_model(struct gm_dist *dist, const char *path, const struct gm_train_opts *o,
                              struct gm_train_model **out);

/* splitmix64: the next 64 random bits of stream *s; uniform double in [0, 1). */
uint64_t gm_align_rand(uint64_t *s);
double gm_align_uniform(uint64_t *s);
/* A seeded Fisher–Yates permutation of idx[0..n). */
void gm_align_shuffle(int *idx, int n, uint64_t *s);
/* Which of n records to hold out: round(frac · n) of them (at least 1 when frac > 0 and n >= 2), chosen by a
 * seeded shuffle. *held = calloc'd n flags, or NULL when none are held out; GM_ERR_ARG unless 0 <= frac < 1. */
gm_status gm_align_holdout(int n, double frac, uint64_t seed, unsigned char **held);

#endif
