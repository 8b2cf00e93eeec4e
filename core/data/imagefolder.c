#include "data/imagefolder.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "util/error.h"
#include "util/log.h"

typedef struct sample {
    char *path;
    int32_t label;
} sample;

struct usi_dataset {
    char *root;
    char **classes;
    size_t n_classes;
    sample *samples;
    size_t n_samples, cap_samples;
    size_t empty_classes;
};

int usi_is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    return !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir; want_dirs selects folders (following links) or the
 * other entries. A dangling link or a file that can't be stat'ed counts as
 * a file so the loader reports it. */
static usi_error *list_dir(const char *dir, int want_dirs, char ***out, size_t *n_out)
{
    DIR *d = opendir(dir);
    if (!d) return usi_error_new(USI_ERR_IO, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    usi_error *e = NULL;
    while (!e && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        if (is_dir != want_dirs) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                e = usi_error_new(USI_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(de->d_name))) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
        else n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    *n_out = n;
    return e;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

static usi_error *add_sample(usi_dataset *ds, const char *dir, const char *name, int32_t label)
{
    if (ds->n_samples == ds->cap_samples) {
        size_t cap = ds->cap_samples ? ds->cap_samples * 2 : 1024;
        sample *p = realloc(ds->samples, cap * sizeof *p);
        if (!p) return usi_error_new(USI_ERR_NOMEM, "out of memory");
        ds->samples = p;
        ds->cap_samples = cap;
    }
    sample *s = &ds->samples[ds->n_samples];
    if (asprintf(&s->path, "%s/%s", dir, name) < 0) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    s->label = label;
    ds->n_samples++;
    return NULL;
}

static usi_error *scan_class(usi_dataset *ds, size_t label)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", ds->root, ds->classes[label]);
    char **files = NULL;
    size_t n = 0, before = ds->n_samples;
    usi_error *e = list_dir(dir, 0, &files, &n);
    if (e) {
        /* An unreadable class folder loses its images, never its label. */
        usi_log(USI_LOG_WARN, "dataset: class folder %s can't be read (%s); it has no samples",
                dir, usi_error_message(e));
        usi_error_free(e);
        e = NULL;
    }
    for (size_t i = 0; i < n && !e; i++)
        if (usi_is_image_name(files[i])) e = add_sample(ds, dir, files[i], (int32_t)label);
    free_names(files, n);
    if (!e && ds->n_samples == before) {
        ds->empty_classes++;
        usi_log(USI_LOG_WARN, "dataset: class folder %s holds no .jpg, .jpeg or .png file", dir);
    }
    return e;
}

usi_error *usi_dataset_open(const char *root, usi_dataset **out)
{
    *out = NULL;
    struct stat st;
    if (stat(root, &st) != 0)
        return usi_error_new(USI_ERR_IO, "dataset folder %s: %s", root, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return usi_error_new(USI_ERR_INVALID, "dataset folder %s: not a folder", root);
    usi_dataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->root = strdup(root))) {
        free(ds);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    usi_error *e = list_dir(root, 1, &ds->classes, &ds->n_classes);
    if (!e && ds->n_classes == 0)
        e = usi_error_new(USI_ERR_INVALID,
                          "dataset folder %s has no class folders (expected %s/<class>/<image>.jpg)",
                          root, root);
    for (size_t c = 0; !e && c < ds->n_classes; c++) e = scan_class(ds, c);
    if (e) {
        usi_dataset_free(ds);
        return e;
    }
    *out = ds;
    return NULL;
}

usi_error *usi_dataset_count_classes(const char *root, size_t *n)
{
    char **names = NULL;
    *n = 0;
    usi_error *e = list_dir(root, 1, &names, n);
    free_names(names, *n);
    if (e) *n = 0;
    return e;
}

void usi_dataset_free(usi_dataset *ds)
{
    if (!ds) return;
    for (size_t i = 0; i < ds->n_samples; i++) free(ds->samples[i].path);
    free(ds->samples);
    free_names(ds->classes, ds->n_classes);
    free(ds->root);
    free(ds);
}

const char *usi_dataset_root(const usi_dataset *ds) { return ds->root; }
size_t usi_dataset_size(const usi_dataset *ds) { return ds->n_samples; }
size_t usi_dataset_class_count(const usi_dataset *ds) { return ds->n_classes; }
const char *usi_dataset_class_name(const usi_dataset *ds, size_t label)
{
    return label < ds->n_classes ? ds->classes[label] : NULL;
}
const char *usi_dataset_path(const usi_dataset *ds, size_t i)
{
    return i < ds->n_samples ? ds->samples[i].path : NULL;
}
int32_t usi_dataset_label(const usi_dataset *ds, size_t i)
{
    return i < ds->n_samples ? ds->samples[i].label : -1;
}
size_t usi_dataset_empty_classes(const usi_dataset *ds) { return ds->empty_classes; }
