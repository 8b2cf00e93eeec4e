#include "config/config.h"

#include "backend/device.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/schema.h"
#include "plugin/params.h"
#include "util/error.h"
#include "util/log.h"

enum { VT_INT, VT_FLOAT, VT_BOOL, VT_STRING, VT_LIST };

/* One value read from a file or --set, kept until the component it belongs
 * to is known (plugin options) or applied at once (core sections). */
typedef struct pending {
    char *origin;            /* "file.cfg:12" or "--set 'k=v'" */
    char *key;
    int type;
    int64_t i;
    double f;
    char *s;
    double *list;
    size_t n;
} pending;

/* A component chosen by name: backbone, teacher, or one augmentation. */
typedef struct slot {
    char *name;
    char *origin;
    pending *opts;
    size_t n_opts;
    usi_selected sel;
} slot;

struct usi_config {
    usi_params **sections;   /* one per usi_section_at(i) */
    char **plugin_path;
    size_t n_plugin_path;
    slot backbone, teacher;
    slot *augments;
    size_t n_augments;
    const char *base_dir;    /* folder of the file being loaded, or NULL */
    const char *cur_file;    /* the file being loaded, or NULL */
    int mixed_as_fp32;       /* "mixed" asked on a device without bf16 */
};

static const char *const default_augments[] = {"random_resized_crop", "hflip",
                                               "rand_augment", "mixup_cutmix"};

/* ---- small helpers ---- */

static void pending_free(pending *p)
{
    free(p->origin);
    free(p->key);
    free(p->s);
    free(p->list);
}

static void slot_clear(slot *s)
{
    free(s->name);
    free(s->origin);
    for (size_t i = 0; i < s->n_opts; i++) pending_free(&s->opts[i]);
    free(s->opts);
    usi_params_free(s->sel.params);
    memset(s, 0, sizeof *s);
}

static usi_error *slot_set_name(slot *s, const char *name, const char *origin)
{
    char *n = strdup(name), *o = strdup(origin);
    if (!n || !o) {
        free(n);
        free(o);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    free(s->name);
    free(s->origin);
    s->name = n;
    s->origin = o;
    return NULL;
}

static usi_error *nomem(void) { return usi_error_new(USI_ERR_NOMEM, "out of memory"); }

static const char *type_word(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP: return "a group { ... }";
    case CONFIG_TYPE_LIST: return "a list ( ... )";
    case CONFIG_TYPE_ARRAY: return "an array [ ... ]";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a bool";
    case CONFIG_TYPE_FLOAT: return "a float";
    default: return "an int";
    }
}

/* Read a scalar or a list of numbers into a pending value. */
static usi_error *read_value(config_setting_t *s, const char *origin, const char *key,
                             pending *out)
{
    memset(out, 0, sizeof *out);
    int t = config_setting_type(s);
    switch (t) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        out->type = VT_INT;
        out->i = config_setting_get_int64(s);
        break;
    case CONFIG_TYPE_FLOAT:
        out->type = VT_FLOAT;
        out->f = config_setting_get_float(s);
        break;
    case CONFIG_TYPE_BOOL:
        out->type = VT_BOOL;
        out->i = config_setting_get_bool(s);
        break;
    case CONFIG_TYPE_STRING:
        out->type = VT_STRING;
        out->s = strdup(config_setting_get_string(s));
        if (!out->s) return nomem();
        break;
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST: {
        out->type = VT_LIST;
        int n = config_setting_length(s);
        out->list = calloc(n > 0 ? (size_t)n : 1, sizeof(double));
        if (!out->list) return nomem();
        for (int i = 0; i < n; i++) {
            config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            int et = config_setting_type(e);
            if (et == CONFIG_TYPE_INT || et == CONFIG_TYPE_INT64)
                out->list[i] = (double)config_setting_get_int64(e);
            else if (et == CONFIG_TYPE_FLOAT)
                out->list[i] = config_setting_get_float(e);
            else {
                free(out->list);
                out->list = NULL;
                return usi_error_new(USI_ERR_INVALID, "%s: '%s' item %d is %s; expected a number",
                                     origin, key, i, type_word(et));
            }
        }
        out->n = (size_t)n;
        break;
    }
    default:
        return usi_error_new(USI_ERR_INVALID, "%s: '%s' is %s; expected a single value",
                             origin, key, type_word(t));
    }
    out->origin = strdup(origin);
    out->key = strdup(key);
    if (!out->origin || !out->key) return nomem();
    return NULL;
}

static usi_error *apply(usi_params *p, const pending *v)
{
    usi_error *e = NULL;
    switch (v->type) {
    case VT_INT: e = usi_params_set_int(p, v->key, v->i); break;
    case VT_FLOAT: e = usi_params_set_float(p, v->key, v->f); break;
    case VT_BOOL: e = usi_params_set_bool(p, v->key, (int)v->i); break;
    case VT_STRING: e = usi_params_set_string(p, v->key, v->s); break;
    case VT_LIST: e = usi_params_set_float_list(p, v->key, v->list, v->n); break;
    }
    return e ? usi_error_prefix(e, "%s: ", v->origin) : NULL;
}

