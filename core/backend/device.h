/* Devices as the rest of the core sees them: a name, and memory reached only
 * through explicit calls. A usi_dbuf is a block of device memory; its address
 * is never handed out here, so no host code can dereference it by mistake
 * (the cpu-guarded device makes sure: its memory is unmapped outside backend
 * calls). Offsets and sizes are in bytes unless a name says elements.
 *
 *     usi_device *dev;  usi_device_open("cpu", &dev);
 *     usi_dbuf *b;      usi_dbuf_new(dev, bytes, &b);
 *     usi_dbuf_write(b, 0, host, bytes);  usi_dbuf_read(b, 0, host, bytes);
 */
#ifndef USI_CORE_DEVICE_H
#define USI_CORE_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

typedef struct usi_device usi_device;
typedef struct usi_dbuf usi_dbuf;
typedef struct usi_optim_hp usi_optim_hp;
typedef struct usi_optim_seg usi_optim_seg;

/* "cpu", "cpu-guarded", "cuda" (= "cuda:0") or "cuda:N". Devices are made
 * once per process and live until exit; an unknown name lists the valid ones,
 * a device this build or machine lacks says what is missing. */
usi_error *usi_device_open(const char *name, usi_device **out);
/* The names a config may give, for messages: "cpu, cpu-guarded, cuda, cuda:N". */
const char *usi_device_names(void);
/* 1 when name is one of them (whether or not this build can open it). */
int32_t usi_device_name_valid(const char *name);
/* 1 when this build has a backend for name (cuda: compiled in). */
int32_t usi_device_available(const char *name);
/* 1 when the device called name computes in bf16 under precision "mixed". */
int32_t usi_device_name_has_bf16(const char *name);
const char *usi_device_name(const usi_device *d);
/* 1 when the device computes conv/linear/matmul in bf16 under "mixed". */
int32_t usi_device_has_bf16(const usi_device *d);
/* Precision "mixed" on d for the graphs compiled after this call: conv,
 * linear and matmul take bf16 copies of their operands and compute with
 * fp32 accumulation into fp32 results; every tensor, parameter and gradient
 * stays fp32 (master weights, norms, softmax and losses in fp32). An error
 * on a device without a bf16 path. */
usi_error *usi_device_set_mixed(usi_device *d, int32_t on);
int32_t usi_device_mixed(const usi_device *d);
usi_error *usi_device_synchronize(usi_device *d);
/* The CPU device, always available (tests, host-side tools). */
usi_device *usi_device_cpu(void);

/* Threads for host-side kernels run from the calling thread (OpenMP's
 * per-thread setting, which oneDNN follows too); n <= 0 means one per core.
 * On cores shared with other busy processes, OMP_WAIT_POLICY=passive in the
 * environment avoids threads spinning against each other (2-3x there). */
void usi_device_set_threads(int32_t n);
int32_t usi_device_threads(void);

/* Zero-filled device memory. */
usi_error *usi_dbuf_new(usi_device *d, size_t bytes, usi_dbuf **out);
void usi_dbuf_free(usi_dbuf *b);
size_t usi_dbuf_bytes(const usi_dbuf *b);
usi_device *usi_dbuf_device(const usi_dbuf *b);
usi_error *usi_dbuf_write(usi_dbuf *b, size_t off, const void *host, size_t bytes);
usi_error *usi_dbuf_read(const usi_dbuf *b, size_t off, void *host, size_t bytes);
/* Between two blocks of the same device, or through the host otherwise. */
usi_error *usi_dbuf_copy(usi_dbuf *dst, size_t dst_off, const usi_dbuf *src, size_t src_off,
                         size_t bytes);
usi_error *usi_dbuf_fill(usi_dbuf *b, size_t off, int byte, size_t bytes);

/* Training-step kernels on float blocks of one device; offsets and counts in
 * elements. Segments index w, g and the states alike. */
usi_error *usi_dbuf_optim_step(const usi_optim_hp *hp, int64_t step, usi_dbuf *w, const usi_dbuf *g,
                               usi_dbuf *s0, usi_dbuf *s1, const usi_optim_seg *segs, int32_t n_segs);
/* ema[eo..] = decay*ema + (1-decay)*w[wo..], n floats. */
usi_error *usi_dbuf_ema(usi_dbuf *ema, size_t ema_off, const usi_dbuf *w, size_t w_off, size_t n,
                        double decay);
/* Sum of squares of n floats from off (NaN or inf when any is). */
usi_error *usi_dbuf_sum_squares(const usi_dbuf *x, size_t off, size_t n, double *out);
usi_error *usi_dbuf_scale(usi_dbuf *x, size_t off, size_t n, double s);

/* Host memory that uploads to d read fastest (pinned on a GPU, plain
 * memory elsewhere or when pinned memory runs out), 64-byte aligned. */
void *usi_device_host_alloc(usi_device *d, size_t bytes);
void usi_device_host_free(usi_device *d, void *p, size_t bytes);

/* Input staging: device buffers a second thread fills from host memory
 * while the device computes (on a GPU, on a copy stream of their own), then
 * moved into place on the compute queue. *out is NULL, without an error,
 * on a device whose memory the host writes directly (cpu): write there.
 *
 *   loader thread:  usi_stage_put(s, slot, 0, host, bytes);   (returns when host may be reused)
 *   training step:  usi_stage_take(s, slot, 0, dst, dst_off, bytes);
 *
 * A put into a slot waits for the device to finish that slot's last take. */
typedef struct usi_stage usi_stage;
int32_t usi_device_has_stages(const usi_device *d);
usi_error *usi_stage_new(usi_device *d, int32_t slots, size_t bytes, usi_stage **out);
void usi_stage_free(usi_stage *s);
usi_error *usi_stage_put(usi_stage *s, int32_t slot, size_t off, const void *host, size_t bytes);
usi_error *usi_stage_take(usi_stage *s, int32_t slot, size_t off, usi_dbuf *dst, size_t dst_off, size_t bytes);

/* dst (floats [n, 3, h, w] from byte dst_off) = (src / 255 - mean[c]) /
 * std[c], src uint8 [n, h, w, 3] from byte src_off: the loader's
 * normalisation (usi_u8_to_float_nchw) on the device, to the bit. */
usi_error *usi_dbuf_u8_normalize(usi_dbuf *dst, size_t dst_off, const usi_dbuf *src, size_t src_off, int32_t n,
                                 int32_t h, int32_t w, const float mean[3], const float std[3]);

/* The teacher's input conversion on host memory, for engine teachers that
 * run on host tensor views: the same kernel as the cpu device's
 * (usi_backend.image_convert). */
void usi_image_convert_host(float *dst, const float *src, int32_t n, int32_t c, int32_t h, int32_t w, int32_t oh,
                            int32_t ow, int32_t interp, const float *a, const float *b);

#endif
