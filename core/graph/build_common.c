#include "graph/build_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[USI_OP_COUNT] = {
    [USI_OP_INPUT] = "input", [USI_OP_PARAM] = "param",
    [USI_OP_BUFFER] = "buffer", [USI_OP_CONSTANT] = "constant", [USI_OP_CONV2D] = "conv2d",
    [USI_OP_LINEAR] = "linear", [USI_OP_MATMUL] = "matmul",
    [USI_OP_BATCH_NORM] = "batch_norm", [USI_OP_LAYER_NORM] = "layer_norm",
    [USI_OP_ACT] = "activation", [USI_OP_BINARY] = "binary",
    [USI_OP_SCALE] = "scale", [USI_OP_POOL2D] = "pool2d",
    [USI_OP_REDUCE] = "reduce", [USI_OP_SOFTMAX] = "softmax",
    [USI_OP_DROPOUT] = "dropout", [USI_OP_DROP_PATH] = "drop_path",
    [USI_OP_RESHAPE] = "reshape", [USI_OP_PERMUTE] = "permute",
    [USI_OP_CONCAT] = "concat", [USI_OP_SLICE] = "slice", [USI_OP_PAD] = "pad",
    [USI_OP_SPACE_TO_DEPTH] = "space_to_depth", [USI_OP_GATHER] = "gather",
    [USI_OP_LOSS_SOFT_CE] = "loss_soft_ce", [USI_OP_LOSS_CE] = "loss_ce",
    [USI_OP_LOSS_KL] = "loss_kl", [USI_OP_CUSTOM] = "custom",
};

const char *usi_op_name(int32_t op)
{
    return op >= 0 && op < USI_OP_COUNT ? op_names[op] : "?";
}

/* Bit i of a mask of inputs; inputs past the 32nd have none. */
static int mask_bit(uint32_t mask, int32_t i) { return i < 32 && ((mask >> i) & 1u); }

usi_tensor *usi_begin(usi_graph *g, int32_t op, const char *opname,
                      int32_t n_src, usi_tensor *const *src,
                      uint32_t optional_mask, uint32_t int_mask)
{
    if (!g || g->error) return NULL;
    for (int32_t i = 0; i < n_src; i++) {
        if (!src[i]) {
            if (mask_bit(optional_mask, i)) continue;
            return NULL; /* a failed producer already recorded why */
        }
        if (src[i]->graph != g) {
            usi_graph_fail(g, "%s: input %d ('%s') belongs to another graph",
                           opname, i, src[i]->name);
            return NULL;
        }
        if (!mask_bit(int_mask, i) && src[i]->dtype != USI_DTYPE_F32) {
            usi_graph_fail(g, "%s: input %d ('%s') is not float", opname, i,
                           src[i]->name);
            return NULL;
        }
    }
    return usi_node_new(g, op, opname, n_src, src);
}

/* Where a node sits, for messages: its scoped name, or, for a node
 * recorded outside any scope with its weights named in full ("head.fc.weight"),
 * the weights' scope ("head.fc"), which is what a user recognises. */
static const char *node_label(const usi_tensor *t, char *buf, size_t cap)
{
    if (strchr(t->name, '.')) return t->name;
    for (int32_t k = 0; k < t->n_src; k++) {
        const usi_tensor *s = t->src[k];
        const char *dot = s && s->op == USI_OP_PARAM ? strrchr(s->name, '.') : NULL;
        if (!dot) continue;
        snprintf(buf, cap, "%.*s", (int)(dot - s->name), s->name);
        return buf;
    }
    return t->name;
}

usi_tensor *usi_fail_shapes(usi_tensor *t, const char *an, const usi_tensor *a,
                            const char *bn, const usi_tensor *b,
                            const char *fmt, ...)
{
    char why[512], sa[160], sb[160], label[256];
    const char *where = node_label(t, label, sizeof label);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    usi_shape_str(a, sa, sizeof sa);
    if (b) {
        usi_shape_str(b, sb, sizeof sb);
        usi_graph_fail(t->graph, "%s '%s': %s %s and %s %s: %s",
                       usi_op_name(t->op), where, an, sa, bn, sb, why);
    } else {
        usi_graph_fail(t->graph, "%s '%s': %s %s: %s", usi_op_name(t->op),
                       where, an, sa, why);
    }
    return NULL;
}

int usi_broadcast_shape(int32_t an, const int64_t *as, int32_t bn,
                        const int64_t *bs, int32_t *on, int64_t *os)
{
    int32_t n = an > bn ? an : bn;
    for (int32_t i = 0; i < n; i++) {
        int64_t a = i < n - an ? 1 : as[i - (n - an)];
        int64_t b = i < n - bn ? 1 : bs[i - (n - bn)];
        if (a != b && a != 1 && b != 1) return 0;
        os[i] = a == 1 ? b : a;
    }
    *on = n;
    return 1;
}
