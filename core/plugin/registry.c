#include "plugin/registry.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin/crash.h"
#include "plugin/elf_check.h"
#include "plugin/host.h"
#include "plugin/origin.h"
#include "plugin/params.h"
#include "plugin/registry_internal.h"
#include "util/error.h"
#include "util/log.h"
#include "util/strutil.h"

/* A file this registry holds open, and the name it was loaded by (for the
 * line a crash in its destructors leaves). */
typedef struct opened {
    void *handle;
    char *path;
} opened;

struct usi_registry {
    uint32_t min_minor;
    int probe_timeout_ms;
    opened *handles;
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
    if (!r) return NULL;
    r->min_minor = min_minor;
    r->probe_timeout_ms = 10000;
    return r;
}

void usi_registry_set_probe_timeout(usi_registry *r, int ms) { r->probe_timeout_ms = ms; }

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
    for (size_t i = 0; i < r->n_handles; i++) {
        void *h = r->handles[i].handle;
        usi_plugin_origin_remove(h);
        usi_crash_forget_plugin(h);
        usi_crash_enter(r->handles[i].path, "unloading it", NULL); /* its destructors run */
        dlclose(h);
        usi_crash_leave();
        free(r->handles[i].path);
    }
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

usi_error *usi_registry_add_problem(usi_registry *r, const char *path, usi_error *e)
{
    usi_problem pb = {strdup(path), strdup(usi_error_message(e))};
    if (!pb.path || !pb.message || !push((void **)&r->problems, &r->n_problems, sizeof pb, &pb)) {
        free((char *)pb.path);
        free((char *)pb.message);
    }
    return e;
}

/* Refuse files and folders that another user could replace, as ssh does
 * with private keys: owned by root or by us, not writable by group/others. */
usi_error *usi_plugin_path_safe(const char *path, const struct stat *st, int is_dir)
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

usi_error *usi_plugin_negotiate(uint32_t min_minor, const char *path, void *handle, usi_negotiate *n)
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
    usi_crash_enter(path, "running its usi_plugin_entry", NULL);
    usi_error *e = entry(n);
    usi_crash_leave();
    if (e) return usi_error_prefix(e, "%s: the plugin refused this host: ", path);
    if (n->plugin_abi_major != USI_ABI_MAJOR)
        return usi_error_new(USI_ERR_VERSION,
                             "%s: built for USI ABI %u.%u, this usi speaks %d.x; "
                             "rebuild the plugin against this SDK (pkg-config usi-sdk)",
                             path, n->plugin_abi_major, n->plugin_abi_minor, USI_ABI_MAJOR);
    if (n->plugin_abi_minor < min_minor)
        return usi_error_new(USI_ERR_VERSION,
                             "%s: built for USI ABI %u.%u, older than the oldest this usi accepts (%d.%u); "
                             "rebuild the plugin against this SDK",
                             path, n->plugin_abi_major, n->plugin_abi_minor, USI_ABI_MAJOR, min_minor);
    /* The checks read the plugin's tables, whose pointers may be wild. */
    usi_crash_enter(path, "reading its plugin descriptor", NULL);
    e = usi_plugin_check_desc(path, n->desc, n->plugin_abi_minor);
    usi_crash_leave();
    return e;
}

/* realpath() failed: say what is wrong with the name, not only errno. */
static usi_error *unreachable(const char *path, int err)
{
    struct stat lst;
    if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        char target[PATH_MAX];
        ssize_t len = readlink(path, target, sizeof target - 1);
        target[len > 0 ? len : 0] = 0;
        if (err == ENOENT)
            return usi_error_new(USI_ERR_IO,
                                 "%s: dangling symbolic link: it points to '%s', which does not exist; "
                                 "remove the link or restore its target",
                                 path, target);
        if (err == ELOOP)
            return usi_error_new(USI_ERR_IO, "%s: symbolic link loop (it points to '%s'); remove the link",
                                 path, target);
        return usi_error_new(USI_ERR_IO, "%s: symbolic link to '%s': %s", path, target, strerror(err));
    }
    return usi_error_new(USI_ERR_IO, "%s: %s", path, strerror(err));
}

