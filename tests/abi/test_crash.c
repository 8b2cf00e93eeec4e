/* Plugins that crash, hang, exit or print where a plugin must not.
 *
 * While a file loads (its constructors, usi_plugin_entry, the checks of its
 * descriptor) each misdeed happens in a child process first: the file is
 * refused by name, saying what happened, and usi goes on. An entry symbol of
 * the wrong kind is refused before anything runs. Later, in create() or
 * build(), a crash still ends usi, but with one line naming the file and what
 * usi had asked of it, and the process dies of the signal itself. With
 * --json, what a plugin prints never reaches the document on stdout.
 *
 * Usage: test_crash FIXTURE_DIR USI_EXE */
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "data/augchain.h"
#include "graph/graph.h"
#include "plugin/crash.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "plugin/registry_internal.h"
#include "util/error.h"
#include "util/rng.h"

static const char *fixture_dir, *usi_exe;

static const char *fixture(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s.so", fixture_dir, name);
    return path;
}

/* --- refused while loading --- */

static void expect_refused(const char *name, const char *expect, const char *expect_too)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_registry_set_probe_timeout(r, 1000); /* the hanging one: 1 s, not 10 */
    usi_error *e = usi_registry_load(r, fixture(name));
    const char *msg = e ? usi_error_message(e) : "(loaded)";
    CHECK(e && strstr(msg, fixture(name)), "%s: the message does not name the file: %s", name, msg);
    CHECK(e && strstr(msg, expect), "%s: expected '%s' in: %s", name, expect, msg);
    CHECK(!expect_too || (e && strstr(msg, expect_too)), "%s: expected '%s' in: %s", name, expect_too, msg);
    CHECK(usi_registry_count(r) == 0, "%s: a refused file left components", name);
    usi_error_free(e);
    usi_registry_free(r);
}

static void test_refused_while_loading(void)
{
    expect_refused("hostile_crash_ctor",
                   "loading it crashed the dynamic loader or the file's own start-up code (SIGSEGV)", NULL);
    expect_refused("hostile_crash_entry", "crashed with SIGSEGV in its usi_plugin_entry", "report it to its vendor");
    expect_refused("hostile_abort_entry", "crashed with SIGABRT in its usi_plugin_entry",
                   "it wrote: \"hostile: the licence server is unreachable\"");
    expect_refused("hostile_exit_entry", "called exit(0) in its usi_plugin_entry", "returns an error instead");
    expect_refused("hostile_hang_entry", "its usi_plugin_entry did not return in 1 s (it hangs)", NULL);
    expect_refused("hostile_data_entry", "its 'usi_plugin_entry' is a variable (an ELF data object), not a function",
                   "it must be a function");
    expect_refused("hostile_mangled_entry", "but a C++ one, '_Z16usi_plugin_entryP13usi_negotiate'",
                   "compiled as C++ without extern \"C\"");
}

/* --- running another process and reading what it says --- */

/* out holds a whole `usi plugins --json` of every shipped plugin (about
 * 70 KB, growing with each model): room to spare, on the heap. */
typedef struct ran {
    int status;
    char out[1 << 20], err[65536];
} ran;

static void drain(int fd, char *buf, size_t cap, size_t *len, int *open_fd)
{
    ssize_t n = read(fd, buf + *len, cap - 1 - *len);
    if (n < 0 && errno == EINTR) return;
    if (n <= 0) {
        *open_fd = 0;
        return;
    }
    *len += (size_t)n;
    buf[*len] = 0;
    if (*len + 1 >= cap) *open_fd = 0;
}

/* Collect a child's stdout and stderr until both close, then its status. */
static void collect(pid_t pid, int out_fd, int err_fd, ran *r)
{
    size_t out_len = 0, err_len = 0;
    int out_open = 1, err_open = 1;
    r->out[0] = r->err[0] = 0;
    while (out_open || err_open) {
        struct pollfd fds[2] = {{out_open ? out_fd : -1, POLLIN, 0}, {err_open ? err_fd : -1, POLLIN, 0}};
        if (poll(fds, 2, 60000) <= 0) break;
        if (fds[0].revents) drain(out_fd, r->out, sizeof r->out, &out_len, &out_open);
        if (fds[1].revents) drain(err_fd, r->err, sizeof r->err, &err_len, &err_open);
    }
    close(out_fd);
    close(err_fd);
    while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR) {}
}