/* "did you mean" among a NULL-terminated list of candidates. */
static void suggest(usi_strbuf *msg, const char *key, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = usi_edit_distance(key, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    if (best && best_d <= 3) usi_strbuf_addf(msg, "; did you mean '%s'?", best);
    usi_strbuf_addf(msg, " Valid keys: ");
    for (size_t i = 0; i < n; i++) usi_strbuf_addf(msg, "%s%s", i ? ", " : "", cands[i]);
}

static usi_error *unknown_key(const char *origin, const char *section, const char *key)
{
    const char *cands[64];
    size_t n = 0;
    if (!section || !*section) {
        cands[n++] = "plugin_path";
        cands[n++] = "backbone";
        cands[n++] = "teacher";
        cands[n++] = "augment";
        for (size_t i = 0; i < usi_section_count(); i++) {
            const usi_section *sec = usi_section_at(i);
            if (*sec->name) cands[n++] = sec->name;
            else
                for (size_t k = 0; k < sec->schema->n_params && n < 64; k++)
                    cands[n++] = usi_component_param(sec->schema, k)->name;
        }
    } else {
        const usi_section *sec = usi_section_find(section);
        for (size_t k = 0; sec && k < sec->schema->n_params && n < 64; k++)
            cands[n++] = usi_component_param(sec->schema, k)->name;
    }
    usi_strbuf msg = {0};
    usi_strbuf_addf(&msg, "%s: unknown key '%s%s%s'", origin, section ? section : "",
                    section && *section ? "." : "", key);
    suggest(&msg, key, cands, n);
    usi_error *e = usi_error_new(USI_ERR_INVALID, "%s", msg.data ? msg.data : "unknown key");
    usi_strbuf_free(&msg);
    return e;
}

/* "file.cfg:12" for a setting read from the file being loaded, else origin. */
static const char *where_of(const usi_config *c, config_setting_t *s, const char *origin,
                            char *buf, size_t cap)
{
    if (c->cur_file && config_setting_source_line(s) > 0)
        snprintf(buf, cap, "%s:%d", c->cur_file, config_setting_source_line(s));
    else
        snprintf(buf, cap, "%s", origin);
    return buf;
}

/* ---- building the config ---- */

usi_config *usi_config_new(void)
{
    usi_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->sections = calloc(usi_section_count(), sizeof *c->sections);
    c->augments = calloc(sizeof default_augments / sizeof *default_augments, sizeof *c->augments);
    if (!c->sections || !c->augments) goto fail;
    for (size_t i = 0; i < usi_section_count(); i++)
        if (!(c->sections[i] = usi_params_new(usi_section_at(i)->schema))) goto fail;
    usi_error *e = NULL;
    e = slot_set_name(&c->backbone, "", "defaults");
    if (!e) e = slot_set_name(&c->teacher, "", "defaults");
    for (size_t i = 0; !e && i < sizeof default_augments / sizeof *default_augments; i++) {
        e = slot_set_name(&c->augments[i], default_augments[i], "defaults");
        c->n_augments++;
    }
    if (e) {
        usi_error_free(e);
        goto fail;
    }
    return c;
fail:
    usi_config_free(c);
    return NULL;
}

void usi_config_free(usi_config *c)
{
    if (!c) return;
    for (size_t i = 0; c->sections && i < usi_section_count(); i++) usi_params_free(c->sections[i]);
    free(c->sections);
    for (size_t i = 0; i < c->n_plugin_path; i++) free(c->plugin_path[i]);
    free(c->plugin_path);
    slot_clear(&c->backbone);
    slot_clear(&c->teacher);
    for (size_t i = 0; i < c->n_augments; i++) slot_clear(&c->augments[i]);
    free(c->augments);
    free(c);
}

static usi_params *section_params(const usi_config *c, const char *name)
{
    for (size_t i = 0; i < usi_section_count(); i++)
        if (strcmp(usi_section_at(i)->name, name) == 0) return c->sections[i];
    return NULL;
}

static usi_error *add_opt(slot *s, config_setting_t *v, const char *origin, const char *key)
{
    pending p;
    usi_error *e = read_value(v, origin, key, &p);
    if (e) {
        pending_free(&p);
        return e;
    }
    /* A later value for the same key replaces the earlier one. */
    for (size_t i = 0; i < s->n_opts; i++)
        if (strcmp(s->opts[i].key, key) == 0) {
            pending_free(&s->opts[i]);
            s->opts[i] = p;
            return NULL;
        }
    pending *grown = realloc(s->opts, (s->n_opts + 1) * sizeof *grown);
    if (!grown) {
        pending_free(&p);
        return nomem();
    }
    s->opts = grown;
    s->opts[s->n_opts++] = p;
    return NULL;
}

/* A component's group { name = "..."; option = value; ... } or just "name". */
static usi_error *read_slot(const usi_config *c, slot *s, config_setting_t *v,
                            const char *origin, const char *what)
{
    int t = config_setting_type(v);
    if (t == CONFIG_TYPE_STRING) return slot_set_name(s, config_setting_get_string(v), origin);
    if (t != CONFIG_TYPE_GROUP)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: '%s' is %s; write %s = { name = \"...\"; <options> };",
                             origin, what, type_word(t), what);
    int n = config_setting_length(v);
    for (int i = 0; i < n; i++) {
        config_setting_t *m = config_setting_get_elem(v, (unsigned)i);
        const char *key = config_setting_name(m);
        char where[1024];
        where_of(c, m, origin, where, sizeof where);
        if (strcmp(key, "name") == 0) {
            if (config_setting_type(m) != CONFIG_TYPE_STRING)
                return usi_error_new(USI_ERR_INVALID, "%s: '%s.name' is %s; expected a string",
                                     where, what, type_word(config_setting_type(m)));
            USI_TRY(slot_set_name(s, config_setting_get_string(m), where));
        } else {
            USI_TRY(add_opt(s, m, where, key));
        }
    }
    return NULL;
}

static usi_error *read_augment_list(usi_config *c, config_setting_t *v, const char *origin)
{
    int t = config_setting_type(v);
    if (t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: 'augment' is %s; write augment = ( { name = \"hflip\"; }, ... );",
                             origin, type_word(t));
    int n = config_setting_length(v);
    slot *list = calloc(n > 0 ? (size_t)n : 1, sizeof *list);
    if (!list) return nomem();
    usi_error *e = NULL;
    for (int i = 0; i < n && !e; i++) {
        config_setting_t *m = config_setting_get_elem(v, (unsigned)i);
        char what[32], where[1024];
        snprintf(what, sizeof what, "augment[%d]", i);
        where_of(c, m, origin, where, sizeof where);
        e = read_slot(c, &list[i], m, where, what);
        if (!e && (!list[i].name || !*list[i].name))
            e = usi_error_new(USI_ERR_INVALID, "%s: augment[%d] has no name", where, i);
    }
    if (e) {
        for (int i = 0; i < n; i++) slot_clear(&list[i]);
        free(list);
        return e;
    }
    for (size_t i = 0; i < c->n_augments; i++) slot_clear(&c->augments[i]);
    free(c->augments);
    c->augments = list;
    c->n_augments = (size_t)n;
    return NULL;
}

/* "~/x" is under $HOME; a relative folder is relative to the config file's
 * folder (base_dir), or to the current folder for --set. */
static char *resolve_dir(const char *dir, const char *base_dir)
{
    char *out = NULL;
    const char *home = getenv("HOME");
    if (dir[0] == '~' && dir[1] == '/' && home) {
        if (asprintf(&out, "%s/%s", home, dir + 2) < 0) out = NULL;
    } else if (dir[0] != '/' && base_dir && *base_dir) {
        if (asprintf(&out, "%s/%s", base_dir, dir) < 0) out = NULL;
    } else {
        out = strdup(dir);
    }
    return out;
}

static usi_error *read_plugin_path(usi_config *c, config_setting_t *v, const char *origin,
                                   const char *base_dir)
{
    int t = config_setting_type(v);
    int n = (t == CONFIG_TYPE_STRING) ? 1 : config_setting_length(v);
    if (t != CONFIG_TYPE_STRING && t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
        return usi_error_new(USI_ERR_INVALID, "%s: 'plugin_path' is %s; expected [\"folder\", ...]",
                             origin, type_word(t));
    char **dirs = calloc(n > 0 ? (size_t)n : 1, sizeof *dirs);
    if (!dirs) return nomem();
    for (int i = 0; i < n; i++) {
        config_setting_t *e = t == CONFIG_TYPE_STRING ? v : config_setting_get_elem(v, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            for (int k = 0; k < i; k++) free(dirs[k]);
            free(dirs);
            return usi_error_new(USI_ERR_INVALID, "%s: plugin_path item %d is %s; expected a string",
                                 origin, i, type_word(config_setting_type(e)));
        }
        dirs[i] = resolve_dir(config_setting_get_string(e), base_dir);
    }
    for (size_t i = 0; i < c->n_plugin_path; i++) free(c->plugin_path[i]);
    free(c->plugin_path);
    c->plugin_path = dirs;
    c->n_plugin_path = (size_t)n;
    return NULL;
}

static usi_error *section_value(usi_config *c, const char *section, const char *key,
                                config_setting_t *v, const char *origin)
{
    usi_params *p = section_params(c, section);
    if (!p || !usi_params_has(p, key)) return unknown_key(origin, section, key);
    pending val;
    usi_error *e = read_value(v, origin, key, &val);
    if (!e) e = apply(p, &val);
    pending_free(&val);
    return e;
}

/* Assign one top-level setting (from a file or from --set). */
static usi_error *assign_top(usi_config *c, const char *key, config_setting_t *v,
                             const char *origin)
{
    if (strcmp(key, "plugin_path") == 0) return read_plugin_path(c, v, origin, c->base_dir);
    if (strcmp(key, "backbone") == 0) return read_slot(c, &c->backbone, v, origin, "backbone");
    if (strcmp(key, "teacher") == 0) return read_slot(c, &c->teacher, v, origin, "teacher");
    if (strcmp(key, "augment") == 0) return read_augment_list(c, v, origin);
    const usi_section *sec = usi_section_find(key);
    if (sec && *sec->name) {
        if (config_setting_type(v) != CONFIG_TYPE_GROUP)
            return usi_error_new(USI_ERR_INVALID, "%s: '%s' is %s; write %s = { key = value; ... };",
                                 origin, key, type_word(config_setting_type(v)), key);
        int n = config_setting_length(v);
        for (int i = 0; i < n; i++) {
            config_setting_t *m = config_setting_get_elem(v, (unsigned)i);
            char where[1024];
            where_of(c, m, origin, where, sizeof where);
            USI_TRY(section_value(c, key, config_setting_name(m), m, where));
        }
        return NULL;
    }
    return section_value(c, "", key, v, origin);
}

static usi_error *load_into(usi_config *c, const char *path);

/* A file that fails to load changes nothing: it is checked on a scratch
 * config first (no value's validity depends on what came before). */
usi_error *usi_config_load(usi_config *c, const char *path)
{
    usi_config *scratch = usi_config_new();
    if (!scratch) return nomem();
    usi_error *e = load_into(scratch, path);
    usi_config_free(scratch);
    return e ? e : load_into(c, path);
}

/* libconfig 1.5 reads a decimal integer past 32 bits modulo 2^32 (seed =
 * 4294967296 would be 0) unless it ends in L: a copy of text with that L
 * added, so such numbers reach the range checks as they are written.
 * Every list option is a list of floats, but a libconfig array refuses to
 * mix ints and floats ("mismatched element type in array" for
 * mean = [0.5, 0, 0.5]): a plain integer inside [ ] gets ".0".
 * Strings and comments are left alone; NULL when out of memory. */
static char *widen_ints(const char *text)
{
    size_t n = strlen(text), o = 0;
    int in_array = 0;
    char *out = malloc(3 * n + 1); /* at worst ".0" or an L after every other char */
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        char ch = text[i];
        if (ch == '"') { /* a string, escapes and all */
            out[o++] = text[i++];
            while (i < n && text[i] != '"') {
                if (text[i] == '\\' && i + 1 < n) out[o++] = text[i++];
                out[o++] = text[i++];
            }
            if (i < n) out[o++] = text[i++];
        } else if (ch == '#' || (ch == '/' && i + 1 < n && text[i + 1] == '/')) {
            while (i < n && text[i] != '\n') out[o++] = text[i++];
        } else if (ch == '/' && i + 1 < n && text[i + 1] == '*') {
            const char *end = strstr(text + i + 2, "*/");
            size_t stop = end ? (size_t)(end - text) + 2 : n;
            while (i < stop) out[o++] = text[i++];
        } else if (isdigit((unsigned char)ch) &&
                   !(i && (isalnum((unsigned char)text[i - 1]) || text[i - 1] == '_' || text[i - 1] == '.'))) {
            size_t j = i;
            if (ch == '0' && j + 1 < n && (text[j + 1] == 'x' || text[j + 1] == 'X')) j += 2;
            while (j < n && isalnum((unsigned char)text[j])) j++;
            int plain = j > i && strspn(text + i, "0123456789") == j - i && (j >= n || text[j] != '.');
            unsigned long long v = plain ? strtoull(text + i, NULL, 10) : 0;
            int negative = i && text[i - 1] == '-';
            memcpy(out + o, text + i, j - i);
            o += j - i;
            if (plain && in_array) {
                out[o++] = '.';
                out[o++] = '0';
            } else if (plain && v > (negative ? 2147483648ull : 2147483647ull)) {
                out[o++] = 'L';
            }
            i = j;
        } else {
            if (ch == '[') in_array++;
            else if (ch == ']' && in_array) in_array--;
            out[o++] = text[i++];
        }
    }
    out[o] = 0;
    return out;
}

/* libconfig 1.5 puts its include folder before every @include path, an
 * absolute one too: a copy of text whose absolute @include paths climb from
 * that folder (dir, absolute) back to the root first. NULL: out of memory. */
static char *rebase_includes(const char *text, const char *dir)
{
    size_t depth = 0, n = strlen(text), hits = 0;
    for (const char *p = dir; *p; p++) depth += *p == '/' && p[1] && p[1] != '/';
    for (const char *p = text; (p = strstr(p, "@include")); p++) hits++;
    char *out = malloc(n + hits * (3 * depth + 2) + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = text; *p;) {
        const char *q = p;
        while (*q == ' ' || *q == '\t') q++;
        if (strncmp(q, "@include", 8) == 0 && (p == text || p[-1] == '\n')) {
            q += 8;
            while (*q == ' ' || *q == '\t') q++;
            if (*q == '"' && q[1] == '/') {
                memcpy(o, p, (size_t)(q + 1 - p));
                o += q + 1 - p;
                for (size_t k = 0; k < depth; k++) o += sprintf(o, "../");
                if (!depth) o += sprintf(o, "./");
                p = q + 2; /* past the quote and the root's '/' */
            }
        }
        while (*p && *p != '\n') *o++ = *p++;
        if (*p) *o++ = *p++;
    }
    *o = 0;
    return out;
}

static usi_error *load_into(usi_config *c, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return usi_error_new(USI_ERR_IO, "%s is a folder; give the path of a config file", path);
    FILE *f = fopen(path, "r");
    if (!f)
        return usi_error_new(USI_ERR_IO, "cannot read config file %s: %s", path, strerror(errno));
    config_t cfg;
    config_init(&cfg);
    char *dir_copy = strdup(path), *real_dir = NULL;
    if (dir_copy) {
        /* dirname() returns dir_copy or a static "."; both outlive the load. */
        c->base_dir = dirname(dir_copy);
        real_dir = realpath(c->base_dir, NULL);
        config_set_include_dir(&cfg, real_dir ? real_dir : c->base_dir);
    }
    c->cur_file = path;
    char *text = NULL, *wide = NULL;
    size_t cap = 0;
    ssize_t got = getdelim(&text, &cap, '\0', f); /* the whole file (it holds no NUL) */
    /* An empty file reads nothing (-1, the buffer left unterminated): it
     * sets nothing, as a file of comments does. */
    if (got < 0) {
        free(text);
        text = ferror(f) ? NULL : strdup("");
        got = text ? 0 : -1;
    }
    fclose(f);
    if (got >= 0 && real_dir) {
        char *rebased = rebase_includes(text, real_dir);
        free(text);
        text = rebased;
    }
    if (text) wide = widen_ints(text);
    /* fmemopen refuses a buffer of 0 bytes: the empty text is read as a string */
    FILE *mem = wide && *wide ? fmemopen(wide, strlen(wide), "r") : NULL;
    int ok = 0;
    if (wide && !*wide) {
        ok = config_read_string(&cfg, wide);
    } else if (mem) {
        ok = config_read(&cfg, mem);
        fclose(mem);
    }
    free(text);
    int empty = wide && !*wide;
    free(wide);
    if (got < 0) {
        config_destroy(&cfg);
        free(real_dir);
        free(dir_copy);
        c->base_dir = NULL;
        c->cur_file = NULL;
        return usi_error_new(USI_ERR_IO, "cannot read config file %s", path);
    }
    if (!mem && !empty) {
        config_destroy(&cfg);
        free(real_dir);
        free(dir_copy);
        c->base_dir = NULL;
        c->cur_file = NULL;
        return nomem();
    }
    usi_error *e = NULL;
    if (!ok) {
        e = usi_error_new(USI_ERR_INVALID, "%s:%d: %s; fix the syntax (libconfig: key = value;)",
                          config_error_file(&cfg) ? config_error_file(&cfg) : path,
                          config_error_line(&cfg), config_error_text(&cfg));
    } else {
        config_setting_t *root = config_root_setting(&cfg);
        int n = config_setting_length(root);
        for (int i = 0; i < n && !e; i++) {
            config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
            char where[1024];
            snprintf(where, sizeof where, "%s:%d", path, config_setting_source_line(s));
            e = assign_top(c, config_setting_name(s), s, where);
        }
    }
    config_destroy(&cfg);
    free(real_dir);
    free(dir_copy);
    c->base_dir = NULL;
    c->cur_file = NULL;
    return e;
}

/* Parse "value" as libconfig; a bare word that is not valid libconfig is a
 * string. So is a value that reads as more than one setting ("1;x=2" would
 * otherwise set 1 and drop x=2 without a word): the option's type check
 * then names it. */
static int parse_value(config_t *cfg, const char *value)
{
    size_t len = strlen(value) + 16;
    char *text = malloc(len);
    if (!text) return 0;
    snprintf(text, len, "v = %s;", value);
    char *wide = widen_ints(text);
    int ok = wide && config_read_string(cfg, wide) && config_setting_length(config_root_setting(cfg)) == 1;
    free(wide);
    free(text);
    if (ok) return 1;
    config_destroy(cfg);
    config_init(cfg);
    config_setting_t *v = config_setting_add(config_root_setting(cfg), "v", CONFIG_TYPE_STRING);
    return v && config_setting_set_string(v, value);
}

static slot *find_augment(usi_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_augments; i++)
        if (strcmp(c->augments[i].name, name) == 0) return &c->augments[i];
    return NULL;
}

static usi_error *set_path(usi_config *c, char *key, config_setting_t *v, const char *origin)
{
    char *dot = strchr(key, '.');
    if (!dot) return assign_top(c, key, v, origin);
    *dot = 0;
    char *rest = dot + 1;
    slot *s = NULL;
    if (strcmp(key, "backbone") == 0) s = &c->backbone;
    else if (strcmp(key, "teacher") == 0) s = &c->teacher;
    else if (strcmp(key, "augment") == 0) {
        char *dot2 = strchr(rest, '.');
        if (!dot2)
            return usi_error_new(USI_ERR_INVALID,
                                 "%s: write augment.<name>.<option>=value, e.g. augment.hflip.p=0.3",
                                 origin);
        *dot2 = 0;
        s = find_augment(c, rest);
        if (!s) {
            usi_strbuf msg = {0};
            usi_strbuf_addf(&msg, "%s: no augmentation '%s' in the augment list (it has:", origin, rest);
            for (size_t i = 0; i < c->n_augments; i++) usi_strbuf_addf(&msg, " %s", c->augments[i].name);
            usi_strbuf_addf(&msg, "); set augment=(...) to change the list");
            usi_error *e = usi_error_new(USI_ERR_INVALID, "%s", msg.data);
            usi_strbuf_free(&msg);
            return e;
        }
        rest = dot2 + 1;
    }
    if (s) {
        if (strcmp(rest, "name") == 0) {
            if (config_setting_type(v) != CONFIG_TYPE_STRING)
                return usi_error_new(USI_ERR_INVALID, "%s: a name is a string", origin);
            return slot_set_name(s, config_setting_get_string(v), origin);
        }
        return add_opt(s, v, origin, rest);
    }
    const usi_section *sec = usi_section_find(key);
    if (!sec || !*sec->name) return unknown_key(origin, "", key);
    if (strchr(rest, '.')) return unknown_key(origin, key, rest);
    return section_value(c, key, rest, v, origin);
}

usi_error *usi_config_set(usi_config *c, const char *assignment)
{
    char origin[1024];
    snprintf(origin, sizeof origin, "--set '%s'", assignment);
    return usi_config_set_from(c, assignment, origin);
}

usi_error *usi_config_set_from(usi_config *c, const char *assignment, const char *origin)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return usi_error_new(USI_ERR_INVALID, "%s: expected key=value, e.g. --set data.batch_size=64",
                             origin);
    char *key = strndup(assignment, (size_t)(eq - assignment));
    if (!key) return nomem();
    config_t cfg;
    config_init(&cfg);
    usi_error *e = NULL;
    if (!parse_value(&cfg, eq + 1)) e = usi_error_new(USI_ERR_INVALID, "%s: cannot parse the value", origin);
    else e = set_path(c, key, config_lookup(&cfg, "v"), origin);
    config_destroy(&cfg);
    free(key);
    return e;
}

usi_error *usi_params_from_text(usi_params *p, const char *text, const char *origin)
{
    if (!text || !*text) return NULL;
    config_t cfg;
    config_init(&cfg);
    usi_error *e = NULL;
    char *wide = widen_ints(text);
    if (!wide) {
        config_destroy(&cfg);
        return nomem();
    }
    int read = config_read_string(&cfg, wide);
    free(wide);
    if (!read) {
        e = usi_error_new(USI_ERR_INVALID, "%s: line %d: %s in \"%s\"", origin, config_error_line(&cfg),
                          config_error_text(&cfg), text);
    } else {
        config_setting_t *root = config_root_setting(&cfg);
        for (int i = 0; !e && i < config_setting_length(root); i++) {
            config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
            pending v;
            e = read_value(s, origin, config_setting_name(s), &v);
            if (!e) e = apply(p, &v);
            pending_free(&v);
        }
    }
    config_destroy(&cfg);
    return e;
}

usi_error *usi_params_assign(usi_params *p, const char *assignment, const char *origin)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return usi_error_new(USI_ERR_INVALID, "%s: expected option=value", origin);
    char *key = strndup(assignment, (size_t)(eq - assignment));
    if (!key) return nomem();
    config_t cfg;
    config_init(&cfg);
    usi_error *e = NULL;
    if (!parse_value(&cfg, eq + 1)) {
        e = usi_error_new(USI_ERR_INVALID, "%s: cannot parse the value", origin);
    } else {
        pending v;
        e = read_value(config_lookup(&cfg, "v"), origin, key, &v);
        if (!e) e = apply(p, &v);
        pending_free(&v);
    }
    config_destroy(&cfg);
    free(key);
    return e;
}

