/* ImageFolder scanning beyond the flat layout: images in nested subfolders
 * (torchvision's order), a link looping back up, a FIFO named like an image
 * in a class folder (refused without blocking the loader), a one-class
 * training set, and the message for a missing relative folder. */
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
 * folders by path ("sub" < "sub b" < "sub/deeper", as ' ' < '/'), then
 * the files of each by name. */
static void test_nested(void)
{
    char *root = tu_tempdir("nested");
    const char *dirs[] = {"a", "a/sub", "a/sub/deeper", "a/sub b", "a/.hidden", "b"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) make_dir(root, dirs[i]);
    const char *files[] = {"a/x.png", "a/sub/y2.png", "a/sub/y1.png", "a/sub/deeper/z.png",
                           "a/sub b/w.png", "a/.hidden/h.png", "b/q.png"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) write_png(root, files[i]);
    char link[4096];
    snprintf(link, sizeof link, "%s/a/sub/loop", root); /* back up to a/: not followed */
    CHECK(symlink("..", link) == 0, "symlink %s", link);
    usi_dataset *ds;
    MUST(usi_dataset_open(root, &ds));
    char *got = listing(ds, root);
    const char *want = "0 a/x.png\n0 a/sub/y1.png\n0 a/sub/y2.png\n0 a/sub b/w.png\n0 a/sub/deeper/z.png\n1 b/q.png\n";
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

int main(void)
{
    test_nested();
    test_fifo_in_class();
    test_one_class();
    test_relative_missing();
    return tu_finish("test_imagefolder");
}
