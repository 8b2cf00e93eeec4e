/* libFuzzer target for the image decoders: any bytes in, an image or an
 * error out, never a crash, a leak or a read out of bounds. Without
 * libFuzzer (USI_FUZZ_REPLAY) it is a program that replays the corpus and
 * seeded mutations of it, so the regular test suite runs it too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "data/decode.h"
#include "util/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static usi_decoder *dec;
    if (!dec && usi_decoder_new(&dec)) return 0;
    usi_image im = {sizeof im, 0, 0, 0, 0, NULL};
    /* both paths: full size, and a DCT-scaled JPEG */
    usi_error *e = usi_decode_image(dec, data, size, 0, &im);
    usi_error_free(e);
    e = usi_decode_image(dec, data, size, 7, &im);
    if (!e && (im.width < 1 || im.height < 1 || im.channels != 3)) abort();
    usi_error_free(e);
    int32_t w, h;
    usi_error_free(usi_decode_size(dec, data, size, &w, &h));
    free(im.data);
    return 0;
}

#ifdef USI_FUZZ_REPLAY
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "util/rng.h"

/* usage: fuzz_decode_replay CORPUS_DIR [MUTATIONS_PER_FILE] */
int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    int per = argc > 2 ? atoi(argv[2]) : 500, files = 0;
    DIR *d = opendir(argv[1]);
    if (!d) {
        perror(argv[1]);
        return 1;
    }
    struct dirent *de;
    uint8_t *buf = NULL, *mut = NULL;
    size_t cap = 0;
    usi_rng r;
    usi_rng_seed(&r, 20261127, 0, 0, 0);
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[4096];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", argv[1], de->d_name);
        usi_error *e = usi_read_file(path, &buf, &cap, &len);
        if (e) {
            usi_error_free(e);
            continue;
        }
        files++;
        LLVMFuzzerTestOneInput(buf, len);
        mut = realloc(mut, len);
        for (int i = 0; i < per; i++) {
            memcpy(mut, buf, len);
            size_t n = len;
            int flips = 1 + (int)(usi_rng_u64(&r) % 8);
            for (int k = 0; k < flips; k++) mut[usi_rng_u64(&r) % len] ^= (uint8_t)(1 + usi_rng_u64(&r) % 255);
            if (usi_rng_uniform(&r) < 0.3) n = 1 + usi_rng_u64(&r) % len; /* truncate */
            LLVMFuzzerTestOneInput(mut, n);
        }
    }
    closedir(d);
    free(buf);
    free(mut);
    printf("replayed %d corpus files with %d mutations each\n", files, per);
    return files ? 0 : 1;
}
#endif