/* ---- resolving components ---- */

static usi_error *resolve_slot(slot *s, const usi_registry *r, int32_t kind, const char *what)
{
    usi_params_free(s->sel.params);
    memset(&s->sel, 0, sizeof s->sel);
    if (s->name && !*s->name && s->n_opts && strcmp(s->origin, "defaults") != 0) {
        /* name = "" turns the component off (--set teacher.name="" for a run
         * without distillation from a config that has a teacher): the
         * options that came with it go too. */
        usi_log(USI_LOG_INFO, "%s: no %s, so its options (%s, ...) from %s are left out", s->origin, what,
                s->opts[0].key, s->opts[0].origin);
        for (size_t i = 0; i < s->n_opts; i++) pending_free(&s->opts[i]);
        free(s->opts);
        s->opts = NULL;
        s->n_opts = 0;
    }
    if (!s->name || !*s->name) {
        if (s->n_opts)
            return usi_error_new(USI_ERR_INVALID, "%s: options for %s '%s' but no %s.name; name it, or set "
                                 "%s.name = \"\" for none", s->opts[0].origin, what, s->opts[0].key, what, what);
        return NULL;
    }
    const usi_loaded *l;
    usi_error *e = usi_registry_select(r, kind, s->name, &l);
    if (e) return usi_error_prefix(e, "%s: %s: ", s->origin, what);
    usi_params *p = usi_params_new(l->comp);
    if (!p) return nomem();
    for (size_t i = 0; i < s->n_opts; i++) {
        e = apply(p, &s->opts[i]);
        if (e) {
            usi_params_free(p);
            return e;
        }
    }
    s->sel.loaded = l;
    s->sel.params = p;
    return NULL;
}

