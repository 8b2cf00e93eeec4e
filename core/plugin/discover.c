/* Plugin folders: scanning one, the standard search order, and where this
 * build or installation keeps its own plugins. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin/registry_internal.h"
#include "util/error.h"
#include "util/log.h"
#include "util/strutil.h"

static int push(char ***arr, size_t *n, char *s)
{
    char **p = realloc(*arr, (*n + 1) * sizeof *p);
    if (!p) return 0;
    p[(*n)++] = s;
    *arr = p;
    return 1;
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
    USI_TRY(usi_plugin_path_safe(dir, &st, 1));
    DIR *d = opendir(dir);
    if (!d) return usi_error_new(USI_ERR_IO, "plugin folder %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !usi_ends_with(de->d_name, ".so")) continue;
        char *name = strdup(de->d_name);
        if (name && !push(&names, &n, name)) free(name);
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
        usi_registry_add_problem(r, dir, e);
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
            if (s && !push(&subs, &n, s)) free(s);
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

/* One policy for the folders a user names (--plugin-dir, plugin_path,
 * USI_PLUGIN_PATH): one that another user could write into is an error, with
 * the chmod that fixes it, since any plugin in it would run as us. A folder
 * named in the config or the environment that does not exist is only a
 * problem: stale entries there are common and harmless. */
static usi_error *scan_named(usi_registry *r, const char *dir, const char *source)
{
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        usi_error *e = usi_plugin_path_safe(dir, &st, 1);
        if (e) return usi_error_prefix(e, "%s ", source);
    }
    scan_soft(r, dir);
    return NULL;
}

usi_error *usi_registry_discover(usi_registry *r, const char *const *extra_dirs,
                                 size_t n_extra, const char *const *config_dirs,
                                 size_t n_config)
{
    for (size_t i = 0; i < n_extra; i++) {
        usi_error *e = usi_registry_scan(r, extra_dirs[i]);
        if (e) return usi_error_prefix(e, "--plugin-dir ");
    }
    for (size_t i = 0; i < n_config; i++) USI_TRY(scan_named(r, config_dirs[i], "plugin_path"));
    /* secure_getenv is NULL for setuid/setgid programs. */
    const char *env = secure_getenv("USI_PLUGIN_PATH");
    usi_error *e = NULL;
    if (env && *env) {
        char *copy = strdup(env), *save = NULL;
        for (char *tok = copy ? strtok_r(copy, ":", &save) : NULL; tok && !e;
             tok = strtok_r(NULL, ":", &save))
            e = scan_named(r, tok, "USI_PLUGIN_PATH");
        free(copy);
    }
    if (e) return e;
    if (in_build_tree()) scan_build_tree(r);
    else if (*usi_default_plugin_dir()) {
        struct stat st;
        if (stat(usi_default_plugin_dir(), &st) == 0) scan_soft(r, usi_default_plugin_dir());
    }
    return NULL;
}
