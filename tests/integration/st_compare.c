/* Compare two safetensors files tensor by tensor (same names, shapes and
 * dtypes; F32 values within a tolerance, others byte for byte):
 *   st_compare A B ABS_TOL [PART=TOL ...]
 * Prints the largest absolute and relative difference and the tensor that
 * has it; exits 0 when every F32 value is within ABS_TOL (0 asks for
 * identical values) and the files hold the same tensors, 1 otherwise.
 * PART=TOL gives the tensors whose name contains PART (the first such
 * argument that matches) a tolerance of their own; their largest
 * difference is then printed per PART, and the others' as "others". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/safetensors.h"
#include "util/error.h"

enum { MAX_GROUPS = 16 };

typedef struct group {
    char part[128];          /* "" for the others */
    double tol, worst;
    const char *where;
    size_t values;
} group;

int main(int argc, char **argv)
{
    if (argc < 4 || argc - 4 >= MAX_GROUPS) {
        fprintf(stderr, "usage: st_compare A.safetensors B.safetensors ABS_TOL [PART=TOL ...]\n");
        return 2;
    }
    group g[MAX_GROUPS] = {{"", strtod(argv[3], NULL), 0, "-", 0}};
    int n_groups = 1;
    for (int i = 4; i < argc; i++) {
        const char *eq = strrchr(argv[i], '=');
        if (!eq || eq == argv[i] || (size_t)(eq - argv[i]) >= sizeof g[0].part) {
            fprintf(stderr, "st_compare: '%s' is not PART=TOL\n", argv[i]);
            return 2;
        }
        group *p = &g[n_groups++];
        memcpy(p->part, argv[i], (size_t)(eq - argv[i]));
        p->tol = strtod(eq + 1, NULL);
        p->where = "-";
    }
    usi_st_file *a = NULL, *b = NULL;
    usi_error *e = usi_st_read(argv[1], &a);
    if (!e) e = usi_st_read(argv[2], &b);
    if (e) {
        fprintf(stderr, "st_compare: %s\n", usi_error_message(e));
        return 2;
    }
    int bad = 0;
    if (usi_st_count(a) != usi_st_count(b)) {
        printf("%zu tensors in %s, %zu in %s\n", usi_st_count(a), argv[1], usi_st_count(b), argv[2]);
        bad = 1;
    }
    double worst = 0, worst_rel = 0;
    const char *where = "-";
    size_t values = 0, differ = 0;
    for (size_t i = 0; i < usi_st_count(a); i++) {
        const usi_st_tensor *x = usi_st_at(a, i), *y = usi_st_find(b, x->name);
        if (!y || y->dtype != x->dtype || y->nbytes != x->nbytes) {
            printf("tensor %s is missing from %s or differs in type or size\n", x->name, argv[2]);
            bad = 1;
            continue;
        }
        if (x->dtype != USI_DTYPE_F32) {
            if (memcmp(x->data, y->data, x->nbytes) != 0) {
                printf("tensor %s (%s) differs\n", x->name, usi_dtype_name(x->dtype));
                bad = 1;
            }
            continue;
        }
        group *gr = &g[0];
        for (int k = 1; k < n_groups && gr == &g[0]; k++)
            if (strstr(x->name, g[k].part)) gr = &g[k];
        const float *p = x->data, *q = y->data;
        for (size_t k = 0; k < x->nbytes / sizeof(float); k++) {
            double d = fabs((double)p[k] - (double)q[k]);
            values++;
            gr->values++;
            differ += d != 0 || isnan(d);
            if (isnan(d) || d > worst) {
                worst = isnan(d) ? INFINITY : d;
                where = x->name;
            }
            if (isnan(d) || d > gr->worst) {
                gr->worst = isnan(d) ? INFINITY : d;
                gr->where = x->name;
            }
            double m = fmax(fabs(p[k]), fabs(q[k]));
            if (m > 0 && d / m > worst_rel) worst_rel = d / m;
        }
    }
    printf("%zu float values, %zu differ; largest difference %.3g (relative %.3g) in %s\n", values, differ, worst,
           worst_rel, where);
    for (int k = 0; k < n_groups; k++) {
        if (g[k].worst > g[k].tol) bad = 1;
        if (n_groups > 1)
            printf("  %s: %zu values, largest difference %.3g in %s (tolerance %g)\n", k ? g[k].part : "others",
                   g[k].values, g[k].worst, g[k].where, g[k].tol);
    }
    usi_st_free(a);
    usi_st_free(b);
    return bad ? 1 : 0;
}
