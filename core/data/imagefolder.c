#include "data/imagefolder.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/log.h"

/* A growing list of malloc'ed strings. */
typedef struct str_list {
    char **items;
    size_t n, cap;
} str_list;

typedef struct sample {
    char *path;
    int32_t label;
} sample;

struct usi_dataset {
    char *root;
    str_list classes; /* class folder names, sorted: label i is classes.items[i] */
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

/* Appends a copy of str. */
static usi_error *str_list_add(str_list *l, const char *str)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **p = realloc(l->items, cap * sizeof *p);
        if (!p) return usi_error_new(USI_ERR_NOMEM, "out of memory");
        l->items = p;
        l->cap = cap;
    }
    if (!(l->items[l->n] = strdup(str))) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    l->n++;
    return NULL;
}

static void str_list_free(str_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    *l = (str_list){0};
}

/* The names in dir, each list sorted: folders (following links) into dirs,
 * the other entries into files; either may be NULL. A dangling link or a
 * file that can't be stat'ed counts as a file so the loader reports it. */
static usi_error *list_dir(const char *dir, str_list *dirs, str_list *files)
{
    DIR *d = opendir(dir);
    if (!d) return usi_error_new(USI_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    usi_error *e = NULL;
    while (!e && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[4096];
        /* A path too long for the buffer is never taken for a folder: the
         * walk stops there, and as a file the loader reports it. */
        int fits = snprintf(path, sizeof path, "%s/%s", dir, de->d_name) < (int)sizeof path;
        struct stat st;
        str_list *to = fits && stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? dirs : files;
        if (to) e = str_list_add(to, de->d_name);
    }
    closedir(d);
    if (dirs && dirs->n) qsort(dirs->items, dirs->n, sizeof *dirs->items, cmp_str);
    if (files && files->n) qsort(files->items, files->n, sizeof *files->items, cmp_str);
    return e;
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

/* One folder of a class and the image names directly in it. */
typedef struct folder {
    char *path;
    str_list images;
} folder;

typedef struct folder_list {
    folder *items;
    size_t n, cap;
} folder_list;

static void folder_list_free(folder_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].path);
        str_list_free(&l->items[i].images);
    }
    free(l->items);
}

/* Takes path and images over; frees them on failure. */
static usi_error *folder_list_add(folder_list *l, char *path, str_list *images)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        folder *p = realloc(l->items, cap * sizeof *p);
        if (!p) {
            free(path);
            str_list_free(images);
            return usi_error_new(USI_ERR_NOMEM, "out of memory");
        }
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n++] = (folder){path, *images};
    *images = (str_list){0};
    return NULL;
}

static int cmp_folder(const void *a, const void *b)
{
    return strcmp(((const folder *)a)->path, ((const folder *)b)->path);
}

/* The folders from a class folder down to the one being walked, by device
 * and inode, so that a link back up is not followed round forever. */
typedef struct walk_chain {
    dev_t dev;
    ino_t ino;
    const struct walk_chain *up;
} walk_chain;

static int in_chain(const walk_chain *c, const struct stat *st)
{
    for (; c; c = c->up)
        if (c->dev == st->st_dev && c->ino == st->st_ino) return 1;
    return 0;
}

/* dir and every folder below it, with their image names, appended to out;
 * links are followed as torchvision's ImageFolder follows them
 * (os.walk(followlinks=True)). A folder that can't be read is reported and
 * left out with its images; a link back to a folder above is reported and
 * not followed. */
static usi_error *walk_folder(const char *dir, const walk_chain *up, folder_list *out)
{
    struct stat st;
    if (stat(dir, &st) != 0) return NULL; /* gone since its parent was listed */
    if (in_chain(up, &st)) {
        usi_log(USI_LOG_WARN, "dataset: %s leads back to a folder above it; not followed", dir);
        return NULL;
    }
    str_list subs = {0}, files = {0}, images = {0};
    usi_error *e = list_dir(dir, &subs, &files);
    if (e && e->code != USI_ERR_NOMEM) {
        /* An unreadable class folder loses its images, never its label. */
        usi_log(USI_LOG_WARN, "dataset: %s %s can't be read (%s); its images are left out",
                up ? "folder" : "class folder", dir, usi_error_message(e));
        usi_error_free(e);
        str_list_free(&subs);
        str_list_free(&files);
        return NULL;
    }
    for (size_t i = 0; i < files.n && !e; i++)
        if (usi_is_image_name(files.items[i])) e = str_list_add(&images, files.items[i]);
    str_list_free(&files);
    char *path = e ? NULL : strdup(dir);
    if (!e && !path) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (!e) e = folder_list_add(out, path, &images);
    str_list_free(&images);
    walk_chain here = {st.st_dev, st.st_ino, up};
    for (size_t i = 0; i < subs.n && !e; i++) {
        char *sub = NULL;
        if (asprintf(&sub, "%s/%s", dir, subs.items[i]) < 0) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
        else e = walk_folder(sub, &here, out);
        free(sub);
    }
    str_list_free(&subs);
    return e;
}

