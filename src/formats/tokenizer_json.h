/* Hugging Face tokenizer.json reader (BPE models such as Gemma's): vocab, merges (their order gives the
 * merge priority), byte_fallback, added tokens and the Replace/Prepend normalizer, into the gm_vocab the
 * SentencePiece encoder runs on. */
#ifndef GM_FORMATS_TOKENIZER_JSON_H
#define GM_FORMATS_TOKENIZER_JSON_H

#include <stddef.h>

#include "tokenizer/vocab.h"

/* Parse text[0..len). `what` names the file in error messages. */
gm_status gm_tokenizer_json_parse(const char *text, size_t len, const char *what, gm_vocab **out);

#endif
