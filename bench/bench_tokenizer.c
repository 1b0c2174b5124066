/* Tokenizer encode throughput: loads a tokenizer.model or tokenizer.json, encodes a whole file as one
 * string REPEATS times and prints the best time in MB/s (MB = 1e6 input bytes), the same measure as
 * bench/spm_encode_speed.py prints for SentencePiece. Usage: bench_tokenizer FILE TOKENIZER [REPEATS] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/file.h"
#include "gemma.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer FILE TOKENIZER [REPEATS]\n");
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    char *text;
    size_t len;
    if (gm_file_read_all(argv[1], &text, &len)) {
        fprintf(stderr, "%s\n", gm_last_error());
        return 1;
    }
    double t0 = now_s();
    gm_tokenizer *tok;
    if (gm_tokenizer_load(argv[2], &tok)) {
        fprintf(stderr, "%s\n", gm_last_error());
        return 1;
    }
    double load = now_s() - t0, best = 1e30;
    size_t n = 0;
    for (int r = 0; r < reps; r++) {
        int32_t *ids;
        double a = now_s();
        if (gm_tokenizer_encode(tok, text, len, 0, &ids, &n)) {
            fprintf(stderr, "%s\n", gm_last_error());
            return 1;
        }
        double dt = now_s() - a;
        if (dt < best) best = dt;
        free(ids);
    }
    printf("gemma.c       model %s (%d pieces), load %.3f s\n", argv[2], gm_tokenizer_vocab_size(tok), load);
    printf("whole text : %.3f MB, %zu tokens, best of %d: %.3f s = %.2f MB/s, %.0f tok/s\n", (double)len / 1e6, n, reps,
           best, (double)len / 1e6 / best, (double)n / best);
    gm_tokenizer_free(tok);
    free(text);
    return 0;
}
