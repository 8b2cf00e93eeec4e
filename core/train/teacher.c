#include "train/teacher.h"

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "graph/graph.h"
#include "plugin/call.h"
#include "plugin/crash.h"
#include "plugin/host.h"
#include "plugin/params.h"
#include "train/safetensors.h"
#include "train/setup.h"
#include "train/weights.h"
#include "util/error.h"
#include "util/log.h"

struct usi_teacher_rt {
    const usi_component *comp;
    const usi_teacher_ops *ops;
    void *inst;
    usi_teacher_spec spec;
    int32_t batch, side, num_classes;
    usi_device *dev;
    usi_graph *g;            /* graph teachers, on the run's device */
    usi_tensor *x, *logits;
    float *buf;              /* engine teachers: converted input (host) */
    float *images;           /* engine teachers: the student's images (host) */
    float *out;              /* engine teachers: logits (host) */
    int32_t n_out;           /* rows of the last forward */
};

static usi_error *read_weights(usi_teacher_rt *t, usi_st_file **f)
{
    if (!t->spec.weights || !*t->spec.weights)
        return usi_error_new(USI_ERR_INVALID,
                             "teacher '%s' names no weights file; set teacher.weights to a safetensors file "
                             "(e.g. the best.safetensors of an earlier `usi train`)", t->comp->name);
    return usi_st_read(t->spec.weights, f);
}

static usi_error *build_graph(usi_teacher_rt *t, const usi_st_file *f, uint64_t seed)
{
    t->g = usi_graph_new(t->dev, 0, seed);
    if (!t->g) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    /* A backbone the teacher wraps is built as the file was trained. */
    const char *name = usi_st_metadata(f, "backbone"), *opts = usi_st_metadata(f, "backbone_options");
    if (name && opts && usi_graph_set_backbone_defaults(t->g, name, opts))
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    int64_t shape[4] = {t->batch, 3, t->side, t->side};
    t->x = usi_graph_input(t->g, "teacher_images", USI_DTYPE_F32, 4, shape);
    /* A grey network's file (in_chans 1) reads the images' luma, as the
     * student of such a run does (usi_setup_student_node), in the teacher's
     * own normalisation. */
    usi_tensor *x = t->x;
    char *chans = opts ? usi_config_text_value(opts, "in_chans") : NULL;
    if (chans && !strcmp(chans, "1")) {
        double mean[3], std[3];
        for (int k = 0; k < 3; k++) {
            mean[k] = t->spec.mean[k];
            std[k] = t->spec.std[k];
        }
        usi_student_input grey;
        usi_student_input_grey(mean, std, &grey);
        x = usi_setup_student_node(t->g, t->x, &grey);
    }
    free(chans);
    usi_crash_enter_code(USI_CRASH_CODE(t->ops->build), "building teacher", t->comp->name);
    usi_error *e = usi_graph_build(t->g, t->ops->build, t->inst, x, &t->logits);
    usi_crash_leave();
    USI_TRY(e);
    const usi_graph_api *G = usi_graph_api_get();
    if (G->ndim(t->logits) != 2 || G->dim(t->logits, 1) != t->num_classes)
        return usi_error_new(USI_ERR_INVALID, "teacher '%s' gives %lld outputs per image, the data has %d classes",
                             t->comp->name, (long long)G->dim(t->logits, 1), t->num_classes);
    usi_graph_mark_output(t->logits);
    usi_graph_set_frozen(t->g, "", 1);
    USI_TRY(usi_graph_compile(t->g));
    return usi_weights_load(t->g, f, "", 1, t->spec.weights);
}

static usi_error *open_graph(usi_teacher_rt *t, uint64_t seed)
{
    usi_st_file *f;
    USI_TRY(read_weights(t, &f));
    usi_error *e = build_graph(t, f, seed);
    usi_st_free(f);
    return e;
}

