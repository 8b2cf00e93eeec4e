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

/* The files of a dataset's class folders that are not read, counted by
 * extension (lower case) for one summary line. The first LEFT_OUT_KINDS
 * extensions met are counted apart; files of later ones only in total. */
enum { LEFT_OUT_KINDS = 32, EXT_MAX = 16 };

typedef struct left_out_kind {
    char ext[EXT_MAX]; /* ".webp", or "(none)" */
    size_t count;
} left_out_kind;

typedef struct left_out {
    size_t total, n_kinds;
    left_out_kind kinds[LEFT_OUT_KINDS];
} left_out;

struct usi_dataset {
    char *root;
    str_list classes; /* class folder names, sorted: label i is classes.items[i] */
    sample *samples;
    size_t n_samples, cap_samples;
    size_t empty_classes;
    left_out skipped;
};

/* As torchvision's has_file_allowed_extension: the name's end, in any case,
 * so ".jpg" and ".hidden.jpg" are images too. */
int usi_is_image_name(const char *name)
{
    /* torchvision's IMG_EXTENSIONS */
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
        size_t k = strlen(exts[i]);
        if (n >= k && !strcasecmp(name + n - k, exts[i])) return 1;
    }
    return 0;
}

/* name's extension as Python's os.path.splitext finds it (the last '.',
 * unless only dots come before it), lower case, in out; "(none)" when there
 * is none or it is too long to be one. */
static void extension_of(const char *name, char out[EXT_MAX])
{
    const char *dot = strrchr(name, '.');
    const char *p = name;
    while (dot && p < dot && *p == '.') p++;
    if (!dot || p == dot || strlen(dot) >= EXT_MAX) {
        snprintf(out, EXT_MAX, "(none)");
        return;
    }
    size_t i = 0;
    for (; dot[i]; i++) out[i] = (char)(dot[i] >= 'A' && dot[i] <= 'Z' ? dot[i] - 'A' + 'a' : dot[i]);
    out[i] = 0;
}

static void left_out_add(left_out *lo, const char *name)
{
    char ext[EXT_MAX];
    extension_of(name, ext);
    lo->total++;
    for (size_t i = 0; i < lo->n_kinds; i++)
        if (!strcmp(lo->kinds[i].ext, ext)) {
            lo->kinds[i].count++;
            return;
        }
    if (lo->n_kinds == LEFT_OUT_KINDS) return;
    memcpy(lo->kinds[lo->n_kinds].ext, ext, EXT_MAX);
    lo->kinds[lo->n_kinds++].count = 1;
}

/* Length of the UTF-8 sequence starting at s (RFC 3629: no overlong form,
 * no surrogate, nothing past U+10FFFF), or 0 when it is not one. */
static size_t utf8_length(const unsigned char *s)
{
    unsigned c = s[0], cp, min;
    size_t n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0; /* also stops at the terminating NUL */
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

static int is_utf8(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_length(p);
        if (!n) return 0;
        p += n;
    }
    return 1;
}

/* name for a message: valid UTF-8 as it is, any other byte (and control
 * characters) as \xNN, cut to fit size. */
static void escape_name(const char *name, char *out, size_t size)
{
    size_t o = 0;
    if (!size) return;
    for (const unsigned char *p = (const unsigned char *)name; *p;) {
        size_t n = utf8_length(p);
        int plain = n > 1 || (n == 1 && *p >= 0x20 && *p != 0x7F);
        size_t need = plain ? n : 4;
        if (o + need >= size) break;
        if (plain) memcpy(out + o, p, n);
        else snprintf(out + o, size - o, "\\x%02x", *p);
        o += need;
        p += plain ? n : 1;
    }
    out[o] = 0;
}

