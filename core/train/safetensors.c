#include "train/safetensors.h"
#include "train/stop.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

struct usi_st_file {
    usi_st_tensor *tensors;
    size_t n;
    cJSON *metadata;         /* the __metadata__ object, or NULL */
    uint8_t *owned;          /* the buffer when read from a file */
};

static const struct {
    const char *name;
    int32_t dtype;
    size_t size;
} dtypes[] = {
    {"F32", USI_DTYPE_F32, 4}, {"BF16", USI_DTYPE_BF16, 2}, {"F16", USI_DTYPE_F16, 2},
    {"I32", USI_DTYPE_I32, 4}, {"I64", USI_DTYPE_I64, 8},   {"U8", USI_DTYPE_U8, 1},
};

size_t usi_dtype_size(int32_t dtype)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (dtypes[i].dtype == dtype) return dtypes[i].size;
    return 0;
}

const char *usi_dtype_name(int32_t dtype)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (dtypes[i].dtype == dtype) return dtypes[i].name;
    return "?";
}

static int dtype_from_name(const char *s, int32_t *dtype)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (strcmp(dtypes[i].name, s) == 0) {
            *dtype = dtypes[i].dtype;
            return 1;
        }
    return 0;
}

/* A JSON number that is a whole number in [0, 2^53]. */
static int get_count(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= 9007199254740992.0) || floor(v) != v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static usi_error *parse_tensor(const cJSON *entry, const uint8_t *data, size_t data_len,
                               const char *label, usi_st_tensor *t)
{
    const char *name = entry->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsObject(entry) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return usi_error_new(USI_ERR_INVALID,
                             "%s: tensor '%s' needs \"dtype\", \"shape\" and \"data_offsets\"", label, name);
    if (!dtype_from_name(dt->valuestring, &t->dtype))
        return usi_error_new(USI_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported dtype '%s'",
                             label, name, dt->valuestring);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > USI_ST_MAX_DIMS)
        return usi_error_new(USI_ERR_INVALID, "%s: tensor '%s' has %d dims (at most %d)", label, name,
                             ndim, USI_ST_MAX_DIMS);
    t->ndim = ndim;
    uint64_t bytes = usi_dtype_size(t->dtype);
    for (int d = 0; d < ndim; d++) {
        uint64_t v;
        if (!get_count(cJSON_GetArrayItem(shape, d), &v))
            return usi_error_new(USI_ERR_INVALID, "%s: tensor '%s' dim %d is not a size", label, name, d);
        if (v && bytes > UINT64_MAX / v)
            return usi_error_new(USI_ERR_INVALID, "%s: tensor '%s' is too large", label, name);
        bytes *= v;
        t->shape[d] = (int64_t)v;
    }
    uint64_t begin, end;
    if (cJSON_GetArraySize(offs) != 2 || !get_count(cJSON_GetArrayItem(offs, 0), &begin) ||
        !get_count(cJSON_GetArrayItem(offs, 1), &end) || begin > end)
        return usi_error_new(USI_ERR_INVALID, "%s: tensor '%s' has bad data_offsets", label, name);
    if (end > data_len)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: tensor '%s' data [%llu, %llu) runs past the end of the data (%zu bytes); "
                             "the file is truncated or corrupt",
                             label, name, (unsigned long long)begin, (unsigned long long)end, data_len);
    if (end - begin != bytes)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: tensor '%s' holds %llu bytes but its dtype and shape need %llu",
                             label, name, (unsigned long long)(end - begin), (unsigned long long)bytes);
    t->data = data + begin;
    t->nbytes = (size_t)bytes;
    t->name = strdup(name);
    if (!t->name) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    return NULL;
}

