/* `gemma info`: what a checkpoint is — config, parameter count, every tensor, and the tokenizer. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cmd_info(int argc, char **argv) {
    const char *C = "info", *model = NULL;
    int use_mmap = 1; /* info touches no weights: mapping is instant */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: gemma info -m MODEL_DIR");
            return CLI_OK;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) model = argv[++i];
        else return cli_usage(C, "unknown option or missing value '%s'", a);
    }
    if (!model) return cli_usage(C, "-m MODEL_DIR is required");
    gm_model *m = NULL;
    gm_tokenizer *tok = NULL;
    if (cli_load_model(model, use_mmap, 1, &m)) return cli_fail(C);
    const gm_config *c = gm_model_config(m);
    const char *attn = c->n_kv_heads == 1 ? "multi-query" : c->n_kv_heads == c->n_heads ? "multi-head" : "grouped-query";
    printf("model        %s\n", model);
    printf("architecture gemma%s (%s attention)\n", c->family == 1 ? "" : c->family == 2 ? "2" : "3", attn);
    if (c->family > 1) {
        int n_global = 0;
        for (int l = 0; l < c->n_layers; l++) n_global += c->layer_global[l];
        printf("attention    %d global layers, %d sliding (window %d)", n_global, c->n_layers - n_global, c->sliding_window);
        if (c->attn_softcap > 0) printf(", soft-caps %g / %g", c->attn_softcap, c->final_softcap);
        if (c->qk_norm) printf(", QK-norm");
        printf("\n");
        if (c->family == 3)
            printf("rope         local base %g, global base %g, global scaling x1/%g\n", c->rope_local_theta, c->rope_theta,
                   c->rope_scale);
    }
    printf("parameters   %llu (%.3f B)\n", (unsigned long long)gm_model_n_params(m), (double)gm_model_n_params(m) / 1e9);
    printf("weights      %.1f MB\n", (double)gm_model_weight_bytes(m) / 1e6);
    printf("hidden       %d, layers %d, heads %d, kv heads %d, head dim %d, ffn %d\n", c->hidden_size, c->n_layers,
           c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_size);
    printf("vocab        %d, context %d, rope theta %g, rms eps %g\n", c->vocab_size, c->max_pos, c->rope_theta,
           c->rms_eps);
    printf("scales       embedding %.6g, query %.6g\n", c->embed_scale, c->query_scale);
    if (cli_load_tokenizer_opt(model, &tok)) {
        int rc = cli_fail(C);
        gm_model_free(m);
        return rc;
    }
    if (tok)
        printf("tokenizer    %d pieces, bos %d, eos %d, <start_of_turn> %d, <end_of_turn> %d\n", gm_tokenizer_vocab_size(tok),
               gm_tokenizer_bos(tok), gm_tokenizer_eos(tok), gm_tokenizer_piece_id(tok, "<start_of_turn>"),
               gm_tokenizer_piece_id(tok, "<end_of_turn>"));
    else
        printf("tokenizer    none (use --ids)\n");
    printf("tensors:\n");
    const char *name, *dt;
    int nd;
    int64_t shape[4];
    for (int i = 0; gm_model_tensor_info(m, i, &name, &dt, &nd, shape); i++) {
        if (nd == 1) printf("  %-52s %-5s [%lld]\n", name, dt, (long long)shape[0]);
        else printf("  %-52s %-5s [%lld, %lld]\n", name, dt, (long long)shape[0], (long long)shape[1]);
    }
    gm_tokenizer_free(tok);
    gm_model_free(m);
    return CLI_OK;
}