/* The device must exist in this build; "mixed" on a device without a bf16
 * path becomes "fp32", said once, so that what is shown is what runs. */
static usi_error *resolve_device(usi_config *c)
{
    const char *name = usi_config_string(c, "device");
    if (!usi_device_name_valid(name))
        return usi_error_new(USI_ERR_INVALID, "device = \"%s\": unknown device; valid devices: %s", name,
                             usi_device_names());
    if (!usi_device_available(name))
        return usi_error_new(USI_ERR_UNSUPPORTED,
                             "device = \"%s\": this build of usi has no CUDA backend; rebuild with `meson setup "
                             "-Dcuda=enabled` where the CUDA toolkit is in /usr/local/cuda, or set device = \"cpu\"",
                             name);
    if (!strcmp(usi_config_string(c, "precision"), "mixed") && !usi_device_name_has_bf16(name)) {
        USI_TRY(usi_config_set(c, "precision=\"fp32\""));
        c->mixed_as_fp32 = 1;
    }
    return NULL;
}

int usi_config_mixed_as_fp32(const usi_config *c) { return c->mixed_as_fp32; }

/* Settings that only mean something together: refused where one would do
 * nothing. */
static const usi_params *lookup_key(const usi_config *c, const char *key, const char **leaf);

static usi_error *check_combinations(const usi_config *c)
{
    static const char *const rgb[] = {"data.mean", "data.std"};
    for (int i = 0; i < 2; i++) {
        double v[4];
        size_t n = usi_config_float_list(c, rgb[i], v, 4);
        if (n != 3 && n != 1)
            return usi_error_new(USI_ERR_INVALID, "'%s' has %zu values; give 3, one per channel (R, G, B), or 1 for "
                                 "all", rgb[i], n);
    }
    if (!*usi_config_string(c, "output_dir"))
        return usi_error_new(USI_ERR_INVALID, "'output_dir' is empty: name the folder for the run's checkpoints "
                                              "and metrics");
    int teacher = usi_config_teacher(c) != NULL, kd_only = usi_config_bool(c, "loss.kd_only");
    if (kd_only && !teacher)
        return usi_error_new(USI_ERR_INVALID, "'loss.kd_only' = true trains on a teacher's outputs alone, and no "
                                              "teacher is set: name one (teacher.name) or drop loss.kd_only");
    /* Distillation's weight and temperature mean nothing without a teacher:
     * a value other than the recipe's then says so (the recipe's own is
     * what `usi config show` writes into every file). */
    static const char *const kd_keys[] = {"loss.kd_alpha", "loss.kd_temperature"};
    for (int i = 0; !teacher && i < 2; i++) {
        const char *leaf;
        const usi_params *p = lookup_key(c, kd_keys[i], &leaf);
        const usi_component *sect = p ? usi_params_component(p) : NULL;
        for (size_t k = 0; sect && k < sect->n_params; k++)
            if (!strcmp(sect->params[k].name, leaf) && usi_config_float(c, kd_keys[i]) != sect->params[k].def_float)
                usi_log(USI_LOG_WARN, "'%s' = %g does nothing in this run: there is no teacher (name one with "
                        "teacher.name, or drop the setting)", kd_keys[i], usi_config_float(c, kd_keys[i]));
    }
    if (kd_only && usi_config_float(c, "loss.label_smoothing") > 0)
        return usi_error_new(USI_ERR_INVALID, "'loss.label_smoothing' smooths the labels' term, which "
                                              "'loss.kd_only' = true leaves out: drop one of them");
    return NULL;
}

