/* One training step, on the run's device:
 *   upload batch -> teacher (converted input, forward, logits) -> student
 *   forward (with dist.sync_bn, batch norms sum their statistics over
 *   ranks) -> loss check -> backward (buckets of gradients start their
 *   all-reduce as backward finishes them) -> gradient reduction hook ->
 *   loss, batch count and stop flag summed over ranks -> mean gradient ->
 *   norm (finite check) -> clip -> optimizer -> EMA -> zero grad.
 * The host reads two scalars per step: the loss and the gradient norm. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dist/dist.h"
#include "dist/reducer.h"

#include "train/ema.h"
#include "train/input.h"
#include "train/trainer_internal.h"
#include "util/error.h"

/* Steps count from 1 here as in metrics.jsonl: t->step is the number done. */
static usi_error *not_finite(usi_trainer *t, const char *what, double v)
{
    char last[2300];
    snprintf(last, sizeof last, "%s/last.safetensors", t->out_dir);
    int have = access(last, F_OK) == 0;
    return usi_error_new(USI_ERR_INVALID,
                         "the %s is %s at step %lld (epoch %lld); stopped without saving this state. %s%s%s"
                         "Try a lower optimizer.lr or optimizer.clip_grad = 1.0",
                         what, isnan(v) ? "NaN" : "infinite", (long long)t->step + 1, (long long)t->epoch + 1,
                         have ? "The last good checkpoint is " : "No checkpoint was written yet. ",
                         have ? last : "", have ? ". " : "");
}

static usi_error *forward(usi_trainer *t, int32_t r, const usi_float_batch *fb, double *loss)
{
    USI_TRY(usi_input_write(t->inputs[r], fb, t->xs, t->targets));
    if (t->teacher) {
        USI_TRY(usi_teacher_forward(t->teacher, t->xs, t->batch, t->mean, t->std));
        USI_TRY(usi_teacher_logits_to(t->teacher, t->teacher_in));
    }
    USI_TRY(usi_graph_forward(t->gs));
    float l;
    USI_TRY(usi_graph_read(t->loss, &l));
    *loss = l;
    return isfinite(*loss) ? NULL : not_finite(t, "loss", *loss);
}

/* Optimizer, then the EMA (or, with the EMA off, a copy of the weights so
 * that "ema/" in checkpoints is always meaningful). */
static usi_error *update(usi_trainer *t, double lr)
{
    const usi_graph_blocks *b = &t->blocks;
    usi_optim_hp hp = t->hp;
    hp.lr = lr;
    hp.weight_decay = t->weight_decay;
    if (t->n_segs)
        USI_TRY(usi_dbuf_optim_step(&hp, t->step + 1, b->params, b->grads, t->opt_state[0], t->opt_state[1],
                                    t->segs, t->n_segs));
    size_t pbytes = b->n_params * sizeof(float), bbytes = b->n_f32_buffers * sizeof(float);
    if (!t->ema_on) {
        if (pbytes) USI_TRY(usi_dbuf_copy(t->ema_params, 0, b->params, 0, pbytes));
        if (bbytes) USI_TRY(usi_dbuf_copy(t->ema_buffers, 0, b->buffers, 0, bbytes));
        return NULL;
    }
    /* A network may have no buffers at all (ConvNeXt, ViT, Mixer). */
    double decay = usi_ema_decay(t->ema_decay, t->ema_warmup, t->step);
    if (b->n_params) USI_TRY(usi_dbuf_ema(t->ema_params, 0, b->params, 0, b->n_params, decay));
    return b->n_f32_buffers ? usi_dbuf_ema(t->ema_buffers, 0, b->buffers, 0, b->n_f32_buffers, decay) : NULL;
}

/* Simulated ranks: each batch's gradient from zero, averaged into
 * sim_grads as a running mean (exactly (a+b)/2 for two, as the sum over two
 * processes scaled by 1/2 is); after rank 0's batch its batch-norm
 * statistics are kept, as a distributed run keeps rank 0's. */
