#include "plugin/registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin/host.h"
#include "plugin/params.h"
#include "util/error.h"
#include "util/log.h"
#include "util/strutil.h"

struct usi_registry {
    uint32_t min_minor;
    void **handles;
    size_t n_handles;
    char **paths;            /* real paths of every file tried */
    size_t n_paths;
    usi_loaded *items;
    size_t n_items;
    usi_problem *problems;
    size_t n_problems;
};

const char *usi_kind_name(int32_t kind)
{
    switch (kind) {
    case USI_KIND_BACKBONE: return "backbone";
    case USI_KIND_TEACHER: return "teacher";
    case USI_KIND_AUGMENT: return "augment";
    default: return "component";
    }
}

usi_registry *usi_registry_new(uint32_t min_minor)
{
    usi_host_api_get(); /* fill the table before any thread can race on it */
    usi_registry *r = calloc(1, sizeof *r);
    if (r) r->min_minor = min_minor;
    return r;
}

void usi_registry_free(usi_registry *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_items; i++) {
        free((char *)r->items[i].path);
        free((char *)r->items[i].twin_path);
    }
    for (size_t i = 0; i < r->n_problems; i++) {
        free((char *)r->problems[i].path);
        free((char *)r->problems[i].message);
    }
    for (size_t i = 0; i < r->n_paths; i++) free(r->paths[i]);
    /* Close last: component tables live inside the plugins. */
    for (size_t i = 0; i < r->n_handles; i++) dlclose(r->handles[i]);
    free(r->items);
    free(r->problems);
    free(r->paths);
    free(r->handles);
    free(r);
}

static int push(void **arr, size_t *n, size_t elem, const void *item)
{
    void *p = realloc(*arr, (*n + 1) * elem);
    if (!p) return 0;
    memcpy((char *)p + *n * elem, item, elem);
    *arr = p;
    (*n)++;
    return 1;
}

static usi_error *problem(usi_registry *r, const char *path, usi_error *e)
{
    usi_problem pb = {strdup(path), strdup(usi_error_message(e))};
    push((void **)&r->problems, &r->n_problems, sizeof pb, &pb);
    return e;
}

/* Refuse files and folders that another user could replace, as ssh does
 * with private keys: owned by root or by us, not writable by group/others. */
static usi_error *check_safe(const char *path, const struct stat *st, int is_dir)
{
    if (st->st_uid != 0 && st->st_uid != geteuid())
        return usi_error_new(USI_ERR_INVALID,
                             "%s: refusing %s owned by another user (uid %u); "
                             "only plugins owned by you or root are loaded",
                             path, is_dir ? "plugin folder" : "plugin", (unsigned)st->st_uid);
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return usi_error_new(USI_ERR_INVALID,
                             "%s: refusing %s writable by other users (mode %03o); "
                             "fix it with: chmod go-w '%s'",
                             path, is_dir ? "plugin folder" : "plugin",
                             (unsigned)(st->st_mode & 0777), path);
    return NULL;
}

