/* Sampler: greedy is argmax, the same seed gives the same draws, top-k and top-p cut exactly the tokens
 * they should, and temperature-1 sampling follows softmax(logits) within statistical tolerance. */
#include <math.h>
#include <string.h>

#include "gemma.h"
#include "testlib.h"

static int draw(gm_sampler_params p, const float *logits, int V, int n, int *counts) {
    gm_sampler *s = NULL;
    if (gm_sampler_new(&p, V, &s) != GM_OK) return 0;
    memset(counts, 0, sizeof(int) * (size_t)V);
    for (int i = 0; i < n; i++) counts[gm_sampler_sample(s, logits)]++;
    gm_sampler_free(s);
    return 1;
}

int main(void) {
    enum { V = 6 };
    const float logits[V] = {1.0f, 3.0f, 2.0f, -1.0f, 2.5f, 0.0f};
    int counts[V];
    gm_sampler_params greedy = {0, 0, 1, 7};
    CHECK(draw(greedy, logits, V, 50, counts));
    CHECK(counts[1] == 50);

    /* same seed, same sequence; another seed, another sequence */
    gm_sampler_params p = {1.0f, 0, 1.0f, 42};
    gm_sampler *a, *b, *c;
    CHECK_OK(gm_sampler_new(&p, V, &a));
    CHECK_OK(gm_sampler_new(&p, V, &b));
    p.seed = 43;
    CHECK_OK(gm_sampler_new(&p, V, &c));
    int same = 1, differs = 0;
    for (int i = 0; i < 200; i++) {
        int32_t x = gm_sampler_sample(a, logits), y = gm_sampler_sample(b, logits), z = gm_sampler_sample(c, logits);
        same &= x == y;
        differs |= x != z;
    }
    CHECK(same);
    CHECK(differs);
    gm_sampler_free(a);
    gm_sampler_free(b);
    gm_sampler_free(c);

    /* temperature 1: frequencies follow the softmax (n = 200000, 5 sigma bands) */
    int n = 200000;
    p.seed = 1;
    CHECK(draw(p, logits, V, n, counts));
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(logits[i]);
    for (int i = 0; i < V; i++) {
        double q = exp(logits[i]) / z, sd = sqrt(n * q * (1 - q));
        CHECKF(fabs(counts[i] - n * q) <= 5 * sd + 1, "token %d: %d draws, expected %.0f", i, counts[i], n * q);
    }
    /* top-k 2 only ever returns the two best tokens, in proportion exp(3) : exp(2.5) */
    gm_sampler_params pk = {1.0f, 2, 1.0f, 3};
    CHECK(draw(pk, logits, V, n, counts));
    CHECK(counts[1] + counts[4] == n);
    double q1 = exp(3.0) / (exp(3.0) + exp(2.5));
    CHECKF(fabs(counts[1] - n * q1) <= 5 * sqrt(n * q1 * (1 - q1)), "top-k proportions %d/%d", counts[1], counts[4]);
    /* top-p: the nucleus of p = 0.5 is {1, 4} (0.42 + 0.26 >= 0.5), of p = 0.3 just {1} */
    gm_sampler_params pp = {1.0f, 0, 0.5f, 5};
    CHECK(draw(pp, logits, V, 20000, counts));
    CHECK(counts[1] + counts[4] == 20000 && counts[4] > 0);
    pp.top_p = 0.3f;
    CHECK(draw(pp, logits, V, 1000, counts));
    CHECK(counts[1] == 1000);
    /* low temperature sharpens toward the argmax */
    gm_sampler_params pt = {0.05f, 0, 1.0f, 9};
    CHECK(draw(pt, logits, V, 1000, counts));
    CHECK(counts[1] > 990);
    /* invalid parameters are errors, not crashes */
    gm_sampler *bad = NULL;
    gm_sampler_params np = {-1.0f, 0, 1.0f, 0};
    CHECK(gm_sampler_new(&np, V, &bad) == GM_ERR_ARG);
    np.temperature = 1, np.top_p = 0;
    CHECK(gm_sampler_new(&np, V, &bad) == GM_ERR_ARG);
    TEST_DONE();
}
