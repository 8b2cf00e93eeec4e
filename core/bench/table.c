/* The bench's results as CSV (bench.csv) and as a table on the terminal. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/csv.h"

void usi_bench_row_free(usi_bench_row *r)
{
    free(r->backbone);
    free(r->device);
    free(r->error);
    memset(r, 0, sizeof *r);
}

/* ",<v>" with two decimals, or "," alone when v is unknown (0 or NAN). */
static void add_number(usi_strbuf *b, double v, int zero_is_unknown)
{
    if (!isfinite(v) || (zero_is_unknown && v == 0)) usi_strbuf_addf(b, ",");
    else usi_strbuf_addf(b, ",%.2f", v);
}

void usi_bench_csv(const usi_bench_row *rows, size_t n, usi_strbuf *out)
{
    usi_strbuf_addf(out, "backbone,params,macs,img_size,batch,device,infer_img_s,train_img_s,top1,error\n");
    for (size_t i = 0; i < n; i++) {
        const usi_bench_row *r = &rows[i];
        usi_csv_add_field(out, r->backbone);
        if (r->params) usi_strbuf_addf(out, ",%lld,%lld", (long long)r->params, (long long)r->macs);
        else usi_strbuf_addf(out, ",,");
        usi_strbuf_addf(out, ",%lld,%lld,", (long long)r->img_size, (long long)r->batch);
        usi_csv_add_field(out, r->device ? r->device : "");
        add_number(out, r->infer_img_s, 1);
        add_number(out, r->train_img_s, 1);
        add_number(out, r->top1, 0);
        usi_strbuf_addf(out, ",");
        usi_csv_add_field(out, r->error ? r->error : "");
        usi_strbuf_addf(out, "\n");
    }
}

static const char *cell(char *buf, size_t cap, const char *fmt, double v, int known)
{
    if (known) snprintf(buf, cap, fmt, v);
    else snprintf(buf, cap, "-");
    return buf;
}

void usi_bench_print_table(FILE *f, const usi_bench_row *rows, size_t n)
{
    int w = 8, wd = 6;
    for (size_t i = 0; i < n; i++) {
        int lb = (int)strlen(rows[i].backbone), ld = rows[i].device ? (int)strlen(rows[i].device) : 1;
        w = lb > w ? lb : w;
        wd = ld > wd ? ld : wd;
    }
    fprintf(f, "%-*s %9s %8s %5s %5s  %-*s %12s %12s %6s\n", w, "backbone", "params", "GMACs", "size", "batch", wd,
            "device", "infer img/s", "train img/s", "top-1");
    for (size_t i = 0; i < n; i++) {
        const usi_bench_row *r = &rows[i];
        char p[32], m[32], inf[32], tr[32], top[32];
        fprintf(f, "%-*s %9s %8s %5lld %5lld  %-*s %12s %12s %6s\n", w, r->backbone,
                cell(p, sizeof p, "%.2fM", (double)r->params / 1e6, r->params > 0),
                cell(m, sizeof m, "%.3f", (double)r->macs / 1e9, r->params > 0), (long long)r->img_size,
                (long long)r->batch, wd, r->device ? r->device : "-",
                cell(inf, sizeof inf, "%.2f", r->infer_img_s, r->infer_img_s > 0),
                cell(tr, sizeof tr, "%.2f", r->train_img_s, r->train_img_s > 0),
                cell(top, sizeof top, "%.1f", r->top1, isfinite(r->top1)));
        if (r->error) fprintf(f, "%-*s   failed: %s\n", w, "", r->error);
    }
}