/* body(arg) in a child process whose stdout and stderr land in r, with
 * its exit status. */
static void run_forked(void (*body)(void *), void *arg, ran *r)
{
    int out[2], err[2];
    if (pipe(out) || pipe(err)) {
        CHECK(0, "pipe: %s", strerror(errno));
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        body(arg);
        _exit(0);
    }
    close(out[1]);
    close(err[1]);
    collect(pid, out[0], err[0], r);
}

typedef struct child_call {
    void (*fn)(const char *);
    const char *arg;
} child_call;

static void with_crash_handlers(void *p)
{
    const child_call *c = p;
    usi_crash_install();
    c->fn(c->arg);
}

/* fn in a child process with usi's crash handlers, as `usi` has them. */
static void run_child(void (*fn)(const char *), const char *arg, ran *r)
{
    child_call c = {fn, arg};
    run_forked(with_crash_handlers, &c, r);
}

static void exec_usi(void *argv)
{
    execv(usi_exe, argv);
    _exit(127);
}

/* `usi ARGS...` (NULL-terminated). */
static void run_usi(ran *r, ...)
{
    char *argv[16] = {(char *)usi_exe};
    va_list ap;
    va_start(ap, r);
    for (int i = 1; i < 15 && (argv[i] = va_arg(ap, char *)); i++) {}
    va_end(ap);
    run_forked(exec_usi, argv, r);
}

static int died_of(const ran *r, int sig) { return WIFSIGNALED(r->status) && WTERMSIG(r->status) == sig; }

/* --- crashes after loading --- */

/* Build backbone `name` of plugin file `file` through the host's
 * build_backbone, as the `model` teacher does. */
static void build_through_host(const char *spec)
{
    char file[4096];
    const char *colon = strchr(spec, ':');
    snprintf(file, sizeof file, "%.*s", (int)(colon - spec), spec);
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, file);
    if (e) {
        fprintf(stderr, "load failed: %s\n", usi_error_message(e));
        _exit(2);
    }
    usi_host_set_registry(r);
    usi_graph *g = usi_graph_new(usi_device_cpu(), 0, 1);
    int64_t shape[4] = {1, 3, 16, 16};
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, shape);
    usi_host_api_get()->build_backbone(g, colon + 1, NULL, x);
    usi_graph_free(g);
    usi_registry_free(r);
}

/* create() called with no bracket around it: the faulting instruction is in
 * the plugin's code, which is enough to name the file. */
static void create_unbracketed(const char *spec)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, spec);
    if (e || usi_registry_count(r) != 1) _exit(2);
    void *inst = NULL;
    usi_registry_at(r, 0)->comp->create(NULL, &inst);
}

/* One image through an augmentation chain of the file's one component, as
 * the loader's workers run it. */
static void augment_one_image(const char *file)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, file);
    if (e || usi_registry_count(r) != 1) _exit(2);
    usi_augchain *ch = NULL;
    if (usi_augchain_new(&ch) || usi_augchain_add(ch, usi_registry_at(r, 0)->comp, NULL)) _exit(2);
    uint8_t pixels[4 * 4 * 3] = {0};
    usi_image img = {sizeof img, 4, 4, 3, 12, pixels};
    usi_aug_scratch scratch = {0};
    const usi_image *out = NULL;
    usi_rng rng;
    usi_rng_seed(&rng, 1, 0, 0, 0);
    usi_augchain_run_sample(ch, &img, &scratch, &out, &rng);
}

/* A real fault in a sanitizer build too (UBSan would stop at the null store). */
__attribute__((no_sanitize("address", "undefined"))) static void fault_in_host(const char *unused)
{
    (void)unused;
    volatile int *volatile nowhere = NULL;
    *nowhere = 1;
}

static void expect_line(const char *what, const ran *r, const char *line)
{
    CHECK(strstr(r->err, line), "%s: no '%s' on stderr: %s", what, line, r->err);
}

/* fn(arg) in a child with usi's handlers: it dies of `sig` after the line
 * naming fixture `file` and what usi was doing (`doing`). */