/* Components of the new file whose names an earlier file has: each such pair
 * of files is one message (naming both files and every shared name), logged
 * now and recorded as a problem of both files; the components stay listed
 * but are refused when selected. */
static void mark_twins(usi_registry *r, size_t first_new)
{
    for (size_t i = first_new; i < r->n_items; i++) {
        usi_loaded *mine = &r->items[i];
        if (mine->twin_path) continue;
        for (size_t j = 0; j < first_new; j++) {
            usi_loaded *other = &r->items[j];
            if (strcmp(other->comp->name, mine->comp->name) != 0) continue;
            /* Collect every name this file shares with other's file. */
            usi_strbuf names = {0};
            size_t n = 0;
            for (size_t a = i; a < r->n_items; a++) {
                usi_loaded *x = &r->items[a];
                for (size_t b = 0; b < first_new; b++) {
                    usi_loaded *y = &r->items[b];
                    if (strcmp(y->path, other->path) || strcmp(x->comp->name, y->comp->name)) continue;
                    usi_strbuf_addf(&names, "%s'%s'", n++ ? ", " : "", x->comp->name);
                    if (!x->twin_path) x->twin_path = strdup(y->path);
                    if (!y->twin_path) y->twin_path = strdup(x->path);
                }
            }
            usi_error *e = usi_error_new(USI_ERR_INVALID,
                                         "%s %s %s defined by both %s and %s; %s refused in both files, "
                                         "whose other components stay available: rename %s in the "
                                         "plugin you build, or remove one of the two files",
                                         n == 1 ? "component" : "components",
                                         names.data ? names.data : "", n == 1 ? "is" : "are",
                                         other->path, mine->path, n == 1 ? "it is" : "they are",
                                         n == 1 ? "it" : "them");
            usi_log(USI_LOG_WARN, "%s", usi_error_message(e));
            usi_registry_add_problem(r, other->path, e);
            usi_registry_add_problem(r, mine->path, e);
            usi_error_free(e);
            usi_strbuf_free(&names);
            break;
        }
    }
}

