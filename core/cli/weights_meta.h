/* Settings from what a weights file stores, for `usi eval` and `usi predict`. */
#ifndef USI_CLI_WEIGHTS_META_H
#define USI_CLI_WEIGHTS_META_H

#include "config/config.h"
#include "train/safetensors.h"

/* Fill what c leaves unset (before resolve) from f's metadata: data.mean,
 * data.std, data.crop_pct, data.interpolation; backbone.name from `backbone`
 * (--backbone, may be NULL) else the file's; data.img_size from the file's
 * backbone_options when the backbone is the file's. Errors name path. */
usi_error *usi_cli_config_from_weights(usi_config *c, const usi_st_file *f, const char *path, const char *backbone);

#endif
