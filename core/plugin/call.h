/* The host's calls into a component's create, destroy and backbone build,
 * each inside a crash bracket (crash.h): a crash, abort() or exit() there
 * names the plugin file and what usi asked of it, and under --json what the
 * plugin prints stays off stdout. Calls made often (a teacher's forward, an
 * augmentation, a custom op's kernels) bracket themselves where they are
 * made, with usi_crash_enter_code. */
#ifndef USI_CORE_PLUGIN_CALL_H
#define USI_CORE_PLUGIN_CALL_H

#include "graph/graph.h"
#include "usi/plugin.h"

usi_error *usi_call_create(const usi_component *comp, const usi_params *params, void **inst);
void usi_call_destroy(const usi_component *comp, void *inst);
/* usi_graph_build with the backbone's build. */
usi_error *usi_call_build_backbone(usi_graph *g, const usi_component *bb, void *inst, usi_tensor *input,
                                   usi_tensor **out);

#endif
