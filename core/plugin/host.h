/* The service table the core hands every plugin. */
#ifndef USI_CORE_HOST_H
#define USI_CORE_HOST_H

#include <usi/plugin.h>

/* The host's table, filled once; valid for the life of the process. */
const usi_host_api *usi_host_api_get(void);

/* The registry build_backbone looks components up in (NULL: none). The
 * instances it makes are destroyed with the graph they were built into. */
typedef struct usi_registry usi_registry;
void usi_host_set_registry(const usi_registry *r);

/* The graph builder the engine provides (core/graph). */
const usi_graph_api *usi_graph_api_get(void);

#endif
