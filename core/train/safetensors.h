/* safetensors files: 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 *  "__metadata__": {"key": "string", ...}}, then the raw little-endian data.
 * Parsing trusts nothing: every length and offset is checked against the
 * buffer before use. Writing is atomic: a temporary file in the same folder,
 * fsync, rename, fsync of the folder; a failure leaves the old file whole. */
#ifndef USI_TRAIN_SAFETENSORS_H
#define USI_TRAIN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

#define USI_ST_MAX_DIMS 8
#define USI_ST_MAX_HEADER (100u << 20) /* larger headers are refused */

typedef struct usi_st_tensor {
    char *name;
    int32_t dtype;           /* USI_DTYPE_* */
    int32_t ndim;
    int64_t shape[USI_ST_MAX_DIMS];
    const void *data;        /* inside the file's buffer */
    size_t nbytes;
} usi_st_tensor;

typedef struct usi_st_file usi_st_file;

/* Parse a whole file image. `label` (a path) is used in messages. The
 * buffer must outlive the result. */
usi_error *usi_st_parse(const uint8_t *buf, size_t len, const char *label,
                        usi_st_file **out);
/* Read and parse a file. */
usi_error *usi_st_read(const char *path, usi_st_file **out);
/* Only the header's __metadata__ (no tensors): cheap for a large file. */
usi_error *usi_st_read_metadata(const char *path, usi_st_file **out);
void usi_st_free(usi_st_file *f);

size_t usi_st_count(const usi_st_file *f);
const usi_st_tensor *usi_st_at(const usi_st_file *f, size_t i);
const usi_st_tensor *usi_st_find(const usi_st_file *f, const char *name);
/* A __metadata__ value, or NULL. */
const char *usi_st_metadata(const usi_st_file *f, const char *key);

size_t usi_dtype_size(int32_t dtype);
const char *usi_dtype_name(int32_t dtype); /* "F32", ... */

/* Writer: add tensors (data is copied only when written) and metadata,
 * then write atomically. */
typedef struct usi_st_writer usi_st_writer;
usi_st_writer *usi_st_writer_new(void);
/* Host memory that lives as long as the writer (copies of device tensors
 * to add); NULL when out of memory. */
void *usi_st_writer_alloc(usi_st_writer *w, size_t bytes);
usi_error *usi_st_writer_add(usi_st_writer *w, const char *name, int32_t dtype,
                             int32_t ndim, const int64_t *shape,
                             const void *data);
usi_error *usi_st_writer_meta(usi_st_writer *w, const char *key,
                              const char *value);
usi_error *usi_st_writer_save(const usi_st_writer *w, const char *path);
void usi_st_writer_free(usi_st_writer *w);

/* Write to `out` every tensor of inputs[i] renamed prefixes[i] + name, for
 * i < n (the `ensemble` teacher loads member i from prefix "m<i>."). Tensor
 * data is copied byte for byte; a name that two inputs would both produce is
 * refused. The write is atomic like usi_st_writer_save. */
usi_error *usi_st_merge(const char *out, size_t n, const char *const *inputs,
                        const char *const *prefixes);

#endif
