/* SentencePiece tokenizer.model reader: a bounds-checked protobuf wire-format walk over ModelProto
 * (pieces, trainer_spec, normalizer_spec) into the shared gm_vocab. Unknown fields are skipped. */
#ifndef GM_FORMATS_SPM_MODEL_H
#define GM_FORMATS_SPM_MODEL_H

#include <stddef.h>

#include "tokenizer/vocab.h"

/* Parse data[0..len). `what` names the file in error messages. Only BPE models with identity
 * normalization are supported (GM_ERR_UNSUPPORTED otherwise). */
gm_status gm_spm_model_parse(const void *data, size_t len, const char *what, gm_vocab **out);

#endif
