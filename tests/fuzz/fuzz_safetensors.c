/* libFuzzer target: the safetensors parser on arbitrary bytes. Every tensor
 * it accepts must lie inside the input. */
#include <stdint.h>
#include <stdlib.h>

#include "train/safetensors.h"
#include "util/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    usi_st_file *f = NULL;
    usi_error *e = usi_st_parse(data, size, "fuzz", &f);
    if (!e) {
        for (size_t i = 0; i < usi_st_count(f); i++) {
            const usi_st_tensor *t = usi_st_at(f, i);
            const uint8_t *p = t->data;
            if (p < data || p + t->nbytes > data + size) abort();
        }
    }
    usi_error_free(e);
    usi_st_free(f);
    return 0;
}
