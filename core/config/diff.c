/* Which settings two effective configurations (usi_config_write's text)
 * give differently: a resumed run names what changed since its checkpoint.
 *
 * The text is flat enough to read line by line: "key = value;" settings,
 * "key = {" and "key = (" open a group or a list (of groups, "{" alone),
 * and lines starting with '}' or ')' close one. Keys are dotted paths, a
 * list's groups numbered: augment[1].p. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

typedef struct setting {
    char *key, *value;
} setting;

typedef struct settings {
    setting *v;
    size_t n, cap;
} settings;

static int add(settings *s, const char *key, const char *value, size_t value_len)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        setting *grown = realloc(s->v, cap * sizeof *grown);
        if (!grown) return -1;
        s->v = grown;
        s->cap = cap;
    }
    setting *e = &s->v[s->n];
    e->key = strdup(key);
    e->value = strndup(value, value_len);
    if (!e->key || !e->value) {
        free(e->key);
        free(e->value);
        return -1;
    }
    s->n++;
    return 0;
}

static void settings_free(settings *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].key);
        free(s->v[i].value);
    }
    free(s->v);
}

#define DEPTH 8

/* Every "path = value" of text into s; -1 when out of memory. */
static int parse(const char *text, settings *s)
{
    char path[DEPTH][128];
    int items[DEPTH] = {0}, lists[DEPTH] = {0}, depth = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        while (len && (*line == ' ' || *line == '\t')) line++, len--;
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\r')) len--;
        const char *eq = memchr(line, '=', len);
        char prefix[DEPTH * 130] = "";
        for (int d = 0; d < depth; d++) {
            strcat(prefix, path[d]);
            if (d + 1 < depth && path[d + 1][0] != '[') strcat(prefix, ".");
        }
        if (len == 0 || line[0] == '#') {
        } else if (line[0] == '}' || line[0] == ')') {
            if (depth) depth--;
        } else if (line[0] == '{' && depth < DEPTH && depth && lists[depth - 1]) { /* a list's group */
            snprintf(path[depth], sizeof path[depth], "[%d]", items[depth - 1]++);
            lists[depth] = 0;
            depth++;
        } else if (eq && eq > line) {
            size_t klen = (size_t)(eq - line);
            while (klen && line[klen - 1] == ' ') klen--;
            const char *v = eq + 1;
            while (*v == ' ') v++;
            size_t vlen = len - (size_t)(v - line);
            if (vlen && (v[vlen - 1] == ';' || v[vlen - 1] == ',')) vlen--;
            if (vlen == 1 && (*v == '{' || *v == '(') && depth < DEPTH) {
                snprintf(path[depth], sizeof path[depth], "%.*s", (int)klen, line);
                lists[depth] = *v == '(';
                items[depth] = 0;
                depth++;
            } else {
                char key[DEPTH * 130 + 130];
                snprintf(key, sizeof key, "%s%s%.*s", prefix, *prefix ? "." : "", (int)klen, line);
                if (add(s, key, v, vlen)) return -1;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return 0;
}

static const setting *find(const settings *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].key, key)) return &s->v[i];
    return NULL;
}

int32_t usi_config_text_diff(const char *was, const char *now, const char *const *ignore, usi_strbuf *out,
                             int32_t most)
{
    settings a = {0}, b = {0};
    int32_t n = 0;
    if (parse(was ? was : "", &a) || parse(now ? now : "", &b)) {
        settings_free(&a);
        settings_free(&b);
        return -1;
    }
    for (int pass = 0; pass < 2; pass++) {
        const settings *here = pass ? &a : &b, *there = pass ? &b : &a;
        for (size_t i = 0; i < here->n; i++) {
            const setting *x = &here->v[i], *y = find(there, x->key);
            if (pass && y) continue; /* both: compared in the first pass */
            if (y && !strcmp(x->value, y->value)) continue;
            int skip = 0;
            for (size_t k = 0; ignore && ignore[k]; k++) skip |= !strcmp(ignore[k], x->key);
            if (skip) continue;
            if (n < most)
                usi_strbuf_addf(out, "%s%s = %s (was %s)", n ? "; " : "", x->key, pass ? "(none)" : x->value,
                                pass ? x->value : y ? y->value : "(none)");
            n++;
        }
    }
    settings_free(&a);
    settings_free(&b);
    return n;
}

char *usi_config_text_value(const char *text, const char *key)
{
    settings s = {0};
    char *out = NULL;
    if (!parse(text ? text : "", &s)) {
        const setting *v = find(&s, key);
        if (v) out = strdup(v->value);
    }
    settings_free(&s);
    return out;
}
