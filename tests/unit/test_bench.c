/* usi bench's pieces on hand-made inputs: the Pareto front (ties, missing
 * accuracy), CSV fields and the accuracy table (comments, extra columns,
 * errors naming file and line), bench.csv read back as an accuracy table,
 * the median, and the plot: every marker where the layout puts it, in the
 * colour of its side of the front, on a log-scale x axis; the SVG names
 * every plotted backbone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/csv.h"
#include "bench/pareto.h"
#include "check.h"
#include "data/decode.h"
#include "util/error.h"

static char dir[] = "/tmp/usi-bench-XXXXXX";

static void front_is(const double *speed, const double *top1, size_t n, const char *want, const char *what)
{
    uint8_t on[16];
    size_t count = usi_pareto_front(speed, top1, n, on);
    char got[17];
    size_t ones = 0;
    for (size_t i = 0; i < n; i++) {
        got[i] = on[i] ? '1' : '0';
        ones += on[i];
    }
    got[n] = 0;
    CHECK(!strcmp(got, want) && count == ones, "%s: front %s (count %zu), want %s", what, got, count, want);
}

static void test_front(void)
{
    /* C is beaten by A, D by B */
    const double s1[] = {100, 1000, 50, 300, 3000}, t1[] = {80, 70, 60, 65, 50};
    front_is(s1, t1, 5, "11001", "five backbones");
    /* equal speed: only the more accurate; equal top-1: only the faster */
    const double s2[] = {100, 100}, t2[] = {70, 75};
    front_is(s2, t2, 2, "01", "equal speed");
    const double s3[] = {100, 200}, t3[] = {70, 70};
    front_is(s3, t3, 2, "01", "equal top-1");
    /* identical points beat each other in nothing */
    const double s4[] = {100, 100, 50}, t4[] = {70, 70, 60};
    front_is(s4, t4, 3, "110", "identical points");
    /* no accuracy or no speed: never on the front, and beats no one */
    const double s5[] = {1000, 100, 0, 10}, t5[] = {NAN, 70, 90, 60};
    front_is(s5, t5, 4, "0100", "missing accuracy and speed");
    const double s6[] = {5}, t6[] = {1};
    front_is(s6, t6, 1, "1", "one point");
    uint8_t none[1];
    CHECK(usi_pareto_front(NULL, NULL, 0, none) == 0, "an empty set has a front");
    /* a strictly falling staircase is all front */
    const double s7[] = {10, 20, 40, 80}, t7[] = {90, 80, 70, 60};
    front_is(s7, t7, 4, "1111", "staircase");
}

static void split_is(const char *line, size_t want_n, const char *const *want)
{
    char *f[8];
    size_t n;
    int rc = usi_csv_split(line, f, 8, &n);
    CHECK(rc == 0 && n == want_n, "split '%s': rc %d, %zu fields", line, rc, n);
    for (size_t i = 0; !rc && i < n && i < want_n; i++)
        CHECK(!strcmp(f[i], want[i]), "split '%s': field %zu is '%s', want '%s'", line, i, f[i], want[i]);
    for (size_t i = 0; !rc && i < n; i++) free(f[i]);
}

static void test_csv_fields(void)
{
    split_is("a,b,c", 3, (const char *const[]){"a", "b", "c"});
    split_is(" a , b ,", 3, (const char *const[]){"a", "b", ""});
    split_is("\"x, y\",\"say \"\"hi\"\"\",z", 3, (const char *const[]){"x, y", "say \"hi\"", "z"});
    split_is("", 1, (const char *const[]){""});
    char *f[2];
    size_t n;
    CHECK(usi_csv_split("\"open,b", f, 2, &n) == -1, "an unclosed quote is accepted");
    CHECK(usi_csv_split("a\"b,c", f, 2, &n) == -1, "a quote inside a bare field is accepted");
    CHECK(usi_csv_split("a,b,c", f, 2, &n) == -1, "more fields than room is accepted");
    usi_strbuf b = {0};
    usi_csv_add_field(&b, "plain");
    usi_strbuf_addf(&b, ",");
    usi_csv_add_field(&b, "with, comma \"and quote\"\nand a line break");
    CHECK(b.data && !strcmp(b.data, "plain,\"with, comma \"\"and quote\"\" and a line break\""), "quoted: %s",
          b.data);
    usi_strbuf_free(&b);
}

static void parse_fails(const char *text, const char *want, const char *what)
{
    usi_accuracy a;
    usi_error *e = usi_accuracy_parse(text, "t.csv", &a);
    CHECK(e && strstr(usi_error_message(e), want), "%s: %s (want '%s')", what, e ? usi_error_message(e) : "no error",
          want);
    CHECK(a.n == 0 && !a.names, "%s: a failed parse leaves entries", what);
    usi_error_free(e);
}