static int cmp_by_data(const void *a, const void *b)
{
    const usi_st_tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

usi_error *usi_st_parse(const uint8_t *buf, size_t len, const char *label, usi_st_file **out)
{
    *out = NULL;
    if (len < 8)
        return usi_error_new(USI_ERR_INVALID, "%s: %zu bytes is too short for a safetensors file", label, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > len - 8)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: header length %llu runs past the end of the file (%zu bytes); "
                             "the file is truncated or not safetensors",
                             label, (unsigned long long)hlen, len);
    if (hlen > USI_ST_MAX_HEADER)
        return usi_error_new(USI_ERR_INVALID, "%s: header of %llu bytes is larger than %u", label,
                             (unsigned long long)hlen, USI_ST_MAX_HEADER);
    cJSON *root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return usi_error_new(USI_ERR_INVALID, "%s: the header is not a JSON object", label);
    }
    usi_st_file *f = calloc(1, sizeof *f);
    int n = cJSON_GetArraySize(root);
    if (f) f->tensors = calloc(n > 0 ? (size_t)n : 1, sizeof *f->tensors);
    if (!f || !f->tensors) {
        cJSON_Delete(root);
        free(f);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    const uint8_t *data = buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    usi_error *e = NULL;
    for (const cJSON *it = root->child; it && !e; it = it->next) {
        if (!it->string) {
            e = usi_error_new(USI_ERR_INVALID, "%s: header entry without a name", label);
        } else if (strcmp(it->string, "__metadata__") == 0) {
            for (const cJSON *m = it->child; m && !e; m = m->next)
                if (!cJSON_IsString(m))
                    e = usi_error_new(USI_ERR_INVALID, "%s: __metadata__ values must be strings", label);
            if (!e && !cJSON_IsObject(it))
                e = usi_error_new(USI_ERR_INVALID, "%s: __metadata__ is not an object", label);
            if (!e && !f->metadata) f->metadata = cJSON_Duplicate(it, 1);
        } else {
            if (usi_st_find(f, it->string))
                e = usi_error_new(USI_ERR_INVALID, "%s: tensor '%s' appears twice", label, it->string);
            else
                e = parse_tensor(it, data, data_len, label, &f->tensors[f->n]);
            if (!e) f->n++;
        }
    }
    cJSON_Delete(root);
    if (!e) {
        /* Tensors must not share bytes. */
        usi_st_tensor *sorted = malloc((f->n ? f->n : 1) * sizeof *sorted);
        if (!sorted) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
        else {
            memcpy(sorted, f->tensors, f->n * sizeof *sorted);
            qsort(sorted, f->n, sizeof *sorted, cmp_by_data);
            for (size_t i = 1; i < f->n && !e; i++)
                if ((const uint8_t *)sorted[i - 1].data + sorted[i - 1].nbytes > (const uint8_t *)sorted[i].data)
                    e = usi_error_new(USI_ERR_INVALID, "%s: tensors '%s' and '%s' overlap", label,
                                      sorted[i - 1].name, sorted[i].name);
            free(sorted);
        }
    }
    if (e) {
        usi_st_free(f);
        return e;
    }
    *out = f;
    return NULL;
}

usi_error *usi_st_read_metadata(const char *path, usi_st_file **out)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return usi_error_new(USI_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    uint8_t len8[8];
    uint64_t hlen = 0;
    usi_error *e = NULL;
    if (fread(len8, 1, 8, fp) != 8) e = usi_error_new(USI_ERR_INVALID, "%s is too short for a safetensors file", path);
    for (int i = 7; !e && i >= 0; i--) hlen = (hlen << 8) | len8[i];
    if (!e && hlen > USI_ST_MAX_HEADER)
        e = usi_error_new(USI_ERR_INVALID, "%s: header of %llu bytes is larger than %u; is it safetensors?", path,
                          (unsigned long long)hlen, USI_ST_MAX_HEADER);
    char *text = e ? NULL : malloc((size_t)hlen + 1);
    if (!e && !text) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (!e && fread(text, 1, (size_t)hlen, fp) != hlen)
        e = usi_error_new(USI_ERR_INVALID, "%s: the header runs past the end of the file", path);
    fclose(fp);
    cJSON *root = e ? NULL : cJSON_ParseWithLength(text, (size_t)hlen);
    free(text);
    if (!e && !cJSON_IsObject(root)) e = usi_error_new(USI_ERR_INVALID, "%s: the header is not a JSON object", path);
    usi_st_file *f = e ? NULL : calloc(1, sizeof *f);
    if (!e && !f) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    const cJSON *meta = e ? NULL : cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (cJSON_IsObject(meta)) f->metadata = cJSON_Duplicate(meta, 1);
    cJSON_Delete(root);
    if (e) return e;
    *out = f;
    return NULL;
}