usi_error *usi_teacher_open(const usi_component *comp, const usi_params *params, usi_device *dev, int32_t batch,
                            int32_t num_classes, int32_t student_size, uint64_t seed, usi_teacher_rt **out)
{
    *out = NULL;
    usi_teacher_rt *t = calloc(1, sizeof *t);
    if (!t) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    t->dev = dev;
    t->comp = comp;
    t->ops = t->comp->ops;
    t->batch = batch;
    t->num_classes = num_classes;
    usi_error *e = usi_call_create(t->comp, params, &t->inst);
    if (!e) {
        t->spec.struct_size = sizeof t->spec;
        usi_crash_enter_code(USI_CRASH_CODE(t->ops->spec), "reading the spec of teacher", t->comp->name);
        e = t->ops->spec(t->inst, &t->spec);
        usi_crash_leave();
    }
    if (!e && t->spec.num_classes && t->spec.num_classes != num_classes)
        e = usi_error_new(USI_ERR_INVALID,
                          "teacher '%s' predicts %d classes but the data has %d; "
                          "a teacher must be trained on the same classes",
                          t->comp->name, t->spec.num_classes, num_classes);
    if (!e) {
        t->side = t->spec.img_size > 0 ? t->spec.img_size : student_size;
        for (int c = 0; c < 3; c++)
            if (!(t->spec.std[c] > 0)) e = usi_error_new(USI_ERR_INVALID, "teacher '%s' declares std <= 0", t->comp->name);
        if (!e && (t->spec.interpolation < USI_INTERP_NEAREST || t->spec.interpolation > USI_INTERP_BICUBIC))
            e = usi_error_new(USI_ERR_INVALID, "teacher '%s' declares interpolation %d (nearest 0, bilinear 1, "
                              "bicubic 2)", t->comp->name, t->spec.interpolation);
    }
    if (!e && t->ops->build) e = open_graph(t, seed);
    if (!e && !t->ops->build) {
        size_t side = (size_t)(student_size > t->side ? student_size : t->side);
        t->buf = malloc(sizeof(float) * (size_t)batch * 3 * (size_t)t->side * (size_t)t->side);
        t->images = malloc(sizeof(float) * (size_t)batch * 3 * side * side);
        t->out = malloc(sizeof(float) * (size_t)batch * (size_t)num_classes);
        if (!t->buf || !t->images || !t->out) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    if (e) {
        usi_teacher_free(t);
        return usi_error_prefix(e, "teacher: ");
    }
    *out = t;
    return NULL;
}

void usi_teacher_free(usi_teacher_rt *t)
{
    if (!t) return;
    usi_graph_free(t->g);
    if (t->inst) usi_call_destroy(t->comp, t->inst);
    free(t->buf);
    free(t->images);
    free(t->out);
    free(t);
}

const usi_teacher_spec *usi_teacher_get_spec(const usi_teacher_rt *t) { return &t->spec; }

/* The student's normalisation into the teacher's: x_t = a*x_s + b. */
static void norm_factors(const usi_teacher_rt *t, const float mean_s[3], const float std_s[3], float a[3],
                         float b[3])
{
    for (int c = 0; c < 3; c++) {
        a[c] = std_s[c] / t->spec.std[c];
        b[c] = (mean_s[c] - t->spec.mean[c]) / t->spec.std[c];
    }
}

/* Engine teachers run on host tensor views: convert on the host. */
static usi_error *engine_forward(usi_teacher_rt *t, const usi_tensor *images, int32_t n, const float a[3],
                                 const float b[3])
{
    const usi_graph_api *G = usi_graph_api_get();
    int32_t h = (int32_t)G->dim(images, 2), w = (int32_t)G->dim(images, 3);
    size_t plane = (size_t)h * (size_t)w, tplane = (size_t)t->side * (size_t)t->side;
    USI_TRY(usi_graph_read_part(images, t->images, sizeof(float) * 3 * plane * (size_t)n));
    usi_image_convert_host(t->buf, t->images, n, 3, h, w, t->side, t->side, t->spec.interpolation, a, b);
    usi_tensor_view in = {sizeof in, USI_DTYPE_F32, 0, 4, 0, {n, 3, t->side, t->side}, {0}, t->buf};
    in.strides[3] = 1;
    in.strides[2] = t->side;
    in.strides[1] = (int64_t)tplane;
    in.strides[0] = 3 * (int64_t)tplane;
    usi_tensor_view out = {sizeof out, USI_DTYPE_F32, 0, 2, 0, {n, t->num_classes}, {t->num_classes, 1}, t->out};
    usi_crash_enter_code(USI_CRASH_CODE(t->ops->forward), "running teacher", t->comp->name);
    usi_error *e = t->ops->forward(t->inst, &in, &out);
    usi_crash_leave();
    return e;
}

usi_error *usi_teacher_forward(usi_teacher_rt *t, const usi_tensor *images, int32_t n, const float mean_s[3],
                               const float std_s[3])
{
    if (n > t->batch) return usi_error_new(USI_ERR_INTERNAL, "teacher batch %d > %d", n, t->batch);
    float a[3], b[3];
    norm_factors(t, mean_s, std_s, a, b);
    t->n_out = n;
    if (!t->g) return engine_forward(t, images, n, a, b);
    /* Rows past n keep old data; their outputs are ignored. */
    USI_TRY(usi_graph_convert_images(t->x, images, n, t->spec.interpolation, a, b));
    return usi_graph_forward(t->g);
}

usi_error *usi_teacher_logits_to(usi_teacher_rt *t, usi_tensor *dst)
{
    size_t bytes = sizeof(float) * (size_t)t->n_out * (size_t)t->num_classes;
    return t->g ? usi_graph_copy_value(dst, t->logits, bytes) : usi_graph_write_part(dst, t->out, bytes);
}

usi_error *usi_teacher_read_logits(usi_teacher_rt *t, float *logits)
{
    size_t bytes = sizeof(float) * (size_t)t->n_out * (size_t)t->num_classes;
    if (!t->g) {
        memcpy(logits, t->out, bytes);
        return NULL;
    }
    return usi_graph_read_part(t->logits, logits, bytes);
}
