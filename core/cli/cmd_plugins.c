/* usi plugins [--plugin-dir DIR ...] [--json]: every component found. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device.h"
#include "cli/cli.h"
#include "plugin/params.h"
#include "util/error.h"
#include "util/log.h"

static const char *usage =
    "usage: usi plugins [--plugin-dir DIR ...] [--json]\n"
    "List every backbone, teacher and augmentation plugin found, with its options.\n"
    "Search order: --plugin-dir, $USI_PLUGIN_PATH, then this build's or installation's folder.\n";

static void range_text(const usi_param_desc *d, char *buf, size_t cap)
{
    buf[0] = 0;
    if (d->type == USI_PARAM_STRING && d->choices) snprintf(buf, cap, " {%s}", d->choices);
    else if (usi_param_has_range(d))
        snprintf(buf, cap, " [%g, %g]", d->min, d->max);
}

/* What `device = NAME` gives on this build and machine: NULL when it opens,
 * else why not (into why). */
static const char *device_problem(const char *name, char *why, size_t cap)
{
    usi_device *d;
    usi_error *e = usi_device_open(name, &d);
    if (!e) return NULL;
    snprintf(why, cap, "%s", usi_error_message(e));
    usi_error_free(e);
    return why;
}

static const char *const device_names[] = {"cpu", "cpu-guarded", "cuda"};

static void print_devices(void)
{
    printf("\ndevices (config key `device`):\n");
    for (size_t i = 0; i < sizeof device_names / sizeof *device_names; i++) {
        char why[512];
        const char *no = device_problem(device_names[i], why, sizeof why);
        printf("  %-12s %s\n", device_names[i], no ? no : "available");
    }
}

static void print_text(const usi_registry *r)
{
    static const int32_t kinds[] = {USI_KIND_BACKBONE, USI_KIND_TEACHER, USI_KIND_AUGMENT};
    for (size_t k = 0; k < 3; k++) {
        int any = 0;
        for (size_t i = 0; i < usi_registry_count(r); i++) {
            const usi_loaded *l = usi_registry_at(r, i);
            const usi_component *c = l->comp;
            if (c->kind != kinds[k]) continue;
            if (!any) printf("%s%ss:\n", k ? "\n" : "", usi_kind_name(kinds[k]));
            any = 1;
            printf("  %s %s - %s\n", c->name, c->version ? c->version : "?", c->doc ? c->doc : "");
            printf("    plugin %s %s, vendor %s, license %s, ABI %u.%u\n", l->plugin->name,
                   l->plugin->version, l->plugin->vendor, l->plugin->license, l->abi_major, l->abi_minor);
            printf("    file %s\n", l->path);
            if (l->twin_path) printf("    REFUSED: also defined in %s\n", l->twin_path);
            const char *lacks = usi_backbone_lacks_option(c);
            if (lacks)
                printf("    note: no int option '%s'; the host sets it (the model teacher, usi summary), "
                       "so those cannot build this backbone\n", lacks);
            for (size_t p = 0; p < c->n_params; p++) {
                const usi_param_desc *d = usi_component_param(c, p);
                usi_strbuf def = {0};
                char range[160];
                usi_param_default_format(d, &def);
                range_text(d, range, sizeof range);
                printf("    %-20s %-10s %-12s %s%s\n", d->name, usi_param_type_name(d->type),
                       def.data ? def.data : "", d->doc ? d->doc : "", range);
                usi_strbuf_free(&def);
            }
        }
    }
    if (!usi_registry_count(r)) printf("no plugins found\n");
    print_devices();
}

static cJSON *param_json(const usi_param_desc *d)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "type", usi_param_type_name(d->type));
    switch (d->type) {
    case USI_PARAM_INT: cJSON_AddNumberToObject(o, "default", (double)d->def_int); break;
    case USI_PARAM_FLOAT: cJSON_AddNumberToObject(o, "default", d->def_float); break;
    case USI_PARAM_BOOL: cJSON_AddBoolToObject(o, "default", d->def_int != 0); break;
    case USI_PARAM_STRING: cJSON_AddStringToObject(o, "default", d->def_string); break;
    case USI_PARAM_FLOAT_LIST: {
        cJSON *arr = cJSON_AddArrayToObject(o, "default");
        const char *s = d->def_string ? d->def_string : "";
        while (*s) {
            char *end;
            double v = strtod(s, &end);
            if (end == s) break;
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(v));
            s = end;
            while (*s == ' ' || *s == ',') s++;
        }
        break;
    }
    }
    cJSON_AddStringToObject(o, "doc", d->doc ? d->doc : "");
    if (usi_param_has_range(d)) {
        cJSON_AddNumberToObject(o, "min", d->min);
        cJSON_AddNumberToObject(o, "max", d->max);
    }
    if (d->choices) cJSON_AddStringToObject(o, "choices", d->choices);
    return o;
}