usi_error *usi_config_resolve(usi_config *c, const usi_registry *r)
{
    USI_TRY(resolve_device(c));
    USI_TRY(resolve_slot(&c->backbone, r, USI_KIND_BACKBONE, "backbone"));
    USI_TRY(resolve_slot(&c->teacher, r, USI_KIND_TEACHER, "teacher"));
    for (size_t i = 0; i < c->n_augments; i++)
        USI_TRY(resolve_slot(&c->augments[i], r, USI_KIND_AUGMENT, "augment"));
    return check_combinations(c);
}

/* ---- reading ---- */

size_t usi_config_plugin_path_count(const usi_config *c) { return c->n_plugin_path; }
const char *usi_config_plugin_path(const usi_config *c, size_t i)
{
    return i < c->n_plugin_path ? c->plugin_path[i] : NULL;
}

static const usi_params *lookup_key(const usi_config *c, const char *key, const char **leaf)
{
    const char *dot = strchr(key, '.');
    char section[64] = "";
    if (dot) {
        snprintf(section, sizeof section, "%.*s", (int)(dot - key), key);
        *leaf = dot + 1;
    } else {
        *leaf = key;
    }
    return section_params(c, section);
}

#define GETTER(fn, type, getter, zero)                                         \
    type fn(const usi_config *c, const char *key)                              \
    {                                                                          \
        const char *leaf;                                                      \
        const usi_params *p = lookup_key(c, key, &leaf);                       \
        type out = zero;                                                       \
        usi_error *e = p ? getter(p, leaf, &out)                               \
                         : usi_error_new(USI_ERR_INTERNAL, "no section for '%s'", key); \
        if (e) {                                                               \
            usi_log(USI_LOG_ERROR, "internal: config key %s: %s", key, usi_error_message(e)); \
            usi_error_free(e);                                                 \
        }                                                                      \
        return out;                                                            \
    }