/* Most files first; ties by extension, so the line is the same every run. */
static int cmp_kind(const void *a, const void *b)
{
    const left_out_kind *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return strcmp(x->ext, y->ext);
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
 * file that can't be stat'ed counts as a file so the loader reports it.
 * Hidden names (".x") are listed too: torchvision's os.walk sees them. */
static usi_error *list_dir(const char *dir, str_list *dirs, str_list *files)
{
    DIR *d = opendir(dir);
    if (!d) return usi_error_new(USI_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    usi_error *e = NULL;
    while (!e && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
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
 * (os.walk(followlinks=True)), hidden folders and files included as there.
 * A folder that can't be read is reported and left out with its images; a
 * link back to a folder above is reported and not followed. The other files
 * are counted in lo, but for hidden ones: those are system files (.DS_Store,
 * .gitkeep), not images someone meant to train on, and counting them would
 * put a line in every run that says nothing. */
static usi_error *walk_folder(const char *dir, const walk_chain *up, folder_list *out, left_out *lo)
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
    for (size_t i = 0; i < files.n && !e; i++) {
        if (usi_is_image_name(files.items[i])) e = str_list_add(&images, files.items[i]);
        else if (files.items[i][0] != '.') left_out_add(lo, files.items[i]);
    }
    str_list_free(&files);
    char *path = e ? NULL : strdup(dir);
    if (!e && !path) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (!e) e = folder_list_add(out, path, &images);
    str_list_free(&images);
    walk_chain here = {st.st_dev, st.st_ino, up};
    for (size_t i = 0; i < subs.n && !e; i++) {
        char *sub = NULL;
        if (asprintf(&sub, "%s/%s", dir, subs.items[i]) < 0) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
        else e = walk_folder(sub, &here, out, lo);
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
    usi_error *e = walk_folder(dir, NULL, &folders, &ds->skipped);
    if (!e && folders.n) qsort(folders.items, folders.n, sizeof *folders.items, cmp_folder);
    for (size_t i = 0; i < folders.n && !e; i++)
        for (size_t j = 0; j < folders.items[i].images.n && !e; j++)
            e = add_sample(ds, folders.items[i].path, folders.items[i].images.items[j], (int32_t)label);
    folder_list_free(&folders);
    if (!e && ds->n_samples == before) {
        ds->empty_classes++;
        usi_log(USI_LOG_WARN, "dataset: class folder %s holds no image file (" USI_IMAGE_EXTENSIONS ")", dir);
    }
    free(dir);
    return e;
}

/* The files left out of the dataset, in one line: how many, and the most
 * common extensions. */
static void log_left_out(const usi_dataset *ds)
{
    const left_out *lo = &ds->skipped;
    if (!lo->total) return;
    left_out_kind kinds[LEFT_OUT_KINDS];
    memcpy(kinds, lo->kinds, lo->n_kinds * sizeof *kinds);
    qsort(kinds, lo->n_kinds, sizeof *kinds, cmp_kind);
    char list[512];
    size_t o = 0, shown = lo->n_kinds < 5 ? lo->n_kinds : 5, rest = lo->total;
    for (size_t i = 0; i < shown; i++) {
        char ext[4 * EXT_MAX];
        escape_name(kinds[i].ext, ext, sizeof ext);
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s %zu", i ? ", " : "", ext, kinds[i].count);
        rest -= kinds[i].count;
    }
    if (rest) snprintf(list + o, sizeof list - o, ", other %zu", rest);
    char shown_root[4200];
    escape_name(ds->root, shown_root, sizeof shown_root);
    usi_log(USI_LOG_WARN, "dataset: %zu file%s in %s left out: %s (only " USI_IMAGE_EXTENSIONS " files are read, "
            "as in torchvision's ImageFolder; convert any images among them to PNG)", lo->total,
            lo->total == 1 ? "" : "s", shown_root, list);
}

/* Class names go into best.safetensors' JSON header as strings, and JSON
 * text is UTF-8: a folder named otherwise would make the weights file
 * unreadable, so it is refused before any training. */
static usi_error *check_class_names(const usi_dataset *ds)
{
    for (size_t c = 0; c < ds->classes.n; c++) {
        if (is_utf8(ds->classes.items[c])) continue;
        char name[1024], root[4200];
        escape_name(ds->classes.items[c], name, sizeof name);
        escape_name(ds->root, root, sizeof root);
        return usi_error_new(USI_ERR_INVALID,
                             "class folder %s/%s: its name is not valid UTF-8 (the bytes shown as \\xNN); "
                             "class names are stored as text in the weights file, so rename the folder "
                             "(e.g. convmv -f latin1 -t utf8 --notest)",
                             root, name);
    }
    return NULL;
}

/* Hidden folders under the root (.git, .ipynb_checkpoints, .Trash-1000)
 * belong to tools, not to the data: they are not classes. torchvision's
 * find_classes takes them, then refuses the whole dataset when they hold no
 * image, so leaving them out changes no dataset torchvision accepts unless
 * such a folder holds images, which the warning names. */
static void drop_hidden(str_list *classes, const char *root, int warn)
{
    size_t kept = 0;
    for (size_t i = 0; i < classes->n; i++) {
        char *name = classes->items[i];
        if (name[0] != '.') {
            classes->items[kept++] = name;
            continue;
        }
        if (warn) {
            char shown[1024];
            escape_name(name, shown, sizeof shown);
            usi_log(USI_LOG_WARN, "dataset: %s/%s is a hidden folder and not taken as a class "
                    "(torchvision would take it; rename it without the '.' to make it one)", root, shown);
        }
        free(name);
    }
    classes->n = kept;
}

/* path with a leading "~/" (or a lone "~") under $HOME, as plugin_path is
 * read; anything else as it is. NULL when out of memory. */
static char *expand_home(const char *path)
{
    const char *home = getenv("HOME");
    char *out = NULL;
    if (path[0] == '~' && (path[1] == '/' || path[1] == 0) && home && *home) {
        if (asprintf(&out, "%s%s", home, path + 1) < 0) out = NULL;
        return out;
    }
    return strdup(path);
}

/* root as the user gave it, and how it was looked for: "~/x (/home/me/x)",
 * or "data/train (relative to the current folder /home/me)". */
static const char *root_shown(const char *given, const char *used, char *buf, size_t size)
{
    char cwd[4096];
    if (strcmp(given, used) != 0) {
        snprintf(buf, size, "%s (%s)", given, used);
        return buf;
    }
    if (used[0] == '/' || !getcwd(cwd, sizeof cwd)) return used;
    snprintf(buf, size, "%s (relative to the current folder %s)", used, cwd);
    return buf;
}

/* The class folders of root, hidden ones dropped (and reported when
 * warn). */
static usi_error *list_classes(const char *root, str_list *classes, int warn)
{
    usi_error *e = list_dir(root, classes, NULL);
    if (!e) drop_hidden(classes, root, warn);
    return e;
}

static usi_error *check_root(const char *given, const char *root)
{
    struct stat st;
    char shown[8400];
    if (stat(root, &st) != 0) {
        int err = errno;
        return usi_error_new(USI_ERR_IO, "dataset folder %s: %s", root_shown(given, root, shown, sizeof shown),
                             strerror(err));
    }
    if (!S_ISDIR(st.st_mode))
        return usi_error_new(USI_ERR_INVALID, "dataset folder %s: not a folder",
                             root_shown(given, root, shown, sizeof shown));
    return NULL;
}

/* Lists and scans ds's classes; ds->root is set. */
static usi_error *scan_dataset(usi_dataset *ds, const char *given)
{
    char shown[8400];
    usi_error *e = list_classes(ds->root, &ds->classes, 1);
    if (e) return usi_error_prefix(e, "dataset folder ");
    if (ds->classes.n == 0)
        return usi_error_new(USI_ERR_INVALID,
                             "dataset folder %s has no class folders (expected %s/<class>/<image>.jpg)",
                             root_shown(given, ds->root, shown, sizeof shown), ds->root);
    USI_TRY(check_class_names(ds));
    for (size_t c = 0; c < ds->classes.n; c++) USI_TRY(scan_class(ds, c));
    log_left_out(ds);
    return NULL;
}

usi_error *usi_dataset_open(const char *root, usi_dataset **out)
{
    *out = NULL;
    usi_dataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->root = expand_home(root))) {
        free(ds);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    usi_error *e = check_root(root, ds->root);
    if (!e) e = scan_dataset(ds, root);
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
    char *dir = expand_home(root);
    if (!dir) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = list_classes(dir, &names, 0);
    *n = e ? 0 : names.n;
    str_list_free(&names);
    free(dir);
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
