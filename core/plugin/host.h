/* The service table the core hands every plugin. */
#ifndef USI_CORE_HOST_H
#define USI_CORE_HOST_H

#include <usi/plugin.h>

/* The host's table, filled once; valid for the life of the process. */
const usi_host_api *usi_host_api_get(void);

/* The graph builder the engine provides (core/graph). */
const usi_graph_api *usi_graph_api_get(void);

#endif
