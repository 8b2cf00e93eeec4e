#include "plugin/origin.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct origin {
    void *handle;
    const void *base;  /* dladdr's dli_fbase: where the object is mapped */
    char *path;
    uint32_t minor;
} origin;

/* Process-wide, because the graph builder has no registry: every registry
 * adds its plugins here. Loads and builds are rare; a mutex is plenty. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static origin *origins;
static size_t n_origins;

static const void *base_of(const void *p)
{
    Dl_info info;
    if (!p || !dladdr(p, &info)) return NULL;
    return info.dli_fbase;
}

int usi_plugin_origin_add(void *handle, const void *inside, const char *path, uint32_t minor)
{
    origin o = {handle, base_of(inside), strdup(path), minor};
    if (!o.path) return -1;
    pthread_mutex_lock(&lock);
    origin *grown = realloc(origins, (n_origins + 1) * sizeof *grown);
    if (grown) {
        origins = grown;
        origins[n_origins++] = o;
    }
    pthread_mutex_unlock(&lock);
    if (!grown) free(o.path);
    return grown ? 0 : -1;
}

void usi_plugin_origin_remove(void *handle)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_origins; i++) {
        if (origins[i].handle != handle) continue;
        free(origins[i].path);
        origins[i] = origins[--n_origins];
        break;
    }
    if (!n_origins) {
        free(origins);
        origins = NULL;
    }
    pthread_mutex_unlock(&lock);
}

int usi_plugin_origin(const void *p, uint32_t *minor, const char **path)
{
    const void *base = base_of(p);
    int found = 0;
    if (!base) return 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_origins && !found; i++) {
        if (origins[i].base != base) continue;
        *minor = origins[i].minor;
        *path = origins[i].path;
        found = 1;
    }
    pthread_mutex_unlock(&lock);
    return found;
}