usi_error *usi_registry_load(usi_registry *r, const char *path)
{
    char real[PATH_MAX];
    struct stat st;
    if (!realpath(path, real)) return usi_registry_add_problem(r, path, unreachable(path, errno));
    if (stat(real, &st) != 0)
        return usi_registry_add_problem(r, path, usi_error_new(USI_ERR_IO, "%s: %s", path, strerror(errno)));
    for (size_t i = 0; i < r->n_paths; i++)
        if (strcmp(r->paths[i], real) == 0) return NULL;
    char *copy = strdup(real);
    if (!copy || !push((void **)&r->paths, &r->n_paths, sizeof copy, &copy)) {
        free(copy);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    if (!S_ISREG(st.st_mode))
        return usi_registry_add_problem(r, path,
                                        usi_error_new(USI_ERR_INVALID, "%s: not a regular file", path));
    usi_error *e = usi_plugin_path_safe(path, &st, 0);
    if (!e) e = usi_elf_check(real, path);
    if (!e) e = usi_plugin_probe(real, path, r->min_minor, r->probe_timeout_ms);
    if (e) return usi_registry_add_problem(r, path, e);

    usi_crash_enter(path, "loading it", NULL); /* its constructors run */
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    usi_crash_leave();
    if (!h) {
        const char *why = dlerror();
        return usi_registry_add_problem(r, path, usi_error_new(USI_ERR_INVALID, "%s: cannot load: %s", path,
                                              why ? why : "unknown dlopen error"));
    }
    usi_negotiate n;
    e = usi_plugin_negotiate(r->min_minor, path, h, &n);
    if (e) {
        dlclose(h);
        return usi_registry_add_problem(r, path, e);
    }
    const void *entry = dlsym(h, USI_PLUGIN_ENTRY_SYMBOL);
    opened o = {h, strdup(path)};
    if (!o.path || usi_plugin_origin_add(h, entry, path, n.plugin_abi_minor) != 0) {
        free(o.path);
        dlclose(h);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    if (!push((void **)&r->handles, &r->n_handles, sizeof o, &o)) {
        usi_plugin_origin_remove(h);
        free(o.path);
        dlclose(h);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    usi_crash_note_plugin(h, entry, path);
    if (n.plugin_abi_minor > USI_ABI_MINOR)
        usi_log(USI_LOG_INFO,
                "%s: built for USI ABI %u.%u, newer than this usi (%d.%d): it loads, but the services "
                "added after %d.%d are unavailable to it; update usi to give them",
                path, n.plugin_abi_major, n.plugin_abi_minor, USI_ABI_MAJOR, USI_ABI_MINOR,
                USI_ABI_MAJOR, USI_ABI_MINOR);
    size_t first_new = r->n_items;
    for (size_t i = 0; i < n.desc->n_components; i++) {
        usi_loaded item = {n.desc->components[i], n.desc, strdup(path), n.plugin_abi_major,
                           n.plugin_abi_minor, NULL};
        if (!item.path || !push((void **)&r->items, &r->n_items, sizeof item, &item)) {
            free((char *)item.path);
            return usi_error_new(USI_ERR_NOMEM, "out of memory");
        }
    }
    mark_twins(r, first_new);
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

/* Worth suggesting: a typo (at most one edit in three characters of the
 * name asked for) or the same start (a family: "resnet" for "resnet50"). */
static int similar(const char *asked, const char *cand, size_t distance)
{
    size_t len = strlen(asked), prefix = 0;
    while (asked[prefix] && asked[prefix] == cand[prefix]) prefix++;
    size_t typos = len / 3 ? len / 3 : 1;
    return distance <= typos || prefix >= 3;
}

usi_error *usi_registry_select(const usi_registry *r, int32_t kind, const char *name,
                               const usi_loaded **out)
{
    *out = NULL;
    const usi_loaded *hit = usi_registry_find(r, kind, name);
    if (hit && hit->twin_path)
        return usi_error_new(USI_ERR_INVALID,
                             "%s '%s' is defined by both %s and %s, so neither is used; rename it in the "
                             "plugin you build, or remove one of the two files",
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
    /* Suggest the three closest names of this kind that look like it. */
    const char *best[3] = {0};
    size_t dist[3] = {(size_t)-1, (size_t)-1, (size_t)-1};
    size_t n_kind = 0;
    for (size_t i = 0; i < r->n_items; i++) {
        if (r->items[i].comp->kind != kind) continue;
        n_kind++;
        const char *cand = r->items[i].comp->name;
        size_t d = usi_edit_distance(name, cand);
        if (!similar(name, cand, d)) continue;
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
    if (best[0]) {
        usi_strbuf_addf(&msg, "; did you mean ");
        for (int k = 0; k < 3 && best[k]; k++)
            usi_strbuf_addf(&msg, "%s'%s'", k ? (k == 2 || !best[k + 1] ? " or " : ", ") : "", best[k]);
        usi_strbuf_addf(&msg, "?");
    } else if (n_kind) {
        usi_strbuf_addf(&msg, "; none of the %zu %s plugins found has a similar name", n_kind,
                        usi_kind_name(kind));
    } else {
        usi_strbuf_addf(&msg, "; no %s plugins were found at all", usi_kind_name(kind));
    }
    usi_strbuf_addf(&msg, " (`usi plugins` lists what is installed; add folders with --plugin-dir, "
                          "plugin_path or USI_PLUGIN_PATH)");
    usi_error *e = usi_error_new(USI_ERR_INVALID, "%s", msg.data ? msg.data : "not found");
    usi_strbuf_free(&msg);
    return e;
}
