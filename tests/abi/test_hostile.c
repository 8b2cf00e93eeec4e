/* Files and folders no plugin author meant to ship: a real plugin cut at
 * many lengths, ELF files for another machine or of another kind, dangling
 * and looping links, and plugin folders others can write named through each
 * of the three ways a user names one. None may crash the loader; each is
 * refused with a message that names it and says what is wrong. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "plugin/registry.h"
#include "util/error.h"

static char dir[] = "/tmp/usi-hostile-XXXXXX";

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (f && n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) &&
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (f) fclose(f);
    *len = buf ? (size_t)n : 0;
    return buf;
}

static void write_all(const char *path, const unsigned char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(buf, 1, len, f) == len, "write %s: %s", path, strerror(errno));
    if (f) fclose(f);
    chmod(path, 0755);
}

/* Load `path` in a fresh registry: it must be refused, naming the file and
 * containing `expect` (when given). Returns 1 when it was. */
static int refused(const char *path, const char *expect, const char *what)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, path);
    const char *msg = e ? usi_error_message(e) : "(loaded)";
    int ok = e && strstr(msg, path) && (!expect || strstr(msg, expect)) && usi_registry_count(r) == 0;
    CHECK(ok, "%s: %s", what, msg);
    usi_error_free(e);
    usi_registry_free(r);
    return ok;
}

/* The loader would SIGBUS on most of these: every length from 0 through the
 * ELF and program headers, then about 300 lengths across the rest, and one
 * byte either side of every page boundary. */
static void test_truncations(const char *plugin)
{
    size_t len;
    unsigned char *whole = read_all(plugin, &len);
    CHECK(whole && len > 4096, "cannot read %s", plugin);
    if (!whole) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/cut.so", dir);
    size_t tried = 0, failed = 0;
    for (size_t cut = 0; cut < len; cut++) {
        int near_page = cut % 4096 == 1 || cut % 4096 == 4095;
        if (!(cut <= 1024 || cut % (len / 300 + 1) == 0 || near_page || cut == len - 1)) continue;
        write_all(path, whole, cut);
        tried++;
        char what[64];
        snprintf(what, sizeof what, "cut at %zu of %zu bytes", cut, len);
        if (!refused(path, cut < 4 ? "not a shared object (no ELF header)" : "truncated", what)) failed++;
        if (failed > 5) break; /* the first few messages say enough */
    }
    CHECK(tried > 1300, "only %zu lengths tried", tried);
    /* Whole again, it loads: the refusals were about the cuts. */
    write_all(path, whole, len);
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, path);
    CHECK(!e && usi_registry_count(r) > 0, "the uncut copy was refused: %s", usi_error_message(e));
    usi_error_free(e);
    usi_registry_free(r);
    free(whole);
}

/* One field of the ELF header changed at a time. */
static void test_foreign_elf(const char *plugin)
{
    size_t len;
    unsigned char *buf = read_all(plugin, &len);
    if (!buf || len < 64) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/foreign.so", dir);
    static const struct {
        size_t at;
        unsigned char value;
        const char *expect;
    } patches[] = {
        {4, 1, "a 32-bit ELF file, this usi is 64-bit"},     /* EI_CLASS = ELFCLASS32 */
        {5, 2, "of the other byte order"},                   /* EI_DATA = ELFDATA2MSB */
        {18, 183, "built for another processor (ELF machine 183"}, /* e_machine = EM_AARCH64 */
        {16, 2, "not a shared object (type 2)"},             /* e_type = ET_EXEC */
    };
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        unsigned char saved = buf[patches[i].at];
#if !defined(__x86_64__)
        if (patches[i].at == 18) continue; /* the machine patch assumes x86-64 */
#endif
        buf[patches[i].at] = patches[i].value;
        write_all(path, buf, len);
        refused(path, patches[i].expect, patches[i].expect);
        buf[patches[i].at] = saved;
    }
    free(buf);
}

static void test_links(void)
{
    char link[4200], target[4200];
    snprintf(link, sizeof link, "%s/dangling.so", dir);
    snprintf(target, sizeof target, "%s/gone.so", dir);
    CHECK(symlink(target, link) == 0, "symlink: %s", strerror(errno));
    char expect[8600];
    snprintf(expect, sizeof expect, "dangling symbolic link: it points to '%s', which does not exist", target);
    refused(link, expect, "dangling link");
    unlink(link);
    snprintf(link, sizeof link, "%s/loop.so", dir);
    CHECK(symlink(link, link) == 0, "symlink: %s", strerror(errno));
    refused(link, "symbolic link loop", "link loop");
    unlink(link);
}

/* --plugin-dir, plugin_path and USI_PLUGIN_PATH: one policy, an error. */
static void test_unsafe_folder_policy(void)
{
    char unsafe[4200];
    snprintf(unsafe, sizeof unsafe, "%s/open", dir);
    CHECK(mkdir(unsafe, 0755) == 0 && chmod(unsafe, 0777) == 0, "mkdir: %s", strerror(errno));
    const char *dirs[] = {unsafe};
    const char *sources[] = {"--plugin-dir", "plugin_path", "USI_PLUGIN_PATH"};
    for (int how = 0; how < 3; how++) {
        usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
        if (how == 2) setenv("USI_PLUGIN_PATH", unsafe, 1);
        usi_error *e = usi_registry_discover(r, how == 0 ? dirs : NULL, how == 0, how == 1 ? dirs : NULL,
                                             how == 1);
        unsetenv("USI_PLUGIN_PATH");
        char fix[4300];
        snprintf(fix, sizeof fix, "chmod go-w '%s'", unsafe);
        const char *msg = e ? usi_error_message(e) : "(accepted)";
        CHECK(e && strstr(msg, sources[how]) && strstr(msg, "writable by other users") && strstr(msg, fix),
              "a world-writable folder through %s: %s", sources[how], msg);
        usi_error_free(e);
        usi_registry_free(r);
    }
    /* A folder named in the config or environment that does not exist is
     * only a problem: the search goes on. */
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/none", dir);
    const char *gone[] = {missing};
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_discover(r, NULL, 0, gone, 1);
    CHECK(!e, "a missing plugin_path folder stopped the search: %s", usi_error_message(e));
    usi_error_free(e);
    usi_registry_free(r);
    rmdir(unsafe);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !mkdtemp(dir)) {
        fprintf(stderr, "usage: %s SHIPPED_PLUGIN\n", argv[0]);
        return 2;
    }
    test_truncations(argv[1]);
    test_foreign_elf(argv[1]);
    test_links();
    test_unsafe_folder_policy();
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup failed");
    return check_status("hostile plugin files");
}