GETTER(usi_config_int, int64_t, usi_params_get_int, 0)
GETTER(usi_config_float, double, usi_params_get_float, 0.0)
GETTER(usi_config_string, const char *, usi_params_get_string, "")

const char *usi_config_backbone_name(const usi_config *c) { return c->backbone.name ? c->backbone.name : ""; }

int usi_config_is_set(const usi_config *c, const char *key)
{
    if (!strcmp(key, "backbone.name")) return c->backbone.name && *c->backbone.name;
    if (!strcmp(key, "teacher.name")) return c->teacher.name && *c->teacher.name;
    const char *leaf;
    const usi_params *p = lookup_key(c, key, &leaf);
    return p && usi_params_is_set(p, leaf);
}

int usi_config_bool(const usi_config *c, const char *key)
{
    const char *leaf;
    const usi_params *p = lookup_key(c, key, &leaf);
    int32_t out = 0;
    usi_error *e = p ? usi_params_get_bool(p, leaf, &out)
                     : usi_error_new(USI_ERR_INTERNAL, "no section for '%s'", key);
    if (e) {
        usi_log(USI_LOG_ERROR, "internal: config key %s: %s", key, usi_error_message(e));
        usi_error_free(e);
    }
    return out;
}

size_t usi_config_float_list(const usi_config *c, const char *key, double *out, size_t cap)
{
    const char *leaf;
    const usi_params *p = lookup_key(c, key, &leaf);
    size_t n = 0;
    usi_error *e = p ? usi_params_get_float_list(p, leaf, out, cap, &n)
                     : usi_error_new(USI_ERR_INTERNAL, "no section for '%s'", key);
    if (e) {
        usi_log(USI_LOG_ERROR, "internal: config key %s: %s", key, usi_error_message(e));
        usi_error_free(e);
    }
    return n;
}

