/* Config: the USI recipe as defaults, file and --set merging, validation
 * messages that name the file, line and key, plugin options checked against
 * the schema a real plugin publishes, and show output that loads back. */
#include <stdio.h>

#include "check.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "plugin/params.h"
#include "util/error.h"
#include "util/strutil.h"

static char tmpdir[] = "/tmp/usi-config-XXXXXX";

static const char *write_file(const char *name, const char *text)
{
    static char path[4][512];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return p;
}

/* The error must exist and contain every one of the given fragments. */
static void expect_error(usi_error *e, const char *what, const char *a, const char *b)
{
    const char *msg = e ? usi_error_message(e) : "(no error)";
    CHECK(e != NULL, "%s: accepted", what);
    CHECK(!a || strstr(msg, a), "%s: expected '%s' in: %s", what, a, msg);
    CHECK(!b || strstr(msg, b), "%s: expected '%s' in: %s", what, b, msg);
    usi_error_free(e);
}

static void test_defaults_are_the_usi_recipe(void)
{
    usi_config *c = usi_config_new();
    CHECK(!strcmp(usi_config_string(c, "optimizer.name"), "adamw"), "optimizer");
    CHECK(usi_config_float(c, "optimizer.lr") == 2e-3, "lr %g", usi_config_float(c, "optimizer.lr"));
    CHECK(usi_config_int(c, "optimizer.lr_batch") == 1024, "lr is given for batch 1024");
    CHECK(usi_config_float(c, "optimizer.weight_decay") == 2e-2, "weight decay");
    CHECK(!strcmp(usi_config_string(c, "schedule.name"), "cosine"), "schedule");
    CHECK(usi_config_int(c, "schedule.epochs") == 300, "epochs");
    CHECK(usi_config_int(c, "schedule.warmup_epochs") == 5, "warm-up epochs");
    CHECK(usi_config_float(c, "schedule.warmup_lr") == 1e-4, "warm-up lr");
    CHECK(usi_config_float(c, "schedule.min_lr") == 1e-6, "min lr");
    CHECK(usi_config_int(c, "data.batch_size") == 128, "batch per device");
    CHECK(usi_config_int(c, "data.repeated_aug") == 3, "repeated augmentation x3");
    CHECK(usi_config_float(c, "data.crop_pct") == 0.95, "crop_pct");
    CHECK(!strcmp(usi_config_string(c, "data.interpolation"), "bicubic"), "bicubic");
    CHECK(usi_config_bool(c, "ema.enabled") && usi_config_float(c, "ema.decay") == 0.99996, "EMA");
    CHECK(usi_config_float(c, "loss.kd_alpha") == 5.0 && usi_config_float(c, "loss.kd_temperature") == 1.0,
          "KD alpha 5, T 1");
    CHECK(usi_config_float(c, "loss.label_smoothing") == 0.0, "no label smoothing");
    CHECK(!strcmp(usi_config_string(c, "precision"), "mixed"), "mixed precision");
    double mean[3] = {0}, std[3] = {0};
    CHECK(usi_config_float_list(c, "data.mean", mean, 3) == 3 && mean[0] == 0.485 && mean[2] == 0.406,
          "ImageNet mean");
    CHECK(usi_config_float_list(c, "data.std", std, 3) == 3 && std[1] == 0.224, "ImageNet std");
    usi_strbuf out = {0};
    usi_config_write(c, &out);
    const char *order[] = {"\"random_resized_crop\"", "\"hflip\"", "\"rand_augment\"", "\"mixup_cutmix\""};
    const char *at = out.data;
    for (int i = 0; i < 4 && at; i++) {
        at = strstr(at, order[i]);
        CHECK(at != NULL, "augment list lacks %s in order", order[i]);
    }
    usi_strbuf_free(&out);
    usi_config_free(c);
}