usi_error *usi_st_read(const char *path, usi_st_file **out)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return usi_error_new(USI_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return usi_error_new(USI_ERR_IO, "%s is not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(fp);
        return usi_error_new(USI_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, len);
    }
    size_t got = fread(buf, 1, len, fp);
    int err = ferror(fp);
    fclose(fp);
    if (err || got != len) {
        free(buf);
        return usi_error_new(USI_ERR_IO, "cannot read %s: short read", path);
    }
    usi_error *e = usi_st_parse(buf, len, path, out);
    if (e) {
        free(buf);
        return e;
    }
    (*out)->owned = buf;
    return NULL;
}

void usi_st_free(usi_st_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    cJSON_Delete(f->metadata);
    free(f->owned);
    free(f);
}

size_t usi_st_count(const usi_st_file *f) { return f->n; }
const usi_st_tensor *usi_st_at(const usi_st_file *f, size_t i) { return i < f->n ? &f->tensors[i] : NULL; }

const usi_st_tensor *usi_st_find(const usi_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *usi_st_metadata(const usi_st_file *f, const char *key)
{
    const cJSON *v = f->metadata ? cJSON_GetObjectItemCaseSensitive(f->metadata, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- writing ---- */

typedef struct entry {
    char *name;
    int32_t dtype, ndim;
    int64_t shape[USI_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} entry;

struct usi_st_writer {
    entry *entries;
    size_t n;
    cJSON *metadata;
    void **owned;          /* host copies made with usi_st_writer_alloc */
    size_t n_owned;
};

void *usi_st_writer_alloc(usi_st_writer *w, size_t bytes)
{
    void **grown = realloc(w->owned, (w->n_owned + 1) * sizeof *grown);
    if (!grown) return NULL;
    w->owned = grown;
    void *p = malloc(bytes ? bytes : 1);
    if (p) w->owned[w->n_owned++] = p;
    return p;
}

usi_st_writer *usi_st_writer_new(void)
{
    usi_st_writer *w = calloc(1, sizeof *w);
    if (w) w->metadata = cJSON_CreateObject();
    if (w && !w->metadata) {
        free(w);
        return NULL;
    }
    return w;
}

void usi_st_writer_free(usi_st_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->entries[i].name);
    for (size_t i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    free(w->entries);
    cJSON_Delete(w->metadata);
    free(w);
}

usi_error *usi_st_writer_add(usi_st_writer *w, const char *name, int32_t dtype, int32_t ndim,
                             const int64_t *shape, const void *data)
{
    if (!usi_dtype_size(dtype) || ndim < 0 || ndim > USI_ST_MAX_DIMS || !strcmp(name, "__metadata__"))
        return usi_error_new(USI_ERR_INVALID, "safetensors: cannot store '%s' (dtype %d, %d dims)",
                             name, (int)dtype, (int)ndim);
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->entries[i].name, name))
            return usi_error_new(USI_ERR_INVALID, "safetensors: tensor '%s' added twice", name);
    entry *grown = realloc(w->entries, (w->n + 1) * sizeof *grown);
    if (!grown) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    w->entries = grown;
    entry *e = &w->entries[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    e->nbytes = usi_dtype_size(dtype);
    for (int32_t d = 0; d < ndim; d++) {
        e->shape[d] = shape[d];
        e->nbytes *= (size_t)shape[d];
    }
    e->data = data;
    w->n++;
    return NULL;
}

usi_error *usi_st_writer_meta(usi_st_writer *w, const char *key, const char *value)
{
    cJSON_DeleteItemFromObjectCaseSensitive(w->metadata, key);
    if (!cJSON_AddStringToObject(w->metadata, key, value))
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    return NULL;
}

static char *header_json(const usi_st_writer *w, size_t *padded_len)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    if (cJSON_GetArraySize(w->metadata) > 0)
        cJSON_AddItemToObject(root, "__metadata__", cJSON_Duplicate(w->metadata, 1));
    size_t offset = 0;
    for (size_t i = 0; i < w->n; i++) {
        const entry *e = &w->entries[i];
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "dtype", usi_dtype_name(e->dtype));
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int32_t d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + e->nbytes)));
        offset += e->nbytes;
        cJSON_AddItemToObject(root, e->name, t);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return NULL;
    /* Pad with spaces so the data starts 8-byte aligned. */
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + len, ' ', padded - len);
    out[padded] = 0;
    *padded_len = padded;
    return out;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Remove the NAME.safetensors.tmp-PID files beside path whose writer no
 * longer runs: a writer killed with SIGKILL (or a crash) leaves its
 * temporary file, and a run killed and resumed many times would pile them
 * up, each as large as a checkpoint. Done before writing, so a full disk
 * gets that space back first. Only this host's processes are known; an
 * output folder has one writer (rank 0), not several machines at once. */
