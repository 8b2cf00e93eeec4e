#include "util/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

usi_error *usi_file_write_atomic(const char *path, const void *data, size_t len)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        usi_error *e = usi_error_new(USI_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        free(tmp);
        return e;
    }
    int err = 0;
    if (len && fwrite(data, 1, len, f) != len) err = errno ? errno : EIO;
    if (fflush(f) != 0 && !err) err = errno;
    if (fsync(fileno(f)) != 0 && !err) err = errno;
    if (fclose(f) != 0 && !err) err = errno;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) unlink(tmp);
    free(tmp);
    return err ? usi_error_new(USI_ERR_IO, "cannot write %s: %s", path, strerror(err)) : NULL;
}

usi_error *usi_mkdirs(const char *dir)
{
    char *buf = strdup(dir);
    if (!buf) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = NULL;
    for (char *p = buf + 1; !e; p++) {
        if (*p != '/' && *p) continue;
        char saved = *p;
        *p = 0;
        struct stat st;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            e = usi_error_new(USI_ERR_IO, "cannot create folder %s: %s", buf, strerror(errno));
        else if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
            e = usi_error_new(USI_ERR_IO, "cannot create folder %s: a file of that name is in the way", buf);
        *p = saved;
        if (!saved) break;
    }
    free(buf);
    return e;
}