const usi_selected *usi_config_backbone(const usi_config *c)
{
    return c->backbone.sel.loaded ? &c->backbone.sel : NULL;
}
const usi_selected *usi_config_teacher(const usi_config *c)
{
    return c->teacher.sel.loaded ? &c->teacher.sel : NULL;
}
size_t usi_config_augment_count(const usi_config *c) { return c->n_augments; }
const usi_selected *usi_config_augment(const usi_config *c, size_t i)
{
    return i < c->n_augments && c->augments[i].sel.loaded ? &c->augments[i].sel : NULL;
}

/* ---- writing ---- */

static void write_pending(const pending *v, usi_strbuf *out)
{
    switch (v->type) {
    case VT_INT: usi_strbuf_addf(out, "%lld", (long long)v->i); break;
    case VT_FLOAT: usi_strbuf_add_double(out, v->f); break;
    case VT_BOOL: usi_strbuf_addf(out, "%s", v->i ? "true" : "false"); break;
    case VT_STRING: usi_strbuf_add_quoted(out, v->s); break;
    case VT_LIST:
        usi_strbuf_addf(out, "[");
        for (size_t i = 0; i < v->n; i++) {
            usi_strbuf_addf(out, "%s", i ? ", " : "");
            usi_strbuf_add_double(out, v->list[i]);
        }
        usi_strbuf_addf(out, "]");
        break;
    }
}