static void test_accuracy(void)
{
    usi_accuracy a;
    usi_error *e = usi_accuracy_parse("# where the numbers come from\r\n\n"
                                      "paper_name, top1 ,backbone\r\n"
                                      "ResNet50,81.0,resnet50\r\n"
                                      "  # a comment between rows\n"
                                      "\"ViT-S, /16\",81.8,vit_small_patch16_224\n"
                                      "Mystery,,mystery_net\n"
                                      "Zero,0,zero_net",
                                      "t.csv", &a);
    CHECK(!e, "parse: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    CHECK(a.n == 4, "%zu entries, want 4", a.n);
    CHECK(usi_accuracy_find(&a, "resnet50") == 81.0, "resnet50: %g", usi_accuracy_find(&a, "resnet50"));
    CHECK(usi_accuracy_find(&a, "vit_small_patch16_224") == 81.8, "vit: %g",
          usi_accuracy_find(&a, "vit_small_patch16_224"));
    CHECK(isnan(usi_accuracy_find(&a, "mystery_net")), "an empty top1 is not unknown");
    CHECK(usi_accuracy_find(&a, "zero_net") == 0.0, "0 is a top-1 like any other");
    CHECK(isnan(usi_accuracy_find(&a, "resnet18")), "a backbone not in the table has a top-1");
    usi_accuracy_free(&a);

    parse_fails("backbone,top1\nresnet50,81\nresnet18\n", "t.csv:3: 1 field but the header has 2 columns",
                "short line");
    parse_fails("backbone,top1\nresnet50,eighty\n", "t.csv:2: top1 'eighty' is not a percentage", "not a number");
    parse_fails("backbone,top1\nresnet50,101\n", "t.csv:2: top1 '101'", "above 100");
    parse_fails("backbone,top1\nresnet50,-1\n", "t.csv:2: top1 '-1'", "negative");
    parse_fails("backbone,top1\nresnet50,nan\n", "t.csv:2: top1 'nan'", "nan");
    parse_fails("# c\nname,top1\nresnet50,81\n", "t.csv:2: the header needs the columns 'backbone' and 'top1'",
                "no backbone column");
    parse_fails("backbone,acc\n", "t.csv:1: the header needs", "no top1 column");
    parse_fails("backbone,top1\nresnet50,81\n\nresnet50,80\n", "t.csv:4: backbone 'resnet50' is given twice (also on "
                "line 2)", "twice");
    parse_fails("backbone,top1\n,81\n", "t.csv:2: the backbone name is empty", "empty name");
    parse_fails("backbone,top1\n\"resnet50,81\n", "t.csv:2: not a CSV line", "unclosed quote");
    parse_fails("# only comments\n\n", "t.csv: no header line", "no header");

    /* a file: the error names it */
    char path[256];
    snprintf(path, sizeof path, "%s/bad.csv", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("backbone,top1\nresnet50,81\nresnet18,x\n", f);
        fclose(f);
    }
    char want[300];
    snprintf(want, sizeof want, "%s:3: top1 'x'", path);
    e = usi_accuracy_load(path, &a);
    CHECK(e && strstr(usi_error_message(e), want), "file error: %s", e ? usi_error_message(e) : "none");
    usi_error_free(e);
    unlink(path);
    e = usi_accuracy_load(path, &a);
    CHECK(e && strstr(usi_error_message(e), path), "missing file: %s", e ? usi_error_message(e) : "none");
    usi_error_free(e);
}

/* bench.csv is an accuracy table too: the rows' top-1 come back. */
static void test_bench_csv(void)
{
    usi_bench_row rows[3] = {
        {"resnet50", 25557032, 4089184256, 224, 32, "cpu", 40.5, 9.25, 81.0, NULL},
        {"odd, name", 0, 0, 224, 32, "cpu", 0, 0, NAN, "a 8 px input is too small, \"really\""},
        {"mobilenetv3_large_100", 5483032, 217000000, 224, 32, "cpu", 600.0, 0, 77.3, NULL},
    };
    usi_strbuf b = {0};
    usi_bench_csv(rows, 3, &b);
    const char *want = "backbone,params,macs,img_size,batch,device,infer_img_s,train_img_s,top1,error\n"
                       "resnet50,25557032,4089184256,224,32,cpu,40.50,9.25,81.00,\n"
                       "\"odd, name\",,,224,32,cpu,,,,\"a 8 px input is too small, \"\"really\"\"\"\n"
                       "mobilenetv3_large_100,5483032,217000000,224,32,cpu,600.00,,77.30,\n";
    CHECK(b.data && !strcmp(b.data, want), "bench.csv:\n%s\nwant:\n%s", b.data, want);
    usi_accuracy a;
    usi_error *e = usi_accuracy_parse(b.data, "bench.csv", &a);
    CHECK(!e, "bench.csv as an accuracy table: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    if (!e) {
        CHECK(a.n == 3 && usi_accuracy_find(&a, "resnet50") == 81.0 && isnan(usi_accuracy_find(&a, "odd, name")) &&
              usi_accuracy_find(&a, "mobilenetv3_large_100") == 77.3, "read back: %zu rows", a.n);
        usi_accuracy_free(&a);
    }
    usi_strbuf_free(&b);
}

static void test_median(void)
{
    double odd[] = {3, 1, 2}, even[] = {4, 1, 3, 2}, one[] = {7};
    CHECK(usi_bench_median(odd, 3) == 2, "median of 3, 1, 2");
    CHECK(usi_bench_median(even, 4) == 2.5, "median of 4, 1, 3, 2");
    CHECK(usi_bench_median(one, 1) == 7, "median of one");
}

/* ---- the plot ---- */

static const usi_pareto_point *points(size_t *n)
{
    static usi_pareto_point p[] = {
        {"eps_&_<net>", 3000, 50, 0}, {"alpha_net", 100, 80, 0}, {"gamma_net", 50, 60, 0},
        {"beta_net", 1000, 70, 0}, {"delta_net", 300, 65, 0},
    };
    double s[5], t[5];
    uint8_t on[5];
    for (int i = 0; i < 5; i++) s[i] = p[i].speed, t[i] = p[i].top1;
    usi_pareto_front(s, t, 5, on);
    for (int i = 0; i < 5; i++) p[i].on_front = on[i];
    *n = 5;
    return p;
}

static double seg_dist(double x, double y, double ax, double ay, double bx, double by)
{
    double dx = bx - ax, dy = by - ay, t = ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return hypot(x - ax - t * dx, y - ay - t * dy);
}

static void test_layout(void)
{
    size_t n;
    const usi_pareto_point *p = points(&n);
    usi_pareto_layout l;
    usi_pareto_layout_of(p, n, &l);
    double x10, x100, x1000, y, ylo, yhi;
    usi_pareto_place(&l, 10, 70, &x10, &y);
    usi_pareto_place(&l, 100, 70, &x100, &y);
    usi_pareto_place(&l, 1000, 70, &x1000, &y);
    CHECK(fabs((x100 - x10) - (x1000 - x100)) < 1e-9 && x100 > x10, "x is not log10: %g %g %g", x10, x100, x1000);
    usi_pareto_place(&l, 100, 50, &x10, &ylo);
    usi_pareto_place(&l, 100, 80, &x10, &yhi);
    CHECK(yhi < ylo, "higher top-1 is not higher up");
    for (size_t i = 0; i < n; i++) {
        double px, py;
        usi_pareto_place(&l, p[i].speed, p[i].top1, &px, &py);
        CHECK(px > l.x0 + 5 && px < l.x1 - 5 && py > l.y0 + 5 && py < l.y1 - 5, "%s at (%.0f, %.0f) is outside the "
              "plot area", p[i].label, px, py);
    }
}

static usi_image read_png(const char *path)
{
    usi_decoder *d = NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    usi_image im = {sizeof(usi_image), 0, 0, 0, 0, NULL};
    usi_error *e = usi_decoder_new(&d);
    if (!e) e = usi_read_file(path, &buf, &cap, &len);
    if (!e) e = usi_decode_image(d, buf, len, 0, &im);
    CHECK(!e, "decode %s: %s", path, e ? usi_error_message(e) : "");
    usi_error_free(e);
    free(buf);
    usi_decoder_free(d);
    return im;
}

static int is_rgb(const usi_image *im, int x, int y, uint32_t rgb)
{
    const uint8_t *q = im->data + (size_t)y * (size_t)im->stride + (size_t)x * 3;
    return q[0] == (uint8_t)(rgb >> 16) && q[1] == (uint8_t)(rgb >> 8) && q[2] == (uint8_t)rgb;
}

/* Each marker is a disc of its colour where the layout puts it; every
 * pixel of the two colours in the plot area belongs to a marker of that
 * colour or, for the front's colour, to the line joining the front in
 * order of speed. */
static void test_png(void)
{
    size_t n;
    const usi_pareto_point *p = points(&n);
    char png[256];
    snprintf(png, sizeof png, "%s/pareto.png", dir);
    usi_error *e = usi_pareto_plot(p, n, "test plot", png);
    CHECK(!e, "plot: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    usi_image im = read_png(png);
    if (!im.data) return;
    CHECK(im.width == USI_PARETO_WIDTH && im.height == USI_PARETO_HEIGHT, "%dx%d", im.width, im.height);
    usi_pareto_layout l;
    usi_pareto_layout_of(p, n, &l);
    double px[5], py[5];
    for (size_t i = 0; i < n; i++) {
        usi_pareto_place(&l, p[i].speed, p[i].top1, &px[i], &py[i]);
        uint32_t rgb = p[i].on_front ? USI_PARETO_FRONT_RGB : USI_PARETO_OTHER_RGB;
        int solid = 0;
        for (int dy = -2; dy <= 2; dy++)
            for (int dx = -2; dx <= 2; dx++) solid += is_rgb(&im, (int)px[i] + dx, (int)py[i] + dy, rgb);
        CHECK(solid == 25, "%s: %d of the 25 pixels at its place (%.0f, %.0f) are its colour", p[i].label, solid,
              px[i], py[i]);
    }
    /* the front by speed: alpha (100), beta (1000), eps (3000) */
    const int order[] = {1, 3, 0};
    long stray = 0, line = 0;
    for (int y = (int)l.y0 + 1; y < (int)l.y1; y++)
        for (int x = (int)l.x0 + 1; x < (int)l.x1; x++) {
            int front = is_rgb(&im, x, y, USI_PARETO_FRONT_RGB), other = is_rgb(&im, x, y, USI_PARETO_OTHER_RGB);
            if (!front && !other) continue;
            int near = 0;
            for (size_t i = 0; i < n && !near; i++)
                near = p[i].on_front == front && hypot(x + 0.5 - px[i], y + 0.5 - py[i]) <= USI_PARETO_MARKER_RADIUS + 1;
            for (int k = 0; front && k < 2 && !near; k++) {
                near = seg_dist(x + 0.5, y + 0.5, px[order[k]], py[order[k]], px[order[k + 1]], py[order[k + 1]]) <= 1.5;
                line += near;
            }
            stray += !near;
        }
    CHECK(stray == 0, "%ld pixels of the plot's colours away from the markers and the front line", stray);
    CHECK(line > 300, "the front line has only %ld pixels", line);
    free(im.data);
    unlink(png);
    /* nothing to plot is a plot that says so, not an error */
    e = usi_pareto_plot(NULL, 0, "empty", png);
    CHECK(!e && access(png, F_OK) == 0, "empty plot: %s", e ? usi_error_message(e) : "no file");
    usi_error_free(e);
    unlink(png);
    usi_pareto_point bad = {"no_speed", 0, 70, 0};
    e = usi_pareto_plot(&bad, 1, "bad", png);
    CHECK(e != NULL, "a point without a speed is plotted");
    usi_error_free(e);
}

static void test_svg(void)
{
    size_t n;
    const usi_pareto_point *p = points(&n);
    char svg[256];
    snprintf(svg, sizeof svg, "%s/pareto.svg", dir);
    usi_error *e = usi_pareto_plot(p, n, "speed & top-1", svg);
    CHECK(!e, "plot: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    e = usi_read_file(svg, &buf, &cap, &len);
    CHECK(!e, "read %s", svg);
    usi_error_free(e);
    if (!buf) return;
    char *text = malloc(len + 1);
    memcpy(text, buf, len);
    text[len] = 0;
    const char *title = strstr(text, "<title>speed &amp; top-1</title>"), *desc = strstr(text, "<desc>");
    const char *svg_open = strstr(text, "<svg"), *end = strstr(text, "</desc>");
    CHECK(svg_open && title && title > svg_open && desc && end && strstr(text, "</svg>"),
          "no <title> and <desc> inside <svg>");
    for (size_t i = 0; desc && end && i < n; i++) {
        char want[128];
        snprintf(want, sizeof want, "%s: %.2f img/s, top-1 %.2f%%%s", i == 0 ? "eps_&amp;_&lt;net&gt;" : p[i].label,
                 p[i].speed, p[i].top1, p[i].on_front ? " (Pareto front)" : "");
        const char *at = strstr(desc, want);
        CHECK(at && at < end, "the SVG's description lacks '%s'", want);
    }
    CHECK(strstr(text, "<path") != NULL, "the SVG has no paths");
    free(text);
    free(buf);
    unlink(svg);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_front();
    test_csv_fields();
    test_accuracy();
    test_bench_csv();
    test_median();
    test_layout();
    test_png();
    test_svg();
    rmdir(dir);
    return check_status("bench");
}
