/* Loader throughput: decode + RandomResizedCrop(224) + hflip +
 * RandAugment(2, m7) + uint8 batch, through the real loader and the real
 * plugins, on an ImageFolder of JPEGs.
 *
 * usage: bench_pipeline FOLDER PLUGIN_DIR [seconds=10] [threads=1] [batch=64]
 * Prints one line: "threads=T images=N seconds=S images_per_s=R per_thread=P". */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "data/loader.h"
#include "plugin/params.h"
#include "plugin/registry.h"
#include "util/error.h"
#include "util/log.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int fail(usi_error *e)
{
    fprintf(stderr, "bench_pipeline: %s\n", usi_error_message(e));
    usi_error_free(e);
    return 1;
}

/* Every subfolder of dir holds one plugin. */
static void scan_plugins(usi_registry *r, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char sub[4096];
        struct stat st;
        if (de->d_name[0] == '.') continue;
        snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name);
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) usi_error_free(usi_registry_scan(r, sub));
    }
    if (d) closedir(d);
}

static usi_error *add(usi_augchain *ch, usi_registry *r, const char *name, usi_params **keep)
{
    const usi_loaded *l;
    USI_TRY(usi_registry_select(r, USI_KIND_AUGMENT, name, &l));
    *keep = usi_params_new(l->comp);
    return usi_augchain_add(ch, l->comp, *keep);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s FOLDER PLUGIN_DIR [seconds] [threads] [batch]\n", argv[0]);
        return 2;
    }
    double secs = argc > 3 ? atof(argv[3]) : 10;
    int threads = argc > 4 ? atoi(argv[4]) : 1, batch = argc > 5 ? atoi(argv[5]) : 64;
    usi_log_set_level(USI_LOG_ERROR);
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    scan_plugins(r, argv[2]);
    usi_dataset *ds;
    usi_error *e = usi_dataset_open(argv[1], &ds);
    if (e) return fail(e);
    usi_augchain *ch;
    usi_params *ps[3] = {0};
    e = usi_augchain_new(&ch);
    if (!e) e = add(ch, r, "random_resized_crop", &ps[0]);
    if (!e) e = add(ch, r, "hflip", &ps[1]);
    if (!e) e = add(ch, r, "rand_augment", &ps[2]);
    if (e) return fail(e);
    usi_loader_opts o = usi_loader_opts_default();
    o.batch_size = batch;
    o.workers = threads;
    o.prefetch = 2;
    usi_loader *l;
    if ((e = usi_loader_new(ds, ch, &o, &l))) return fail(e);
    long long images = 0;
    double t0 = now(), t = t0;
    for (int64_t epoch = 0; t - t0 < secs; epoch++) {
        if ((e = usi_loader_start_epoch(l, epoch))) return fail(e);
        if (usi_loader_batch_count(l) == 0) {
            fprintf(stderr, "bench_pipeline: fewer images than one batch of %d\n", batch);
            return 1;
        }
        usi_u8_batch b;
        while (t - t0 < secs) {
            if ((e = usi_loader_next(l, &b))) return fail(e);
            if (b.n == 0) break;
            images += b.n;
            t = now();
        }
    }
    double dt = now() - t0;
    printf("threads=%d images=%lld seconds=%.2f images_per_s=%.1f per_thread=%.1f\n", threads, images, dt,
           images / dt, images / dt / threads);
    usi_loader_free(l);
    usi_augchain_free(ch);
    for (int i = 0; i < 3; i++) usi_params_free(ps[i]);
    usi_dataset_free(ds);
    usi_registry_free(r);
    return 0;
}