static void write_slot(const slot *s, usi_strbuf *out, int indent)
{
    usi_strbuf_addf(out, "%*sname = ", indent, "");
    usi_strbuf_add_quoted(out, s->name ? s->name : "");
    usi_strbuf_addf(out, ";\n");
    if (s->sel.params) {
        usi_params_write(s->sel.params, out, indent);
        return;
    }
    for (size_t i = 0; i < s->n_opts; i++) {
        usi_strbuf_addf(out, "%*s%s = ", indent, "", s->opts[i].key);
        write_pending(&s->opts[i], out);
        usi_strbuf_addf(out, ";\n");
    }
}

void usi_config_write(const usi_config *c, usi_strbuf *out)
{
    usi_strbuf_addf(out, "# usi effective configuration (libconfig syntax)\n");
    usi_params_write(c->sections[0], out, 0);
    usi_strbuf_addf(out, "plugin_path = [");
    for (size_t i = 0; i < c->n_plugin_path; i++)
    {
        usi_strbuf_addf(out, "%s", i ? ", " : "");
        usi_strbuf_add_quoted(out, c->plugin_path[i]);
    }
    usi_strbuf_addf(out, "];\n\nbackbone = {\n");
    write_slot(&c->backbone, out, 2);
    usi_strbuf_addf(out, "};\n\nteacher = {\n");
    write_slot(&c->teacher, out, 2);
    usi_strbuf_addf(out, "};\n\naugment = (\n");
    for (size_t i = 0; i < c->n_augments; i++) {
        usi_strbuf_addf(out, "  {\n");
        write_slot(&c->augments[i], out, 4);
        usi_strbuf_addf(out, "  }%s\n", i + 1 < c->n_augments ? "," : "");
    }
    usi_strbuf_addf(out, ");\n");
    for (size_t i = 1; i < usi_section_count(); i++) {
        usi_strbuf_addf(out, "\n# %s\n%s = {\n", usi_section_at(i)->doc, usi_section_at(i)->name);
        usi_params_write(c->sections[i], out, 2);
        usi_strbuf_addf(out, "};\n");
    }
}