static usi_error *check_component(const usi_registry *r, const char *path,
                                  const usi_component *c)
{
    (void)r;
    if (!c || c->struct_size < sizeof(usi_component))
        return usi_error_new(USI_ERR_VERSION,
                             "%s: a component table is %zu bytes, ABI 1.0 needs %zu; rebuild the plugin against the USI SDK",
                             path, c ? c->struct_size : 0, sizeof(usi_component));
    if (!c->name || !*c->name)
        return usi_error_new(USI_ERR_INVALID, "%s: a component has no name", path);
    for (const char *p = c->name; *p; p++)
        if (!(*p == '_' || *p == '-' || *p == '.' || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9')))
            return usi_error_new(USI_ERR_INVALID,
                                 "%s: component name '%s' may use only a-z, 0-9, '_', '-', '.'",
                                 path, c->name);
    if (!c->create || !c->destroy || !c->ops)
        return usi_error_new(USI_ERR_INVALID, "%s: component '%s' lacks create, destroy or ops",
                             path, c->name);
    size_t ops_size = *(const size_t *)c->ops, need = 0;
    int ok = 1;
    switch (c->kind) {
    case USI_KIND_BACKBONE: {
        const usi_backbone_ops *o = c->ops;
        need = sizeof *o;
        ok = ops_size < need || o->build;
        break;
    }
    case USI_KIND_TEACHER: {
        const usi_teacher_ops *o = c->ops;
        need = sizeof *o;
        ok = ops_size < need || (o->spec && (!o->build != !o->forward));
        break;
    }
    case USI_KIND_AUGMENT: {
        const usi_augment_ops *o = c->ops;
        need = sizeof *o;
        ok = ops_size < need ||
             (o->stage == USI_AUGMENT_SAMPLE && o->apply_sample) ||
             (o->stage == USI_AUGMENT_BATCH && o->apply_batch);
        break;
    }
    default:
        return usi_error_new(USI_ERR_INVALID, "%s: component '%s' has unknown kind %d",
                             path, c->name, (int)c->kind);
    }
    if (ops_size < need)
        return usi_error_new(USI_ERR_VERSION,
                             "%s: %s '%s' has an ops table of %zu bytes, ABI 1.0 needs %zu; "
                             "rebuild the plugin against the USI SDK",
                             path, usi_kind_name(c->kind), c->name, ops_size, need);
    if (!ok)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: %s '%s' lacks the functions its kind needs "
                             "(backbone: build; teacher: spec and build or forward; "
                             "augment: apply_sample or apply_batch for its stage)",
                             path, usi_kind_name(c->kind), c->name);
    usi_error *e = usi_schema_check(c);
    if (e) return usi_error_prefix(e, "%s: ", path);
    return NULL;
}

static usi_error *negotiate(usi_registry *r, const char *path, void *handle,
                            usi_negotiate *n)
{
    dlerror();
    void *sym = dlsym(handle, USI_PLUGIN_ENTRY_SYMBOL);
    if (!sym)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: no '%s' symbol; a USI plugin exports it with USI_PLUGIN_EXPORT "
                             "(see usi/plugin.h)", path, USI_PLUGIN_ENTRY_SYMBOL);
    usi_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    memset(n, 0, sizeof *n);
    n->struct_size = sizeof *n;
    n->host_abi_major = USI_ABI_MAJOR;
    n->host_abi_minor = USI_ABI_MINOR;
    n->host = usi_host_api_get();
    usi_error *e = entry(n);
    if (e) return usi_error_prefix(e, "%s: the plugin refused this host: ", path);
    if (n->plugin_abi_major != USI_ABI_MAJOR)
        return usi_error_new(USI_ERR_VERSION,
                             "%s: built for USI ABI %u.%u, this usi speaks %d.x; "
                             "rebuild the plugin against this SDK (pkg-config usi-sdk)",
                             path, n->plugin_abi_major, n->plugin_abi_minor, USI_ABI_MAJOR);
    if (n->plugin_abi_minor < r->min_minor)
        return usi_error_new(USI_ERR_VERSION,
                             "%s: built for USI ABI %u.%u, older than the oldest this usi accepts (%d.%u); "
                             "rebuild the plugin against this SDK",
                             path, n->plugin_abi_major, n->plugin_abi_minor, USI_ABI_MAJOR, r->min_minor);
    const usi_plugin_desc *d = n->desc;
    if (!d || d->struct_size < sizeof(usi_plugin_desc))
        return usi_error_new(USI_ERR_VERSION,
                             "%s: the plugin descriptor is %zu bytes, ABI 1.0 needs %zu",
                             path, d ? d->struct_size : 0, sizeof(usi_plugin_desc));
    if (!d->name || !d->vendor || !d->license || !d->version)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: the plugin descriptor lacks a name, vendor, license or version", path);
    if (d->n_components && !d->components)
        return usi_error_new(USI_ERR_INVALID, "%s: %zu components declared but no table",
                             path, d->n_components);
    for (size_t i = 0; i < d->n_components; i++)
        USI_TRY(check_component(r, path, d->components[i]));
    return NULL;
}