static void remove_stale_temps(const char *path)
{
    char *d = strdup(path);
    const char *dname = d ? dirname(d) : ".";
    DIR *dir = d ? opendir(dname) : NULL;
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        const char *tag = strstr(de->d_name, ".safetensors.tmp-");
        if (!tag) continue;
        char *end;
        long pid = strtol(tag + strlen(".safetensors.tmp-"), &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", dname, de->d_name);
        unlink(full);
    }
    if (dir) closedir(dir);
    free(d);
}

usi_error *usi_st_writer_save(const usi_st_writer *w, const char *path)
{
    remove_stale_temps(path);
    size_t hlen;
    char *header = header_json(w, &hlen);
    if (!header) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    usi_stop_temp_begin(tmp); /* a second Ctrl-C removes it (stop.c) */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno;
        usi_stop_temp_end();
        free(header);
        return usi_error_new(USI_ERR_IO, "cannot write %s: %s%s", path, strerror(err),
                             access(path, F_OK) == 0 ? "; the previous file is untouched" : "");
    }
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int rc = write_all(fd, len_le, 8);
    if (!rc) rc = write_all(fd, header, hlen);
    for (size_t i = 0; !rc && i < w->n; i++) rc = write_all(fd, w->entries[i].data, w->entries[i].nbytes);
    int err = rc ? errno : 0;
    if (!rc && fsync(fd) != 0) {
        rc = -1;
        err = errno;
    }
    if (close(fd) != 0 && !rc) {
        rc = -1;
        err = errno;
    }
    free(header);
    if (!rc && rename(tmp, path) != 0) {
        rc = -1;
        err = errno;
    }
    if (rc) unlink(tmp);
    usi_stop_temp_end();
    if (rc) {
        return usi_error_new(USI_ERR_IO, "cannot write %s: %s%s", path, strerror(err ? err : EIO),
                             access(path, F_OK) == 0 ? "; the previous file is untouched" : "");
    }
    /* Make the rename itself durable. */
    char *dir_copy = strdup(path);
    if (dir_copy) {
        int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir_copy);
    }
    return NULL;
}

usi_error *usi_st_merge(const char *out, size_t n, const char *const *inputs, const char *const *prefixes)
{
    if (n == 0) return usi_error_new(USI_ERR_INVALID, "safetensors merge: no input files");
    usi_st_file **files = calloc(n, sizeof *files);
    usi_st_writer *w = usi_st_writer_new();
    usi_error *e = NULL;
    if (!files || !w) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    /* Every input stays in memory until the write: the writer reads the
     * tensors' data from the inputs' buffers only when it saves. */
    for (size_t i = 0; !e && i < n; i++) {
        e = usi_st_read(inputs[i], &files[i]);
        for (size_t k = 0; !e && k < usi_st_count(files[i]); k++) {
            const usi_st_tensor *t = usi_st_at(files[i], k);
            size_t len = strlen(prefixes[i]) + strlen(t->name) + 1;
            char *name = malloc(len);
            if (!name) {
                e = usi_error_new(USI_ERR_NOMEM, "out of memory");
                break;
            }
            snprintf(name, len, "%s%s", prefixes[i], t->name);
            e = usi_st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data);
            free(name);
            /* Two inputs with one prefix (or prefixes like "a" and "a.b")
             * would collide; name the file that brought the second copy. */
            if (e) e = usi_error_prefix(e, "%s: ", inputs[i]);
        }
    }
    if (!e) e = usi_st_writer_meta(w, "format", "pt");
    if (!e) e = usi_st_writer_save(w, out);
    usi_st_writer_free(w);
    for (size_t i = 0; files && i < n; i++) usi_st_free(files[i]);
    free(files);
    return e;
}
