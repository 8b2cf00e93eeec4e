#include "testutil.h"

#include <dirent.h>
#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include <turbojpeg.h>

#include "plugin/host.h"
#include "util/error.h"

int tu_failures;

usi_registry *tu_registry(void)
{
    const char *dir = getenv("USI_TEST_AUGMENT_DIR");
    if (!dir) {
        fprintf(stderr, "USI_TEST_AUGMENT_DIR is not set (run through meson test)\n");
        exit(1);
    }
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: cannot open\n", dir);
        exit(1);
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char sub[4096];
        struct stat st;
        snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name);
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) MUST(usi_registry_scan(r, sub));
    }
    closedir(d);
    for (size_t i = 0; i < usi_registry_problem_count(r); i++)
        fprintf(stderr, "plugin problem: %s: %s\n", usi_registry_problem(r, i)->path,
                usi_registry_problem(r, i)->message);
    return r;
}

const usi_component *tu_component(usi_registry *r, const char *name)
{
    const usi_loaded *l = NULL;
    MUST(usi_registry_select(r, USI_KIND_AUGMENT, name, &l));
    return l->comp;
}

static const usi_param_desc *find_desc(const usi_component *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n_params; i++) {
        const usi_param_desc *d = usi_component_param(c, i);
        if (strlen(d->name) == len && !strncmp(d->name, name, len)) return d;
    }
    return NULL;
}

static void set_one(usi_params *p, const usi_component *c, const char *kv)
{
    const char *eq = strchr(kv, '=');
    const usi_param_desc *d = eq ? find_desc(c, kv, (size_t)(eq - kv)) : NULL;
    if (!d) {
        fprintf(stderr, "test: bad option '%s' for %s\n", kv, c->name);
        exit(1);
    }
    const char *v = eq + 1;
    double list[16];
    size_t n = 0;
    switch (d->type) {
    case USI_PARAM_INT: MUST(usi_params_set_int(p, d->name, strtoll(v, NULL, 10))); break;
    case USI_PARAM_FLOAT: MUST(usi_params_set_float(p, d->name, strtod(v, NULL))); break;
    case USI_PARAM_BOOL: MUST(usi_params_set_bool(p, d->name, atoi(v))); break;
    case USI_PARAM_STRING: MUST(usi_params_set_string(p, d->name, v)); break;
    default:
        for (char *end; *v && n < 16; v = end) {
            list[n++] = strtod(v, &end);
            while (*end == ',' || *end == ' ') end++;
        }
        MUST(usi_params_set_float_list(p, d->name, list, n));
    }
}

usi_params *tu_params(const usi_component *c, ...)
{
    usi_params *p = usi_params_new(c);
    va_list ap;
    va_start(ap, c);
    for (const char *kv; (kv = va_arg(ap, const char *));) set_one(p, c, kv);
    va_end(ap);
    return p;
}

void *tu_create(const usi_component *c, const usi_params *p)
{
    void *inst = NULL;
    MUST(c->create(p, &inst));
    return inst;
}

usi_image tu_image(int w, int h, int c, int (*f)(int x, int y, int k))
{
    usi_image im = {sizeof im, 0, 0, 0, 0, NULL};
    MUST(usi_host_api_get()->image_alloc(&im, w, h, c));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                int v = f(x, y, k);
                im.data[(size_t)y * (size_t)im.stride + (size_t)x * (size_t)c + (size_t)k] =
                    (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return im;
}

void tu_image_free(usi_image *im)
{
    free(im->data);
    im->data = NULL;
}

char *tu_tempdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *path = NULL;
    if (asprintf(&path, "%s/usi-%s-XXXXXX", base && *base ? base : "/tmp", tag) < 0) exit(1);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        exit(1);
    }
    return path;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void tu_rm_rf(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

int tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

int tu_finish(const char *name)
{
    if (tu_failures) fprintf(stderr, "%s: %d check(s) failed\n", name, tu_failures);
    else printf("%s: all checks passed\n", name);
    return tu_failures ? 1 : 0;
}



int tu_jpeg_encode(const usi_image *im, int quality, uint8_t **out, size_t *len)
{
    tjhandle h = tjInitCompress();
    if (!h) return -1;
    unsigned char *buf = NULL;
    unsigned long size = 0;
    int gray = im->channels == 1;
    int rc = tjCompress2(h, im->data, im->width, im->stride, im->height, gray ? TJPF_GRAY : TJPF_RGB,
                         &buf, &size, gray ? TJSAMP_GRAY : TJSAMP_444, quality, 0);
    tjDestroy(h);
    if (rc) {
        tjFree(buf);
        return -1;
    }
    *out = malloc(size);
    memcpy(*out, buf, size);
    *len = size;
    tjFree(buf);
    return 0;
}

const char *tu_first_existing(const char *const *paths)
{
    for (; *paths; paths++)
        if (access(*paths, R_OK) == 0) return *paths;
    return NULL;
}

int tu_each_manifest_line(const char *dir, void (*fn)(char *line))
{
    char path[4096], line[1024];
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        exit(1);
    }
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        cases++;
        fn(line);
    }
    fclose(f);
    if (!cases) {
        fprintf(stderr, "%s: no cases\n", path);
        exit(1);
    }
    return cases;
}