usi_error *usi_registry_load(usi_registry *r, const char *path)
{
    char real[PATH_MAX];
    struct stat st;
    if (!realpath(path, real) || stat(real, &st) != 0)
        return problem(r, path, usi_error_new(USI_ERR_IO, "%s: %s", path, strerror(errno)));
    for (size_t i = 0; i < r->n_paths; i++)
        if (strcmp(r->paths[i], real) == 0) return NULL;
    char *copy = strdup(real);
    if (!copy || !push((void **)&r->paths, &r->n_paths, sizeof copy, &copy)) {
        free(copy);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    if (!S_ISREG(st.st_mode))
        return problem(r, path, usi_error_new(USI_ERR_INVALID, "%s: not a regular file", path));
    usi_error *e = check_safe(path, &st, 0);
    if (e) return problem(r, path, e);

    unsigned char magic[4] = {0};
    FILE *f = fopen(real, "rb");
    if (!f)
        return problem(r, path, usi_error_new(USI_ERR_IO, "%s: %s", path, strerror(errno)));
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got != 4 || memcmp(magic, "\x7f" "ELF", 4) != 0)
        return problem(r, path, usi_error_new(USI_ERR_INVALID,
                                              "%s: not a shared object (no ELF header); "
                                              "remove it from the plugin folder", path));

    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        return problem(r, path, usi_error_new(USI_ERR_INVALID, "%s: cannot load: %s", path,
                                              why ? why : "unknown dlopen error"));
    }
    usi_negotiate n;
    e = negotiate(r, path, h, &n);
    if (e) {
        dlclose(h);
        return problem(r, path, e);
    }
    if (!push((void **)&r->handles, &r->n_handles, sizeof h, &h)) {
        dlclose(h);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n.desc->n_components; i++) {
        const usi_component *c = n.desc->components[i];
        usi_loaded item = {c, n.desc, strdup(path), n.plugin_abi_major, n.plugin_abi_minor, NULL};
        for (size_t j = 0; j < r->n_items; j++) {
            usi_loaded *other = &r->items[j];
            if (strcmp(other->comp->name, c->name) != 0) continue;
            usi_error *dup = usi_error_new(USI_ERR_INVALID,
                                           "component '%s' is defined by both %s and %s; "
                                           "remove one of the two files",
                                           c->name, other->path, path);
            problem(r, path, dup);
            usi_error_free(dup);
            if (!other->twin_path) other->twin_path = strdup(path);
            item.twin_path = strdup(other->path);
        }
        if (!push((void **)&r->items, &r->n_items, sizeof item, &item)) {
            free((char *)item.path);
            return usi_error_new(USI_ERR_NOMEM, "out of memory");
        }
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

usi_error *usi_registry_scan(usi_registry *r, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return usi_error_new(USI_ERR_IO, "plugin folder %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return usi_error_new(USI_ERR_INVALID, "plugin folder %s: not a folder", dir);
    USI_TRY(check_safe(dir, &st, 1));
    DIR *d = opendir(dir);
    if (!d) return usi_error_new(USI_ERR_IO, "plugin folder %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !usi_ends_with(de->d_name, ".so")) continue;
        char *name = strdup(de->d_name);
        if (name && !push((void **)&names, &n, sizeof name, &name)) free(name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        usi_error *e = usi_registry_load(r, path);
        if (e) {
            usi_log(USI_LOG_WARN, "%s", usi_error_message(e));
            usi_error_free(e);
        }
        free(names[i]);
    }
    free(names);
    return NULL;
}

#ifndef USI_BUILD_ROOT
#define USI_BUILD_ROOT ""
#endif
#ifndef USI_PLUGIN_DIR_REL
#define USI_PLUGIN_DIR_REL ""
#endif
#ifndef USI_PLUGIN_DIR
#define USI_PLUGIN_DIR ""
#endif

/* Folders that hold plugins in a build tree: <build>/{plugins,teachers,augment}/<name>/. */
static const char *const build_tree_kinds[] = {"plugins", "teachers", "augment"};

static int exe_dir(char *out, size_t cap)
{
    ssize_t len = readlink("/proc/self/exe", out, cap - 1);
    if (len <= 0) return 0;
    out[len] = 0;
    char *slash = strrchr(out, '/');
    if (!slash) return 0;
    *slash = 0;
    return 1;
}

static int in_build_tree(void)
{
    char exe[PATH_MAX], root[PATH_MAX];
    if (!*USI_BUILD_ROOT || !exe_dir(exe, sizeof exe) || !realpath(USI_BUILD_ROOT, root))
        return 0;
    size_t n = strlen(root);
    return strncmp(exe, root, n) == 0 && (exe[n] == '/' || exe[n] == 0);
}

const char *usi_default_plugin_dir(void)
{
    static char dir[PATH_MAX];
    char exe[PATH_MAX], joined[PATH_MAX * 2];
    if (in_build_tree()) {
        snprintf(dir, sizeof dir, "%s", USI_BUILD_ROOT);
        return dir;
    }
    if (*USI_PLUGIN_DIR_REL && exe_dir(exe, sizeof exe)) {
        snprintf(joined, sizeof joined, "%s/%s", exe, USI_PLUGIN_DIR_REL);
        if (realpath(joined, dir)) return dir;
    }
    snprintf(dir, sizeof dir, "%s", USI_PLUGIN_DIR);
    return dir;
}

static void scan_soft(usi_registry *r, const char *dir)
{
    usi_error *e = usi_registry_scan(r, dir);
    if (e) {
        usi_log(USI_LOG_WARN, "%s", usi_error_message(e));
        problem(r, dir, e);
        usi_error_free(e);
    }
}

static void scan_build_tree(usi_registry *r)
{
    for (size_t k = 0; k < sizeof build_tree_kinds / sizeof *build_tree_kinds; k++) {
        char top[PATH_MAX];
        snprintf(top, sizeof top, "%s/%s", USI_BUILD_ROOT, build_tree_kinds[k]);
        DIR *d = opendir(top);
        if (!d) continue;
        char **subs = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char *s = strdup(de->d_name);
            if (s && !push((void **)&subs, &n, sizeof s, &s)) free(s);
        }
        closedir(d);
        if (n) qsort(subs, n, sizeof *subs, cmp_str);
        for (size_t i = 0; i < n; i++) {
            char sub[PATH_MAX * 2];
            struct stat st;
            snprintf(sub, sizeof sub, "%s/%s", top, subs[i]);
            if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) scan_soft(r, sub);
            free(subs[i]);
        }
        free(subs);
    }
}

usi_error *usi_registry_discover(usi_registry *r, const char *const *extra_dirs,
                                 size_t n_extra, const char *const *config_dirs,
                                 size_t n_config)
{
    for (size_t i = 0; i < n_extra; i++) USI_TRY(usi_registry_scan(r, extra_dirs[i]));
    for (size_t i = 0; i < n_config; i++) scan_soft(r, config_dirs[i]);
    /* secure_getenv is NULL for setuid/setgid programs. */
    const char *env = secure_getenv("USI_PLUGIN_PATH");
    if (env && *env) {
        char *copy = strdup(env), *save = NULL;
        for (char *tok = copy ? strtok_r(copy, ":", &save) : NULL; tok;
             tok = strtok_r(NULL, ":", &save))
            scan_soft(r, tok);
        free(copy);
    }
    if (in_build_tree()) scan_build_tree(r);
    else if (*usi_default_plugin_dir()) {
        struct stat st;
        if (stat(usi_default_plugin_dir(), &st) == 0) scan_soft(r, usi_default_plugin_dir());
    }
    return NULL;
}

size_t usi_registry_count(const usi_registry *r) { return r->n_items; }
const usi_loaded *usi_registry_at(const usi_registry *r, size_t i)
{
    return i < r->n_items ? &r->items[i] : NULL;
}
size_t usi_registry_problem_count(const usi_registry *r) { return r->n_problems; }
const usi_problem *usi_registry_problem(const usi_registry *r, size_t i)
{
    return i < r->n_problems ? &r->problems[i] : NULL;
}

const usi_loaded *usi_registry_find(const usi_registry *r, int32_t kind, const char *name)
{
    for (size_t i = 0; i < r->n_items; i++)
        if ((!kind || r->items[i].comp->kind == kind) &&
            strcmp(r->items[i].comp->name, name) == 0)
            return &r->items[i];
    return NULL;
}

usi_error *usi_registry_select(const usi_registry *r, int32_t kind, const char *name,
                               const usi_loaded **out)
{
    *out = NULL;
    const usi_loaded *hit = usi_registry_find(r, kind, name);
    if (hit && hit->twin_path)
        return usi_error_new(USI_ERR_INVALID,
                             "%s '%s' is defined by both %s and %s; remove one of the two files",
                             usi_kind_name(kind), name, hit->path, hit->twin_path);
    if (hit) {
        *out = hit;
        return NULL;
    }
    const usi_loaded *other = usi_registry_find(r, 0, name);
    if (other)
        return usi_error_new(USI_ERR_INVALID, "'%s' (from %s) is a %s, not %s %s",
                             name, other->path, usi_kind_name(other->comp->kind),
                             kind == USI_KIND_AUGMENT ? "an" : "a", usi_kind_name(kind));
    /* Suggest the three closest names of this kind. */
    const char *best[3] = {0};
    size_t dist[3] = {(size_t)-1, (size_t)-1, (size_t)-1};
    size_t n_kind = 0;
    for (size_t i = 0; i < r->n_items; i++) {
        if (r->items[i].comp->kind != kind) continue;
        n_kind++;
        const char *cand = r->items[i].comp->name;
        size_t d = usi_edit_distance(name, cand);
        for (int k = 0; k < 3; k++) {
            if (d < dist[k]) {
                for (int m = 2; m > k; m--) {
                    dist[m] = dist[m - 1];
                    best[m] = best[m - 1];
                }
                dist[k] = d;
                best[k] = cand;
                break;
            }
        }
    }
    usi_strbuf msg = {0};
    usi_strbuf_addf(&msg, "no %s named '%s' was found", usi_kind_name(kind), name);
    if (n_kind) {
        usi_strbuf_addf(&msg, "; did you mean ");
        for (int k = 0; k < 3 && best[k]; k++)
            usi_strbuf_addf(&msg, "%s'%s'", k ? (k == 2 || !best[k + 1] ? " or " : ", ") : "", best[k]);
        usi_strbuf_addf(&msg, "?");
    } else {
        usi_strbuf_addf(&msg, "; no %s plugins were found at all", usi_kind_name(kind));
    }
    usi_strbuf_addf(&msg, " (`usi plugins` lists what is installed; add folders with --plugin-dir, "
                          "plugin_path or USI_PLUGIN_PATH)");
    usi_error *e = usi_error_new(USI_ERR_INVALID, "%s", msg.data ? msg.data : "not found");
    usi_strbuf_free(&msg);
    return e;
}