static void test_file_then_set(void)
{
    usi_config *c = usi_config_new();
    const char *path = write_file("a.cfg",
                                  "# comment\n"
                                  "seed = 7;\n"
                                  "data = { batch_size = 64; train = \"/d/train\"; mean = [0.5, 0.5, 0.5]; };\n"
                                  "optimizer = { lr = 1e-3; };\n");
    usi_error *e = usi_config_load(c, path);
    CHECK(!e, "load: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(usi_config_int(c, "seed") == 7, "seed from file");
    CHECK(usi_config_int(c, "data.batch_size") == 64, "batch from file");
    CHECK(usi_config_int(c, "data.workers") == 4, "untouched keys keep defaults");
    CHECK(!strcmp(usi_config_string(c, "data.train"), "/d/train"), "train folder");
    e = usi_config_set(c, "data.batch_size=32");
    CHECK(!e, "set: %s", usi_error_message(e));
    usi_error_free(e);
    e = usi_config_set(c, "optimizer.lr=5e-4");
    usi_error_free(e);
    e = usi_config_set(c, "data.val=/d/val"); /* a bare word is a string */
    CHECK(!e, "bare string: %s", usi_error_message(e));
    usi_error_free(e);
    e = usi_config_set(c, "schedule.warmup_lr=0"); /* an int where a float goes */
    CHECK(!e, "int for float: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(usi_config_int(c, "data.batch_size") == 32, "--set wins over the file");
    CHECK(usi_config_float(c, "optimizer.lr") == 5e-4, "lr override");
    CHECK(!strcmp(usi_config_string(c, "data.val"), "/d/val"), "val");
    CHECK(usi_config_float(c, "schedule.warmup_lr") == 0.0, "warmup_lr 0");
    usi_config_free(c);
}

static void test_errors_name_file_line_key(void)
{
    usi_config *c = usi_config_new();
    const char *p = write_file("typo.cfg", "seed = 1;\n\ndata = {\n  batch_size = 8;\n  batchsize = 9;\n};\n");
    expect_error(usi_config_load(c, p), "unknown key in a section", "typo.cfg:5", "did you mean 'batch_size'");
    p = write_file("top.cfg", "optimiser = { lr = 0.1; };\n");
    expect_error(usi_config_load(c, p), "unknown top key", "top.cfg:1: unknown key 'optimiser'",
                 "did you mean 'optimizer'");
    p = write_file("type.cfg", "data = {\n  img_size = \"big\";\n};\n");
    expect_error(usi_config_load(c, p), "wrong type", "type.cfg:2", "takes an int, not a string");
    p = write_file("range.cfg", "optimizer = { weight_decay = -1.0; };\n");
    expect_error(usi_config_load(c, p), "out of range", "range.cfg:1", "outside its range");
    p = write_file("choice.cfg", "precision = \"fp8\";\n");
    expect_error(usi_config_load(c, p), "bad choice", "choice.cfg:1", "fp32|mixed");
    p = write_file("syntax.cfg", "seed = 1\ndata = {;\n");
    expect_error(usi_config_load(c, p), "syntax", "syntax.cfg:2", "syntax error");
    char missing[600];
    snprintf(missing, sizeof missing, "%s/none.cfg", tmpdir);
    expect_error(usi_config_load(c, missing), "missing file", "none.cfg", "No such file");
    expect_error(usi_config_load(c, tmpdir), "a folder", tmpdir, "folder");
    expect_error(usi_config_set(c, "data.batch_size"), "no =", "key=value", NULL);
    expect_error(usi_config_set(c, "data.batch_size=0"), "set range", "--set 'data.batch_size=0'", "[1, 65536]");
    expect_error(usi_config_set(c, "augment.nope.p=1"), "unknown augment", "no augmentation 'nope'",
                 "random_resized_crop");
    /* Nothing above changed a value. */
    CHECK(usi_config_int(c, "data.batch_size") == 128 && usi_config_int(c, "seed") == 0,
          "a failed load or set changed the config");
    usi_config_free(c);
}

/* What a user writes and libconfig alone would refuse or half-read. */
static void test_lists_sets_and_empty_files(void)
{
    usi_config *c = usi_config_new();
    /* A list of numbers with an integer among floats (libconfig arrays
     * refuse mixed types), in a file and in --set. */
    const char *p = write_file("mixed.cfg", "data = { mean = [0.5, 0, 0.5]; std = [1, 0.5, 2]; };\n");
    usi_error *e = usi_config_load(c, p);
    CHECK(!e, "a list with integers among floats: %s", usi_error_message(e));
    usi_error_free(e);
    double v[3] = {0};
    CHECK(usi_config_float_list(c, "data.mean", v, 3) == 3 && v[0] == 0.5 && v[1] == 0 && v[2] == 0.5,
          "mean from [0.5, 0, 0.5]: %g %g %g", v[0], v[1], v[2]);
    CHECK(usi_config_float_list(c, "data.std", v, 3) == 3 && v[0] == 1 && v[1] == 0.5 && v[2] == 2,
          "std from [1, 0.5, 2]: %g %g %g", v[0], v[1], v[2]);
    e = usi_config_set(c, "data.mean=[0, 0.25, 1]");
    CHECK(!e, "--set a list with integers among floats: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(usi_config_float_list(c, "data.mean", v, 3) == 3 && v[0] == 0 && v[1] == 0.25 && v[2] == 1,
          "--set mean: %g %g %g", v[0], v[1], v[2]);
    /* An integer setting stays an integer; a big one still reaches the range check. */
    e = usi_config_set(c, "seed=4294967296");
    expect_error(e, "seed past 32 bits", "4294967296", "outside its range");
    /* A value that reads as two settings is refused, not cut to the first. */
    expect_error(usi_config_set(c, "optimizer.lr=1;x=2"), "two settings in one --set", "--set 'optimizer.lr=1;x=2'",
                 "takes a float");
    CHECK(usi_config_float(c, "optimizer.lr") == 2e-3, "a refused --set changed optimizer.lr");
    /* Adam's decays of 1 and eps = 0 give NaN at the first step. */
    expect_error(usi_config_set(c, "optimizer.beta1=1"), "beta1 = 1", "beta1", "outside its range");
    expect_error(usi_config_set(c, "optimizer.beta2=1"), "beta2 = 1", "beta2", "outside its range");
    expect_error(usi_config_set(c, "optimizer.eps=0"), "eps = 0", "eps", "outside its range");
    usi_config_free(c);
    /* An empty file sets nothing, as a file of comments does. */
    c = usi_config_new();
    e = usi_config_load(c, write_file("empty.cfg", ""));
    CHECK(!e, "an empty file: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(usi_config_int(c, "data.batch_size") == 128, "an empty file changed the defaults");
    usi_config_free(c);
}

static usi_registry *fixture_registry(const char *dir);

/* teacher.name = "" turns off a teacher the file configures, options and
 * all (a run without distillation for comparison); options without a name
 * stay an error that says both ways out. */
static void test_teacher_turned_off(const char *fixture_dir)
{
    usi_registry *r = fixture_registry(fixture_dir);
    const char *p = write_file("kd.cfg", "backbone = { name = \"fixture_net\"; };\n"
                                         "teacher = { name = \"fixture_teacher\"; weights = \"t.safetensors\"; };\n"
                                         "augment = ( { name = \"fixture_copy\"; } );\n");
    usi_config *c = usi_config_new();
    usi_error *e = usi_config_load(c, p);
    if (!e) e = usi_config_set(c, "teacher.name=\"\"");
    if (!e) e = usi_config_resolve(c, r);
    CHECK(!e, "teacher.name = \"\" over a configured teacher: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(usi_config_teacher(c) == NULL && !usi_config_is_set(c, "teacher.name"), "the teacher is off");
    usi_strbuf out = {0};
    usi_config_write(c, &out);
    CHECK(out.data && !strstr(out.data, "t.safetensors"), "config show still shows the teacher's weights");
    /* and what it shows loads back */
    usi_config *back = usi_config_new();
    e = usi_config_load(back, write_file("back.cfg", out.data ? out.data : ""));
    if (!e) e = usi_config_resolve(back, r);
    CHECK(!e, "config show of a run without teacher loads back: %s", usi_error_message(e));
    usi_error_free(e);
    usi_config_free(back);
    usi_strbuf_free(&out);
    usi_config_free(c);
    c = usi_config_new();
    e = usi_config_load(c, write_file("noname.cfg", "backbone = { name = \"fixture_net\"; };\n"
                                                    "teacher = { weights = \"t.safetensors\"; };\n"
                                                    "augment = ( { name = \"fixture_copy\"; } );\n"));
    if (!e) e = usi_config_resolve(c, r);
    expect_error(e, "teacher options without a name", "noname.cfg:2: options for teacher 'weights' but no teacher.name",
                 "set teacher.name = \"\" for none");
    usi_config_free(c);
    usi_registry_free(r);
}

static usi_registry *fixture_registry(const char *dir)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    char path[1024];
    snprintf(path, sizeof path, "%s/fixture_v1_0.so", dir);
    usi_error *e = usi_registry_load(r, path);
    CHECK(!e, "fixture: %s", usi_error_message(e));
    usi_error_free(e);
    return r;
}

static void test_plugin_options(const char *fixture_dir)
{
    usi_registry *r = fixture_registry(fixture_dir);
    usi_config *c = usi_config_new();
    const char *p = write_file("net.cfg",
                               "backbone = {\n  name = \"fixture_net\";\n  num_classes = 10;\n"
                               "  scales = [1.0, 2.5];\n};\n"
                               "teacher = \"fixture_teacher\";\n"
                               "augment = ( { name = \"fixture_copy\"; } );\n");
    usi_error *e = usi_config_load(c, p);
    if (!e) e = usi_config_set(c, "backbone.act=gelu");
    if (!e) e = usi_config_resolve(c, r);
    CHECK(!e, "resolve: %s", usi_error_message(e));
    usi_error_free(e);
    const usi_selected *b = usi_config_backbone(c);
    int64_t classes = 0;
    const char *act = NULL;
    double scales[4];
    size_t n = 0;
    if (b) {
        usi_error_free(usi_params_get_int(b->params, "num_classes", &classes));
        usi_error_free(usi_params_get_string(b->params, "act", &act));
        usi_error_free(usi_params_get_float_list(b->params, "scales", scales, 4, &n));
    }
    CHECK(b && classes == 10 && act && !strcmp(act, "gelu"), "backbone options not applied");
    CHECK(n == 2 && scales[1] == 2.5, "float list not applied");
    CHECK(usi_config_teacher(c) && usi_config_augment_count(c) == 1 && usi_config_augment(c, 0),
          "teacher or augment not selected");

    /* Round trip: the printed config loads back to the same text. */
    usi_strbuf first = {0}, second = {0};
    usi_config_write(c, &first);
    const char *back = write_file("back.cfg", first.data);
    usi_config *c2 = usi_config_new();
    e = usi_config_load(c2, back);
    if (!e) e = usi_config_resolve(c2, r);
    CHECK(!e, "reload: %s", usi_error_message(e));
    usi_error_free(e);
    usi_config_write(c2, &second);
    CHECK(first.data && second.data && !strcmp(first.data, second.data), "show output does not round-trip:\n%s\n---\n%s",
          first.data, second.data);
    usi_strbuf_free(&first);
    usi_strbuf_free(&second);
    usi_config_free(c2);

    /* Plugin options are checked against the plugin's schema at resolve. */
    const char *bad[][3] = {
        {"backbone.depth=3", "has no option 'depth'", "num_classes, drop_rate"},
        {"backbone.num_classes=0", "outside its range", "backbone 'fixture_net'"},
        {"backbone.act=tanh", "choose one of: relu|gelu|silu", NULL},
        {"backbone.pretrained=1", "takes a bool", NULL},
        {"backbone.name=fixture_nt", "did you mean 'fixture_net'", NULL},
        {"teacher.name=fixture_net", "is a backbone, not a teacher", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        usi_config *cc = usi_config_new();
        e = usi_config_load(cc, p);
        if (!e) e = usi_config_set(cc, bad[i][0]);
        if (!e) e = usi_config_resolve(cc, r);
        expect_error(e, bad[i][0], bad[i][1], bad[i][2]);
        usi_config_free(cc);
    }
    usi_config_free(c);
    usi_registry_free(r);
}

static void test_schema_check(void)
{
    usi_param_desc bad_choice[] = {
        {sizeof(usi_param_desc), "mode", USI_PARAM_STRING, 0, "", 0, 0, "zzz", 1, 0, "a|b"},
    };
    usi_component c = {sizeof c, USI_KIND_AUGMENT, 0, "x", "1", "", bad_choice, 1, NULL, NULL, NULL};
    expect_error(usi_schema_check(&c), "default not in choices", "'zzz' is not one of a|b", NULL);
    usi_param_desc twice[] = {
        {sizeof(usi_param_desc), "p", USI_PARAM_FLOAT, 0, "", 0, 0.5, NULL, 0, 1, NULL},
        {sizeof(usi_param_desc), "p", USI_PARAM_FLOAT, 0, "", 0, 0.5, NULL, 0, 1, NULL},
    };
    c.params = twice;
    c.n_params = 2;
    expect_error(usi_schema_check(&c), "duplicate option", "declares option 'p' twice", NULL);
    usi_param_desc bad_name[] = {
        {sizeof(usi_param_desc), "Bad-Name", USI_PARAM_INT, 0, "", 1, 0, NULL, 1, 0, NULL},
    };
    c.params = bad_name;
    c.n_params = 1;
    expect_error(usi_schema_check(&c), "bad option name", "invalid name 'Bad-Name'", NULL);
    usi_param_desc good[] = {
        {sizeof(usi_param_desc), "p", USI_PARAM_FLOAT, 0, "", 0, 0.5, NULL, 0, 1, NULL},
        {sizeof(usi_param_desc), "m", USI_PARAM_STRING, 0, "", 0, 0, "b", 1, 0, "a|b"},
    };
    c.params = good;
    c.n_params = 2;
    usi_error *e = usi_schema_check(&c);
    CHECK(!e, "a valid schema was refused: %s", usi_error_message(e));
    usi_error_free(e);
}

/* @include: a path relative to the including file's folder, and an
 * absolute one (libconfig 1.5 would put the folder before it), with the
 * include's values and the file's own after it. */
static void test_include(void)
{
    char sub[600], text[1400];
    snprintf(sub, sizeof sub, "%s/sub", tmpdir);
    CHECK(mkdir(sub, 0755) == 0, "mkdir %s", sub);
    const char *abs = write_file("base.cfg", "seed = 11;\noptimizer = { lr = 0.25; };\n");
    write_file("sub/rel.cfg", "data = { batch_size = 24; };\n");
    snprintf(text, sizeof text, "@include \"%s\"\n  @include \"rel.cfg\"\nmetrics_every = 3;\n", abs);
    const char *main_cfg = write_file("sub/main.cfg", text);
    usi_config *c = usi_config_new();
    usi_error *e = usi_config_load(c, main_cfg);
    CHECK(!e, "@include: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(usi_config_int(c, "seed") == 11 && usi_config_float(c, "optimizer.lr") == 0.25,
          "absolute @include: seed %lld, lr %g", (long long)usi_config_int(c, "seed"), usi_config_float(c, "optimizer.lr"));
    CHECK(usi_config_int(c, "data.batch_size") == 24, "relative @include: batch %lld",
          (long long)usi_config_int(c, "data.batch_size"));
    CHECK(usi_config_int(c, "metrics_every") == 3, "the file's own setting");
    usi_config_free(c);
}

/* Numbers in `config show` are the shortest text that reads back as the same
 * double, and whole numbers read as decimals (lr = 10.0, not 1e+01). */
static void test_number_text(void)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {10, "10.0"},          {0.95, "0.95"},   {2e-5, "2e-05"}, {1024.5, "1024.5"}, {-3, "-3.0"},
        {123456789, "123456789.0"}, {0.1, "0.1"}, {1e20, "1e+20"}, {0.99996, "0.99996"}, {250, "250.0"},
        {1.25e7, "12500000.0"}, {0, "0.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        usi_strbuf b = {0};
        usi_strbuf_add_double(&b, cases[i].v);
        CHECK(b.data && !strcmp(b.data, cases[i].want), "%.17g written as '%s', wanted '%s'", cases[i].v,
              b.data ? b.data : "", cases[i].want);
        CHECK(b.data && strtod(b.data, NULL) == cases[i].v, "'%s' does not read back as %.17g", b.data, cases[i].v);
        usi_strbuf_free(&b);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || !mkdtemp(tmpdir)) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    test_defaults_are_the_usi_recipe();
    test_file_then_set();
    test_errors_name_file_line_key();
    test_lists_sets_and_empty_files();
    test_plugin_options(argv[1]);
    test_teacher_turned_off(argv[1]);
    test_schema_check();
    test_include();
    test_number_text();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_status("config");
}
