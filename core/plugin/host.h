/* The service table the core hands every plugin. */
#ifndef USI_CORE_HOST_H
#define USI_CORE_HOST_H

#include <usi/plugin.h>

/* The host's table, filled once; valid for the life of the process. */
const usi_host_api *usi_host_api_get(void);

/* The registry build_backbone looks components up in (NULL: none). */
typedef struct usi_registry usi_registry;
void usi_host_set_registry(const usi_registry *r);
/* Destroy the component instances build_backbone made (after the graphs
 * that use them are freed). */
void usi_host_release_instances(void);

/* The graph builder the engine provides (core/graph). */
const usi_graph_api *usi_graph_api_get(void);

#endif
