/* ImageFolder scanning beyond the flat layout: images in nested subfolders
 * (torchvision's order, hidden ones included), a link looping back up, a
 * FIFO named like an image in a class folder (refused without blocking the
 * loader), a one-class training set, the message for a missing relative
 * folder, the warning summing up files left out, hidden folders under the
 * root, class folder names that are not UTF-8, and "~" for $HOME. */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/decode.h"
#include "data/loader.h"
#include "testutil.h"
#include "util/error.h"

static int ramp(int x, int y, int k) { return (x * 9 + y * 5 + k * 70) & 255; }

static void make_dir(const char *root, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    CHECK(mkdir(path, 0755) == 0, "mkdir %s", path);
}

static void write_png(const char *root, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    usi_image im = tu_image(12, 12, 3, ramp);
    MUST(usi_png_write(path, &im));
    tu_image_free(&im);
}

/* The sample paths relative to root, one per line. */
static char *listing(const usi_dataset *ds, const char *root)
{
    size_t cap = 4096, len = 0, skip = strlen(root) + 1;
    char *out = calloc(1, cap);
    for (size_t i = 0; i < usi_dataset_size(ds); i++)
        len += (size_t)snprintf(out + len, cap - len, "%d %s\n", usi_dataset_label(ds, i),
                                usi_dataset_path(ds, i) + skip);
    return out;
}

/* torchvision walks a class folder with sorted(os.walk(followlinks=True)):
 * folders by path (".hidden" < "sub" < "sub b" < "sub/deeper", as
 * '.' < 's' and ' ' < '/'), then the files of each by name. os.walk lists
 * hidden folders and files, and the extension test takes ".a.png" and
 * ".png", so they are samples too. */
static void test_nested(void)
{
    char *root = tu_tempdir("nested");
    const char *dirs[] = {"a", "a/sub", "a/sub/deeper", "a/sub b", "a/.hidden", "b"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) make_dir(root, dirs[i]);
    const char *files[] = {"a/x.png", "a/sub/y2.png", "a/sub/y1.png", "a/sub/deeper/z.png",
                           "a/sub b/w.png", "a/.hidden/h.png", "b/q.png", "b/.a.png", "b/.png"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) write_png(root, files[i]);
    char link[4096];
    snprintf(link, sizeof link, "%s/a/sub/loop", root); /* back up to a/: not followed */
    CHECK(symlink("..", link) == 0, "symlink %s", link);
    usi_dataset *ds;
    MUST(usi_dataset_open(root, &ds));
    char *got = listing(ds, root);
    const char *want = "0 a/x.png\n0 a/.hidden/h.png\n0 a/sub/y1.png\n0 a/sub/y2.png\n0 a/sub b/w.png\n"
                       "0 a/sub/deeper/z.png\n1 b/.a.png\n1 b/.png\n1 b/q.png\n";
    CHECK(!strcmp(got, want), "nested samples:\n%swanted:\n%s", got, want);
    CHECK(usi_dataset_class_count(ds) == 2 && usi_dataset_empty_classes(ds) == 0, "%zu classes, %zu empty",
          usi_dataset_class_count(ds), usi_dataset_empty_classes(ds));
    free(got);
    usi_dataset_free(ds);
    tu_rm_rf(root);
    free(root);
}

/* A FIFO named *.png among good images: the epoch ends, the FIFO counted
 * as one bad file. SIGALRM ends the test if a loader thread blocks on it. */