static void expect_fatal(const char *what, void (*fn)(const char *), const char *arg, const char *file, int sig,
                         const char *doing, ran *r)
{
    char line[4600];
    run_child(fn, arg, r);
    snprintf(line, sizeof line, "usi: fatal %s in plugin file %s while %s\n", usi_crash_signal_name(sig),
             fixture(file), doing);
    expect_line(what, r, line);
    CHECK(died_of(r, sig), "%s: status %#x, not death by %s", what, r->status, usi_crash_signal_name(sig));
}

static void test_crash_after_loading(void)
{
    char spec[4200], line[4600];
    ran *r = malloc(sizeof *r);
    if (!r) return;

    snprintf(spec, sizeof spec, "%s:crash_create_net", fixture("hostile_crash_create"));
    expect_fatal("SIGSEGV in create", build_through_host, spec, "hostile_crash_create", SIGSEGV,
                 "creating backbone 'crash_create_net'", r);
    snprintf(spec, sizeof spec, "%s:abort_build_net", fixture("hostile_abort_build"));
    expect_fatal("abort in build", build_through_host, spec, "hostile_abort_build", SIGABRT,
                 "building backbone 'abort_build_net'", r);
    snprintf(spec, sizeof spec, "%s", fixture("hostile_crash_augment"));
    expect_fatal("SIGSEGV in apply_sample", augment_one_image, spec, "hostile_crash_augment", SIGSEGV,
                 "running augment 'crash_aug'", r);

    snprintf(spec, sizeof spec, "%s:exit_create_net", fixture("hostile_exit_create"));
    run_child(build_through_host, spec, r);
    snprintf(line, sizeof line, "usi: error: plugin file %s called exit(0) while creating backbone 'exit_create_net'",
             fixture("hostile_exit_create"));
    expect_line("exit(0) in create", r, line);
    CHECK(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 1, "exit(0) in create: status %#x, not exit 1",
          r->status);

    run_child(create_unbracketed, fixture("hostile_crash_create"), r);
    snprintf(line, sizeof line, "usi: fatal SIGSEGV in the code of plugin file %s\n", fixture("hostile_crash_create"));
    expect_line("SIGSEGV outside a bracket", r, line);
    CHECK(died_of(r, SIGSEGV), "SIGSEGV outside a bracket: status %#x", r->status);

    run_child(fault_in_host, NULL, r);
    expect_line("SIGSEGV in host code", r, "usi: fatal SIGSEGV (a bug in usi: please report it)\n");
    CHECK(died_of(r, SIGSEGV), "SIGSEGV in host code: status %#x", r->status);
    free(r);
}

/* --- through the usi command --- */

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
    chmod(to, 0755);
}

static void fill(const char *dir, const char *const *names, size_t n)
{
    char to[4200];
    for (size_t i = 0; i < n; i++) {
        snprintf(to, sizeof to, "%s/%s.so", dir, names[i]);
        copy_file(fixture(names[i]), to);
    }
}

/* Every file that misbehaves while loading, beside one that loads: usi
 * names each and lists the good one (status 3: some files were refused). */