static void print_json(const usi_registry *r)
{
    cJSON *root = cJSON_CreateObject();
    char abi[32];
    snprintf(abi, sizeof abi, "%d.%d", USI_ABI_MAJOR, USI_ABI_MINOR);
    cJSON_AddStringToObject(root, "host_abi", abi);
    cJSON *devs = cJSON_AddArrayToObject(root, "devices");
    for (size_t i = 0; i < sizeof device_names / sizeof *device_names; i++) {
        char why[512];
        const char *no = device_problem(device_names[i], why, sizeof why);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", device_names[i]);
        cJSON_AddBoolToObject(o, "available", !no);
        if (no) cJSON_AddStringToObject(o, "why", no);
        cJSON_AddItemToArray(devs, o);
    }
    cJSON *comps = cJSON_AddArrayToObject(root, "components");
    for (size_t i = 0; i < usi_registry_count(r); i++) {
        const usi_loaded *l = usi_registry_at(r, i);
        const usi_component *c = l->comp;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", usi_kind_name(c->kind));
        cJSON_AddStringToObject(o, "name", c->name);
        cJSON_AddStringToObject(o, "version", c->version ? c->version : "");
        cJSON_AddStringToObject(o, "doc", c->doc ? c->doc : "");
        cJSON_AddStringToObject(o, "plugin", l->plugin->name);
        cJSON_AddStringToObject(o, "plugin_version", l->plugin->version);
        cJSON_AddStringToObject(o, "vendor", l->plugin->vendor);
        cJSON_AddStringToObject(o, "license", l->plugin->license);
        snprintf(abi, sizeof abi, "%u.%u", l->abi_major, l->abi_minor);
        cJSON_AddStringToObject(o, "abi", abi);
        cJSON_AddStringToObject(o, "file", l->path);
        if (l->twin_path) cJSON_AddStringToObject(o, "refused_twin", l->twin_path);
        cJSON *params = cJSON_AddArrayToObject(o, "params");
        for (size_t p = 0; p < c->n_params; p++)
            cJSON_AddItemToArray(params, param_json(usi_component_param(c, p)));
        cJSON_AddItemToArray(comps, o);
    }
    cJSON *probs = cJSON_AddArrayToObject(root, "problems");
    for (size_t i = 0; i < usi_registry_problem_count(r); i++) {
        const usi_problem *p = usi_registry_problem(r, i);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", p->path);
        cJSON_AddStringToObject(o, "message", p->message);
        cJSON_AddItemToArray(probs, o);
    }
    char *text = cJSON_Print(root);
    if (text) puts(text);
    free(text);
    cJSON_Delete(root);
}

/* The reasons were logged as each file or folder was met; this names them
 * again, once each (a file may have several problems, e.g. twins of two
 * files), so the end of the output says which files need attention. With
 * warnings silenced it gives the reasons too. */
static void report_problems(const usi_registry *r)
{
    int reasons_shown = usi_log_level() <= USI_LOG_WARN;
    usi_strbuf names = {0};
    size_t files = 0;
    for (size_t i = 0; i < usi_registry_problem_count(r); i++) {
        const usi_problem *p = usi_registry_problem(r, i);
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = !strcmp(usi_registry_problem(r, j)->path, p->path);
        if (!reasons_shown) fprintf(stderr, "usi: %s\n", p->message);
        if (seen) continue;
        usi_strbuf_addf(&names, "%s%s", files++ ? ", " : "", p->path);
    }
    fprintf(stderr, "usi: %zu plugin %s had problems (%s): %s; everything else loaded\n", files,
            files == 1 ? "file or folder" : "files or folders",
            reasons_shown ? "reasons above" : "reasons as listed",
            names.data ? names.data : "");
    usi_strbuf_free(&names);
}

int usi_cmd_plugins(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return USI_EXIT_OK;
        }
    usi_cli_opts o;
    int rc = usi_cli_parse(argc, argv, "pj", &o);
    if (rc) return rc;
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = r ? usi_registry_discover(r, o.plugin_dirs, o.n_plugin_dirs, NULL, 0)
                     : usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (e) {
        usi_registry_free(r);
        usi_cli_opts_free(&o);
        return usi_cli_fail(e);
    }
    if (o.json) print_json(r);
    else print_text(r);
    size_t problems = usi_registry_problem_count(r);
    if (problems) report_problems(r);
    usi_registry_free(r);
    usi_cli_opts_free(&o);
    return problems ? USI_EXIT_PLUGIN_PROBLEMS : USI_EXIT_OK;
}
