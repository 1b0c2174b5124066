/* Model configuration: Hugging Face config.json → gm_config, and the presets with the published
 * shapes (used by `--random` benchmark models). */
#ifndef GM_MODEL_CONFIG_H
#define GM_MODEL_CONFIG_H

#include "gemma.h"
#include "base/json.h"

/* Parse a config.json document; `what` names the file in errors. */
gm_status gm_config_from_json(const gm_json *root, const char *what, gm_config *out);
gm_status gm_config_load(const char *path, gm_config *out);
/* Fill a preset ("gemma-2b", "gemma-7b"); GM_ERR_ARG for an unknown name. */
gm_status gm_config_preset(const char *name, gm_config *out);
/* Comma-separated preset names, for usage messages. */
const char *gm_config_preset_names(void);

#endif
