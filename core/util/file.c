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

usi_error *usi_check_out_file(const char *what, const char *path)
{
    struct stat st;
    if (!*path) return usi_error_new(USI_ERR_INVALID, "%s is empty; give a file name", what);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return usi_error_new(USI_ERR_INVALID, "%s %s is a folder; give the name of a file (in it, or elsewhere)",
                             what, path);
    char *dir = strdup(path);
    if (!dir) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    usi_error *e = NULL;
    if (stat(dir, &st) != 0)
        e = usi_error_new(USI_ERR_IO, "%s %s: the folder %s: %s; create it or write elsewhere", what, path, dir,
                          strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        e = usi_error_new(USI_ERR_IO, "%s %s: %s is not a folder", what, path, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        e = usi_error_new(USI_ERR_IO, "%s %s: cannot write in %s: %s", what, path, dir, strerror(errno));
    free(dir);
    return e;
}
