/* A shape-only usi_graph_api for backbone tests.
 *
 * It records what a backbone's build asks for -- every param and buffer with
 * its scoped name, dtype, shape and initialiser, and how often each op is
 * used -- and infers output shapes for the ops backbones use, without any
 * data. That checks a plugin's names, shapes and counts against timm even
 * where no engine runs, and it fails on a bad shape the way a real graph
 * would: the first error is kept and every later op returns NULL. */
#ifndef USI_TESTS_SHAPE_GRAPH_H
#define USI_TESTS_SHAPE_GRAPH_H

#include <stdint.h>
#include <usi/plugin.h>

typedef struct sg_entry {
    int32_t is_param;        /* 1 param, 0 buffer                            */
    int32_t dtype;
    int32_t ndim;
    int64_t shape[USI_MAX_DIMS];
    int64_t numel;
    usi_init init;
    char name[160];
} sg_entry;

enum {                       /* ops counted by sg_op_count                   */
    SG_OP_CONV2D, SG_OP_LINEAR, SG_OP_BATCH_NORM, SG_OP_ACTIVATION, SG_OP_BINARY,
    SG_OP_POOL2D, SG_OP_REDUCE, SG_OP_DROPOUT, SG_OP_DROP_PATH, SG_OP_FLATTEN,
    SG_OP_LAYER_NORM, SG_OP_MATMUL, SG_OP_OTHER, SG_N_OPS
};

/* The table; ops a backbone should not need are NULL. */
const usi_graph_api *sg_api(void);
usi_graph *sg_new(int32_t training);
void sg_free(usi_graph *g);

usi_tensor *sg_input(usi_graph *g, int32_t ndim, const int64_t *shape);
/* Shape of t into shape[] (USI_MAX_DIMS entries); returns ndim, 0 for NULL. */
int32_t sg_shape(const usi_tensor *t, int64_t *shape);

const char *sg_error(const usi_graph *g);   /* NULL when none */
int32_t sg_count(const usi_graph *g);
const sg_entry *sg_at(const usi_graph *g, int32_t i);
int64_t sg_op_count(const usi_graph *g, int32_t op);
/* Scopes still pushed after build (should be 0). */
int32_t sg_scope_depth(const usi_graph *g);

#endif