static void test_usi_survives(const char *dir)
{
    static const char *const names[] = {
        "hostile_crash_ctor", "hostile_crash_entry", "hostile_abort_entry", "hostile_exit_entry",
        "hostile_hang_entry", "hostile_data_entry", "hostile_mangled_entry", "hostile_crash_create",
    };
    fill(dir, names, sizeof names / sizeof *names);
    ran *r = malloc(sizeof *r);
    if (!r) return;
    run_usi(r, "plugins", "--plugin-dir", dir, (char *)NULL);
    CHECK(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 3, "usi plugins: status %#x, wanted exit 3; stderr: %s",
          r->status, r->err);
    CHECK(strstr(r->out, "crash_create_net"), "the good plugin is not listed: %s", r->out);
    static const char *const said[] = {
        "hostile_crash_ctor.so: loading it crashed the dynamic loader or the file's own start-up code (SIGSEGV)",
        "hostile_crash_entry.so: crashed with SIGSEGV in its usi_plugin_entry",
        "hostile_abort_entry.so: crashed with SIGABRT in its usi_plugin_entry",
        "hostile_exit_entry.so: called exit(0) in its usi_plugin_entry",
        "hostile_hang_entry.so: its usi_plugin_entry did not return in 10 s",
        "hostile_data_entry.so: its 'usi_plugin_entry' is a variable",
        "hostile_mangled_entry.so: no 'usi_plugin_entry' symbol, but a C++ one",
    };
    for (size_t i = 0; i < sizeof said / sizeof *said; i++)
        CHECK(strstr(r->err, said[i]), "usi plugins: no '%s' on stderr: %s", said[i], r->err);

    /* A crash after loading, in a command: the line names the file; the
     * status is the signal's. (Without the hanging file: 10 s once is
     * enough.) */
    char hang[4200];
    snprintf(hang, sizeof hang, "%s/hostile_hang_entry.so", dir);
    unlink(hang);
    run_usi(r, "summary", "crash_create_net", "--plugin-dir", dir, (char *)NULL);
    char line[4600];
    snprintf(line, sizeof line, "usi: fatal SIGSEGV in plugin file %s/hostile_crash_create.so while creating "
             "backbone 'crash_create_net'\n", dir);
    expect_line("usi summary of a backbone whose create() crashes", r, line);
    CHECK(died_of(r, SIGSEGV), "usi summary: status %#x, not death by SIGSEGV", r->status);
    static const char *const abort_build[] = {"hostile_abort_build"};
    fill(dir, abort_build, 1);
    run_usi(r, "summary", "abort_build_net", "--plugin-dir", dir, (char *)NULL);
    snprintf(line, sizeof line, "usi: fatal SIGABRT in plugin file %s/hostile_abort_build.so while building "
             "backbone 'abort_build_net'\n", dir);
    expect_line("usi summary of a backbone whose build() aborts", r, line);
    CHECK(died_of(r, SIGABRT), "usi summary: status %#x, not death by SIGABRT", r->status);
    free(r);
}

/* What a plugin prints in its entry never reaches the --json document. */
static void test_json_stdout(const char *dir)
{
    static const char *const names[] = {"hostile_noisy"};
    fill(dir, names, 1);
    ran *r = malloc(sizeof *r);
    if (!r) return;
    run_usi(r, "plugins", "--json", "--plugin-dir", dir, (char *)NULL);
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithOpts(r->out, &end, 1);
    CHECK(doc != NULL, "usi plugins --json printed no JSON document alone (at '%.40s'): %s", end ? end : "",
          r->out);
    CHECK(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "usi plugins --json: status %#x; stderr: %s",
          r->status, r->err);
    CHECK(strstr(r->out, "noisy_net"), "the noisy plugin is not listed: %s", r->out);
    CHECK(strstr(r->err, "hostile: printf in usi_plugin_entry") && strstr(r->err, "hostile: write(1)"),
          "what the plugin printed is not on stderr: %s", r->err);
    cJSON_Delete(doc);

    /* Nor what it prints in create() and build(), called by a command. */
    run_usi(r, "summary", "noisy_net", "--json", "--plugin-dir", dir, "--set", "backbone.num_classes=3",
            (char *)NULL);
    doc = cJSON_ParseWithOpts(r->out, &end, 1);
    CHECK(doc != NULL, "usi summary --json printed no JSON document alone (at '%.40s'): %s", end ? end : "",
          r->out);
    CHECK(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "usi summary --json: status %#x; stderr: %s",
          r->status, r->err);
    CHECK(strstr(r->err, "hostile: printf in create") && strstr(r->err, "hostile: printf in build"),
          "what the plugin printed in create and build is not on stderr: %s", r->err);
    cJSON_Delete(doc);
    free(r);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s FIXTURE_DIR USI_EXE\n", argv[0]);
        return 2;
    }
    fixture_dir = argv[1];
    usi_exe = argv[2];
    test_refused_while_loading();
    test_crash_after_loading();
    char dir[] = "/tmp/usi-crash-XXXXXX", json_dir[] = "/tmp/usi-json-XXXXXX";
    CHECK(mkdtemp(dir) && mkdtemp(json_dir), "mkdtemp: %s", strerror(errno));
    chmod(dir, 0755);
    chmod(json_dir, 0755);
    test_usi_survives(dir);
    test_json_stdout(json_dir);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, json_dir);
    CHECK(system(cmd) == 0, "cleanup failed");
    return check_status("plugins that crash, hang, exit or print");
}
