/* Placeholder until the engine lands: a table with no ops. */
#include "plugin/host.h"

const usi_graph_api *usi_graph_api_get(void)
{
    static const usi_graph_api api = {.struct_size = sizeof(usi_graph_api)};
    return &api;
}