static void test_fifo_in_class(void)
{
    char *root = tu_tempdir("fifo");
    make_dir(root, "a");
    make_dir(root, "b");
    const char *files[] = {"a/1.png", "a/2.png", "b/1.png", "b/2.png"};
    for (size_t i = 0; i < 4; i++) write_png(root, files[i]);
    char fifo[4096];
    snprintf(fifo, sizeof fifo, "%s/a/fifo.png", root);
    CHECK(mkfifo(fifo, 0644) == 0, "mkfifo %s", fifo);
    usi_dataset *ds;
    MUST(usi_dataset_open(root, &ds));
    CHECK(usi_dataset_size(ds) == 5, "%zu samples", usi_dataset_size(ds));
    usi_augchain *ch;
    MUST(usi_augchain_new(&ch));
    usi_loader_opts o = usi_loader_opts_default();
    o.batch_size = 2;
    o.img_size = 12; /* the images' size: no stage is needed */
    o.workers = 2;
    o.drop_last = 0;
    usi_loader *l;
    MUST(usi_loader_new(ds, ch, &o, &l));
    alarm(30);
    MUST(usi_loader_start_epoch(l, 0));
    usi_u8_batch b;
    do MUST(usi_loader_next(l, &b));
    while (b.n > 0);
    alarm(0);
    usi_epoch_stats st;
    usi_loader_epoch_stats(l, &st);
    CHECK(st.samples == 4 && st.skipped == 1 && st.bad_files == 1, "%lld samples, %lld skipped, %lld bad files",
          (long long)st.samples, (long long)st.skipped, (long long)st.bad_files);
    usi_loader_free(l);
    usi_augchain_free(ch);
    usi_dataset_free(ds);
    tu_rm_rf(root);
    free(root);
}

/* One class folder opens (evaluating one class's images is fine) but is
 * refused as a training set; two are not. */
static void test_one_class(void)
{
    char *root = tu_tempdir("oneclass");
    make_dir(root, "only");
    write_png(root, "only/1.png");
    usi_dataset *ds;
    MUST(usi_dataset_open(root, &ds));
    usi_error *e = usi_dataset_check_training(ds);
    char want[4200];
    snprintf(want, sizeof want, "%s has one class folder (only); classification needs at least 2", root);
    CHECK(e && strstr(usi_error_message(e), want), "one class: %s", e ? usi_error_message(e) : "accepted");
    usi_error_free(e);
    usi_dataset_free(ds);
    make_dir(root, "other");
    write_png(root, "other/1.png");
    MUST(usi_dataset_open(root, &ds));
    e = usi_dataset_check_training(ds);
    CHECK(!e, "two classes refused: %s", usi_error_message(e));
    usi_error_free(e);
    usi_dataset_free(ds);
    tu_rm_rf(root);
    free(root);
}

/* A missing relative folder is named with where it was looked for; an
 * absolute one needs no such note. */
static void test_relative_missing(void)
{
    char *root = tu_tempdir("relative");
    char here[4096], cwd[4096], want[8400];
    CHECK(getcwd(here, sizeof here) != NULL, "getcwd");
    CHECK(chdir(root) == 0, "chdir %s", root);
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    usi_dataset *ds = NULL;
    usi_error *e = usi_dataset_open("no-such-folder", &ds);
    snprintf(want, sizeof want, "dataset folder no-such-folder (relative to the current folder %s): ", cwd);
    CHECK(e && !ds && strstr(usi_error_message(e), want), "relative: %s", e ? usi_error_message(e) : "opened");
    usi_error_free(e);
    snprintf(want, sizeof want, "%s/no-such-folder", cwd);
    e = usi_dataset_open(want, &ds);
    CHECK(e && !strstr(usi_error_message(e), "relative to"), "absolute: %s", e ? usi_error_message(e) : "opened");
    usi_error_free(e);
    CHECK(chdir(here) == 0, "chdir %s", here);
    tu_rm_rf(root);
    free(root);
}

/* What stderr received while fn(arg) ran (log lines), malloc'ed. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[] = "/tmp/usi-test-log-XXXXXX";
    int fd = mkstemp(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *out = calloc((size_t)n + 1, 1);
    CHECK(pread(fd, out, (size_t)n, 0) == n, "reading the captured log");
    close(fd);
    unlink(path);
    return out;
}

static void write_text(const char *root, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    CHECK(tu_write_file(path, "x", 1) == 0, "write %s", path);
}

typedef struct open_call {
    const char *root;
    usi_dataset *ds;
    usi_error *e;
} open_call;

static void do_open(void *arg)
{
    open_call *c = arg;
    c->e = usi_dataset_open(c->root, &c->ds);
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* Files with extensions torchvision does not read are left out, in one
 * warning line for the whole dataset that counts them by extension; its
 * other extensions (.webp .bmp .tif .tiff .ppm .pgm) are images. Hidden
 * non-image files (.DS_Store) are not counted. */
