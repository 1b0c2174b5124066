/* Benchmark tasks: read the original dataset files (ARC, HellaSwag, PIQA, MMLU, TruthfulQA, GSM8K, HumanEval)
 * and turn every record into an item with the exact prompt text of lm-evaluation-harness, so scores are
 * comparable with published ones. Scoring lives in score.c; this file only parses and formats. */
#ifndef GM_EVAL_TASKS_H
#define GM_EVAL_TASKS_H

#include <stddef.h>

#include "gemma.h"

typedef enum {
    GM_TASK_ARC_EASY,
    GM_TASK_ARC_CHALLENGE,
    GM_TASK_HELLASWAG,
    GM_TASK_PIQA,
    GM_TASK_MMLU,
    GM_TASK_TRUTHFULQA_MC1,
    GM_TASK_TRUTHFULQA_MC2,
    GM_TASK_GSM8K,
    GM_TASK_HUMANEVAL,
    GM_TASK_PERPLEXITY,
    GM_TASK_COUNT
} gm_task;

typedef enum {
    GM_KIND_MC,   /* multiple choice by log-likelihood of each continuation */
    GM_KIND_MATH, /* greedy generation, numeric answer extraction, exact match */
    GM_KIND_CODE, /* greedy generation, run against the tests: pass@1 */
    GM_KIND_TEXT, /* perplexity / bits per byte of a text file */
} gm_task_kind;

typedef struct gm_task_info {
    const char *name;
    gm_task_kind kind;
    int default_shots;
    const char *format; /* the prompt template, for --help, docs and the results JSON */
} gm_task_info;

const gm_task_info *gm_task_get(gm_task t);
/* Look a task up by name ("arc_easy"...); -1 if unknown. */
int gm_task_by_name(const char *name);

typedef struct gm_eval_item {
    char *id;             /* the dataset's id, or "line N" */
    char *group;          /* MMLU subject ("high_school_biology"); NULL for other tasks */
    char *context;        /* the whole prompt (few-shot examples included); the scorer adds <bos> */
    int n_choices;
    char **choices;       /* continuations WITHOUT the target delimiter " " (acc_norm counts these) */
    int gold;             /* index of the correct choice; -1 for generative tasks */
    unsigned char *labels;/* TruthfulQA MC2: 1 = a true answer, per choice; NULL otherwise */
    char *target;         /* GSM8K: the reference solution ("... #### 18"); HumanEval: the test code */
    char *entry_point;    /* HumanEval: the function the tests call */
} gm_eval_item;

typedef struct gm_eval_set {
    gm_task task;
    int shots;            /* few-shot examples in every prompt */
    char *fewshot_source; /* the file the examples came from (NULL for 0-shot) */
    int n, cap;
    gm_eval_item *items;
} gm_eval_set;

typedef struct gm_eval_load_opts {
    int shots;                /* -1: the task's default (MMLU 5, GSM8K 5, others 0) */
    const char *fewshot_path; /* exemplar file; NULL: found beside the data (ARC *-train, GSM8K train.jsonl, MMLU dev/) */
    int limit;                /* 0: all; else the first N items (per subject for an MMLU directory) */
} gm_eval_load_opts;

/* Read a task's data. `path` is the file the task reads (see docs/eval.md); for MMLU a directory
 * (holding test/ and dev/, or *_test.csv files) or one *_test.csv file. gzip or bzip2 input is refused
 * with the command that unpacks it. */
gm_status gm_eval_load(gm_task task, const char *path, const gm_eval_load_opts *opt, gm_eval_set **out);
void gm_eval_set_free(gm_eval_set *set);

/* ---- exposed for the tests ---- */

/* RFC 4180 CSV: *rows is an array of n_rows rows, each an array of *n_fields (per row) malloc'd strings. */
typedef struct gm_csv_row {
    int n;
    char **f;
} gm_csv_row;
gm_status gm_csv_parse(const char *text, size_t len, const char *what, gm_csv_row **rows, int *n_rows);
void gm_csv_free(gm_csv_row *rows, int n_rows);

/* HellaSwag's cleanup of WikiHow artifacts (strip, " [title]" -> ". ", drop "[...]", "  " -> " "). */
char *gm_hellaswag_preprocess(const char *text);

#endif