static usi_error *simulated(usi_trainer *t, const usi_float_batch *const *mb, int32_t n, double *loss_sum,
                            int32_t *trained)
{
    const usi_graph_blocks *b = &t->blocks;
    size_t gbytes = b->n_trainable * sizeof(float), bbytes = b->buffers ? usi_dbuf_bytes(b->buffers) : 0;
    for (int32_t r = 0; r < n; r++) {
        if (mb[r]) {
            double loss;
            usi_graph_zero_grad(t->gs);
            USI_TRY(forward(t, r, mb[r], &loss));
            USI_TRY(usi_graph_backward(t->gs));
            *loss_sum += loss;
            ++*trained;
            if (gbytes && *trained == 1) USI_TRY(usi_dbuf_copy(t->sim_grads, 0, b->grads, 0, gbytes));
            else if (gbytes)
                USI_TRY(usi_dbuf_ema(t->sim_grads, 0, b->grads, 0, b->n_trainable,
                                     (double)(*trained - 1) / (double)*trained));
        }
        if (r == 0 && bbytes) USI_TRY(usi_dbuf_copy(t->sim_buffers, 0, b->buffers, 0, bbytes));
    }
    if (bbytes) USI_TRY(usi_dbuf_copy(b->buffers, 0, t->sim_buffers, 0, bbytes));
    if (gbytes && *trained) USI_TRY(usi_dbuf_copy(b->grads, 0, t->sim_grads, 0, gbytes));
    return NULL;
}

/* A rank without a batch under dist.sync_bn: the other ranks' batch norms
 * wait for its sums, so it runs forward and backward on what its inputs
 * hold, adding nothing to them (the collective's idle flag) and starting
 * no gradient bucket; its gradients are dropped, so it reduces zeros as a
 * rank without a batch always does. */
static usi_error *idle_pass(usi_trainer *t)
{
    if (t->reducer) USI_TRY(usi_reducer_hold(t->reducer, 1));
    t->coll->idle = 1;
    usi_error *e = usi_graph_forward(t->gs);
    if (!e) e = usi_graph_backward(t->gs);
    t->coll->idle = 0;
    usi_graph_zero_grad(t->gs);
    usi_error *h = t->reducer ? usi_reducer_hold(t->reducer, 0) : NULL;
    if (!e) return h;
    usi_error_free(h);
    return e;
}

usi_error *usi_trainer_step(usi_trainer *t, const usi_float_batch *const *mb, int32_t n, int32_t want_stop,
                            usi_step_out *out)
{
    memset(out, 0, sizeof *out);
    double loss_sum = 0;
    int32_t trained = 0;
    if (n > 1) {
        USI_TRY(simulated(t, mb, n, &loss_sum, &trained));
    } else if (mb[0]) {
        USI_TRY(forward(t, 0, mb[0], &loss_sum));
        USI_TRY(usi_graph_backward(t->gs));
        trained = 1;
    } else if (t->coll) {
        USI_TRY(idle_pass(t));
    }
    const usi_graph_blocks *b = &t->blocks;
    /* Every rank reduces, a rank without a batch with zero gradients. */
    if (b->grads) USI_TRY(t->reduce(t->reduce_ctx, b->grads, b->n_trainable));
    double sums[3] = {loss_sum, trained, want_stop ? 1 : 0};
    USI_TRY(usi_dist_sum_f64(sums, 3));
    out->stop = sums[2] > 0;
    out->trained = (int32_t)sums[1];
    if (out->trained == 0) {
        usi_graph_zero_grad(t->gs);
        return NULL;
    }
    out->loss = sums[0] / sums[1];
    /* Processes summed their gradients: the mean is over those that trained
     * (simulated ranks were averaged already). */
    double mean = t->world > 1 ? 1.0 / sums[1] : 1.0;
    if (b->grads) {
        double sq;
        USI_TRY(usi_dbuf_sum_squares(b->grads, 0, b->n_trainable, &sq));
        t->grad_norm = sqrt(sq) * mean;
        if (!isfinite(t->grad_norm)) return not_finite(t, "gradient norm", t->grad_norm);
        double s = usi_clip_factor(t->grad_norm, t->clip) * mean;
        if (s != 1.0) USI_TRY(usi_dbuf_scale(b->grads, 0, b->n_trainable, s));
    }
    double lr = usi_schedule_lr(&t->sched, t->step);
    USI_TRY(update(t, lr));
    usi_graph_zero_grad(t->gs);
    t->step++;
    out->lr = lr;
    return NULL;
}