static void test_left_out_summary(void)
{
    char *root = tu_tempdir("leftout");
    const char *dirs[] = {"a", "a/deep", "b", "c"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) make_dir(root, dirs[i]);
    write_png(root, "a/1.png");
    write_png(root, "b/1.jpg");
    write_png(root, "c/1.png");
    const char *others[] = {"a/2.heic", "a/deep/3.HEIC", "b/4.heic", "b/5.avif", "b/6.gif", "b/7.jxl",
                            "c/README", "c/8.svg", "a/.DS_Store", "c/.notes.txt",
                            "a/9.webp", "b/10.BMP", "c/11.tiff", "c/12.pgm", "a/deep/13.TIF", "b/14.ppm"};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) write_text(root, others[i]);
    open_call call = {root, NULL, NULL};
    char *log = capture_stderr(do_open, &call);
    CHECK(!call.e && usi_dataset_size(call.ds) == 9, "%s, %zu samples", call.e ? usi_error_message(call.e) : "ok",
          call.ds ? usi_dataset_size(call.ds) : 0);
    char want[4400];
    snprintf(want, sizeof want, "dataset: 8 files in %s left out: .heic 3, (none) 1, .avif 1, .gif 1, .jxl 1, "
             "other 1 (only .jpg, .jpeg, .png, .bmp, .ppm, .pgm, .tif, .tiff or .webp files are read, as in "
             "torchvision's ImageFolder; convert any images among them to PNG)\n", root);
    CHECK(strstr(log, want) != NULL, "left-out warning:\n%swanted:\n%s", log, want);
    CHECK(count_of(log, "left out") == 1, "left-out warnings: %zu\n%s", count_of(log, "left out"), log);
    usi_dataset_free(call.ds);
    free(log);
    /* nothing left out: no line */
    snprintf(want, sizeof want, "%s/b", root);
    tu_rm_rf(want);
    snprintf(want, sizeof want, "%s/c", root);
    tu_rm_rf(want);
    snprintf(want, sizeof want, "%s/a/2.heic", root);
    unlink(want);
    snprintf(want, sizeof want, "%s/a/deep/3.HEIC", root);
    unlink(want);
    call = (open_call){root, NULL, NULL};
    log = capture_stderr(do_open, &call);
    CHECK(!call.e && !strstr(log, "left out"), "a dataset of images only: %s", log);
    usi_error_free(call.e);
    usi_dataset_free(call.ds);
    free(log);
    tu_rm_rf(root);
    free(root);
}

/* A hidden folder under the root is a tool's (.ipynb_checkpoints), not a
 * class: left out with a warning naming it, and not counted either. */
static void test_hidden_class_folder(void)
{
    char *root = tu_tempdir("hiddenclass");
    const char *dirs[] = {".ipynb_checkpoints", "a", "b"};
    for (size_t i = 0; i < 3; i++) make_dir(root, dirs[i]);
    write_png(root, ".ipynb_checkpoints/x.png");
    write_png(root, "a/1.png");
    write_png(root, "b/1.png");
    open_call call = {root, NULL, NULL};
    char *log = capture_stderr(do_open, &call);
    CHECK(!call.e && usi_dataset_class_count(call.ds) == 2 && !strcmp(usi_dataset_class_name(call.ds, 0), "a"),
          "classes: %zu, first %s", call.ds ? usi_dataset_class_count(call.ds) : 0,
          call.ds ? usi_dataset_class_name(call.ds, 0) : "-");
    char want[4400];
    snprintf(want, sizeof want, "%s/.ipynb_checkpoints is a hidden folder and not taken as a class", root);
    CHECK(strstr(log, want) != NULL, "hidden folder warning:\n%s", log);
    size_t n = 0;
    MUST(usi_dataset_count_classes(root, &n));
    CHECK(n == 2, "usi_dataset_count_classes: %zu", n);
    usi_dataset_free(call.ds);
    free(log);
    tu_rm_rf(root);
    free(root);
}

/* Class names are JSON strings in best.safetensors: a folder name that is
 * not UTF-8 is refused at once, named with its bad bytes escaped; UTF-8
 * names (café, 日本) are fine. */