/* A class's images, in its folder and every subfolder, in torchvision's
 * order: folders sorted by path (its sorted(os.walk(...))), then the images
 * of each sorted by name. */
static usi_error *scan_class(usi_dataset *ds, size_t label)
{
    char *dir = NULL;
    if (asprintf(&dir, "%s/%s", ds->root, ds->classes.items[label]) < 0)
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    folder_list folders = {0};
    size_t before = ds->n_samples;
    usi_error *e = walk_folder(dir, NULL, &folders);
    if (!e && folders.n) qsort(folders.items, folders.n, sizeof *folders.items, cmp_folder);
    for (size_t i = 0; i < folders.n && !e; i++)
        for (size_t j = 0; j < folders.items[i].images.n && !e; j++)
            e = add_sample(ds, folders.items[i].path, folders.items[i].images.items[j], (int32_t)label);
    folder_list_free(&folders);
    if (!e && ds->n_samples == before) {
        ds->empty_classes++;
        usi_log(USI_LOG_WARN, "dataset: class folder %s holds no .jpg, .jpeg or .png file", dir);
    }
    free(dir);
    return e;
}

/* root as the user gave it, and for a relative path where it was looked
 * for: "data/train (relative to the current folder /home/me)". */
static const char *root_shown(const char *root, char *buf, size_t size)
{
    char cwd[4096];
    if (root[0] == '/' || !getcwd(cwd, sizeof cwd)) return root;
    snprintf(buf, size, "%s (relative to the current folder %s)", root, cwd);
    return buf;
}

usi_error *usi_dataset_open(const char *root, usi_dataset **out)
{
    *out = NULL;
    struct stat st;
    char shown[8400];
    if (stat(root, &st) != 0) {
        int err = errno;
        return usi_error_new(USI_ERR_IO, "dataset folder %s: %s", root_shown(root, shown, sizeof shown),
                             strerror(err));
    }
    if (!S_ISDIR(st.st_mode))
        return usi_error_new(USI_ERR_INVALID, "dataset folder %s: not a folder",
                             root_shown(root, shown, sizeof shown));
    usi_dataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->root = strdup(root))) {
        free(ds);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    usi_error *e = list_dir(root, &ds->classes, NULL);
    if (e) e = usi_error_prefix(e, "dataset folder ");
    if (!e && ds->classes.n == 0)
        e = usi_error_new(USI_ERR_INVALID,
                          "dataset folder %s has no class folders (expected %s/<class>/<image>.jpg)",
                          root_shown(root, shown, sizeof shown), root);
    for (size_t c = 0; !e && c < ds->classes.n; c++) e = scan_class(ds, c);
    if (e) {
        usi_dataset_free(ds);
        return e;
    }
    *out = ds;
    return NULL;
}

usi_error *usi_dataset_check_training(const usi_dataset *ds)
{
    if (ds->classes.n >= 2) return NULL;
    return usi_error_new(USI_ERR_INVALID,
                         "%s has one class folder (%s); classification needs at least 2 "
                         "(one folder per class: %s/<class>/<image>.jpg)",
                         ds->root, ds->classes.n ? ds->classes.items[0] : "", ds->root);
}

usi_error *usi_dataset_count_classes(const char *root, size_t *n)
{
    str_list names = {0};
    usi_error *e = list_dir(root, &names, NULL);
    *n = e ? 0 : names.n;
    str_list_free(&names);
    return e;
}

void usi_dataset_free(usi_dataset *ds)
{
    if (!ds) return;
    for (size_t i = 0; i < ds->n_samples; i++) free(ds->samples[i].path);
    free(ds->samples);
    str_list_free(&ds->classes);
    free(ds->root);
    free(ds);
}

const char *usi_dataset_root(const usi_dataset *ds) { return ds->root; }
size_t usi_dataset_size(const usi_dataset *ds) { return ds->n_samples; }
size_t usi_dataset_class_count(const usi_dataset *ds) { return ds->classes.n; }
const char *usi_dataset_class_name(const usi_dataset *ds, size_t label)
{
    return label < ds->classes.n ? ds->classes.items[label] : NULL;
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
