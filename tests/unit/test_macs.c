/* usi_graph_forward_macs on a hand-built graph: a grouped conv, a linear and
 * a matmul, whose multiply-adds are worked out here from the shapes, plus a
 * pool that must not count. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "device.h"
#include <usi/plugin.h>

#include "graph/graph.h"
#include "plugin/host.h"
#include "util/error.h"

int main(void)
{
    const usi_graph_api *G = usi_graph_api_get();
    usi_init init = usi_init_normal(0, 0.1);

    usi_graph *g = usi_graph_new(test_device(), 0, 1);
    CHECK(usi_graph_forward_macs(g) == 0, "an empty graph has no MACs");
    int64_t xs[4] = {2, 4, 9, 9};
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, xs);

    /* conv: 4 -> 6 channels in 2 groups, 3x3, stride 2, pad 1: 9x9 -> 5x5.
     * out [2,6,5,5] = 300 values, each a dot product of 4/2 * 3*3 = 18. */
    int64_t ws[4] = {6, 2, 3, 3}, bs[1] = {6};
    usi_tensor *w = G->param(g, "conv.weight", 4, ws, &init);
    usi_tensor *b = G->param(g, "conv.bias", 1, bs, &init);
    usi_conv2d_desc d = usi_conv2d(2, 1, 1, 2);
    usi_tensor *y = G->conv2d(g, x, w, b, &d);
    CHECK(G->dim(y, 2) == 5 && G->dim(y, 3) == 5, "conv output %lldx%lld", (long long)G->dim(y, 2),
          (long long)G->dim(y, 3));
    int64_t conv_macs = 300 * 18;
    CHECK(usi_graph_forward_macs(g) == conv_macs, "conv alone: %lld, want %lld",
          (long long)usi_graph_forward_macs(g), (long long)conv_macs);

    /* A pool is not a dot product: no MACs. */
    usi_pool2d_desc pd = usi_pool2d(USI_POOL_AVG, 1, 1, 0);
    y = G->pool2d(g, y, &pd);

    /* linear: [2,150] x [10,150]^T: out [2,10] = 20 values of 150 products. */
    usi_tensor *f = G->flatten(g, y, 1, -1);
    int64_t ls[2] = {10, 150};
    usi_tensor *lw = G->param(g, "fc.weight", 2, ls, &init);
    usi_tensor *z = G->linear(g, f, lw, NULL);
    int64_t linear_macs = 20 * 150;

    /* matmul: a[2,3,5] @ m[5,7]: out [2,3,7] = 42 values, K = 5. */
    int64_t as[3] = {2, 3, 5}, ms[2] = {5, 7};
    usi_tensor *a = usi_graph_input(g, "a", USI_DTYPE_F32, 3, as);
    usi_tensor *m = G->param(g, "m", 2, ms, &init);
    usi_tensor *mm = G->matmul(g, a, m);
    int64_t matmul_macs = 42 * 5;

    usi_error *e = usi_graph_error(g);
    CHECK(!e && z && mm, "recording failed: %s", e ? usi_error_message(e) : "NULL node");
    usi_error_free(e);
    int64_t want = conv_macs + linear_macs + matmul_macs, got = usi_graph_forward_macs(g);
    CHECK(got == want, "conv + linear + matmul: %lld, want %lld (= %lld + %lld + %lld)", (long long)got,
          (long long)want, (long long)conv_macs, (long long)linear_macs, (long long)matmul_macs);

    /* Per node: the conv reads 6*2*3*3 + 6 parameter values; the nodes' MACs
     * add up to the total; leaves are marked. */
    usi_node_info ni;
    int64_t sum = 0;
    int32_t convs = 0, leaves = 0;
    for (int32_t i = 0; usi_graph_node_info(g, i, &ni); i++) {
        sum += ni.macs;
        leaves += ni.leaf;
        if (strcmp(ni.op, "conv2d")) continue;
        convs++;
        CHECK(ni.params == 114 && ni.macs == conv_macs && ni.ndim == 4 && ni.shape[1] == 6,
              "conv node: %lld params, %lld MACs", (long long)ni.params, (long long)ni.macs);
    }
    CHECK(convs == 1 && sum == want, "%d conv nodes, node MACs add up to %lld", convs, (long long)sum);
    CHECK(leaves == 6, "%d leaves, want 6 (2 inputs, 4 parameters)", leaves);
    CHECK(!usi_graph_node_info(g, usi_graph_num_nodes(g), &ni), "no node past the end");
    usi_graph_free(g);
    CHECK(usi_graph_forward_macs(NULL) == 0, "NULL graph");

    return check_status("macs");
}