static void test_class_names_utf8(void)
{
    static const struct {
        const char *name, *shown;
    } bad[] = {
        {"caf\xe9", "caf\\xe9"},           /* Latin-1 */
        {"x\xc0\xafy", "x\\xc0\\xafy"},    /* overlong '/' */
        {"s\xed\xa0\x80", "s\\xed\\xa0\\x80"}, /* a UTF-16 surrogate */
        {"\xff", "\\xff"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *root = tu_tempdir("utf8");
        make_dir(root, "ok");
        make_dir(root, bad[i].name);
        write_png(root, "ok/1.png");
        usi_dataset *ds = NULL;
        usi_error *e = usi_dataset_open(root, &ds);
        char want[4400];
        snprintf(want, sizeof want, "class folder %s/%s: its name is not valid UTF-8", root, bad[i].shown);
        CHECK(e && !ds && strstr(usi_error_message(e), want) && strstr(usi_error_message(e), "rename the folder"),
              "folder %s: %s", bad[i].shown, e ? usi_error_message(e) : "accepted");
        usi_error_free(e);
        tu_rm_rf(root);
        free(root);
    }
    char *root = tu_tempdir("utf8ok");
    make_dir(root, "caf\xc3\xa9");
    make_dir(root, "\xe6\x97\xa5\xe6\x9c\xac");
    write_png(root, "caf\xc3\xa9/1.png");
    usi_dataset *ds = NULL;
    usi_error *e = usi_dataset_open(root, &ds);
    CHECK(!e && usi_dataset_class_count(ds) == 2, "UTF-8 names: %s", e ? usi_error_message(e) : "wrong count");
    usi_error_free(e);
    usi_dataset_free(ds);
    tu_rm_rf(root);
    free(root);
}

/* "~/x" and "~" are under $HOME, as in plugin_path; "~x" is a name. */
static void test_home(void)
{
    char *home = tu_tempdir("home");
    const char *dirs[] = {"ds", "ds/a", "ds/b", "a", "b"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) make_dir(home, dirs[i]);
    write_png(home, "ds/a/1.png");
    write_png(home, "ds/b/1.png");
    write_png(home, "a/1.png");
    char *saved = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    usi_dataset *ds = NULL;
    usi_error *e = usi_dataset_open("~/ds", &ds);
    char want[4200];
    snprintf(want, sizeof want, "%s/ds", home);
    CHECK(!e && usi_dataset_size(ds) == 2 && !strcmp(usi_dataset_root(ds), want), "~/ds: %s, root %s",
          e ? usi_error_message(e) : "opened", ds ? usi_dataset_root(ds) : "-");
    usi_error_free(e);
    usi_dataset_free(ds);
    size_t n = 0;
    e = usi_dataset_count_classes("~/ds", &n);
    CHECK(!e && n == 2, "count ~/ds: %zu", n);
    usi_error_free(e);
    e = usi_dataset_open("~", &ds);
    CHECK(!e && usi_dataset_class_count(ds) == 3 && usi_dataset_size(ds) == 3, "~: %s",
          e ? usi_error_message(e) : "wrong counts");
    usi_error_free(e);
    usi_dataset_free(ds);
    e = usi_dataset_open("~/missing", &ds);
    snprintf(want, sizeof want, "dataset folder ~/missing (%s/missing): ", home);
    CHECK(e && strstr(usi_error_message(e), want), "~/missing: %s", e ? usi_error_message(e) : "opened");
    usi_error_free(e);
    e = usi_dataset_open("~ds", &ds);
    CHECK(e && strstr(usi_error_message(e), "dataset folder ~ds (relative to the current folder"), "~ds: %s",
          e ? usi_error_message(e) : "opened");
    usi_error_free(e);
    if (saved) setenv("HOME", saved, 1);
    else unsetenv("HOME");
    free(saved);
    tu_rm_rf(home);
    free(home);
}

int main(void)
{
    test_nested();
    test_fifo_in_class();
    test_one_class();
    test_relative_missing();
    test_left_out_summary();
    test_hidden_class_folder();
    test_class_names_utf8();
    test_home();
    return tu_finish("test_imagefolder");
}
