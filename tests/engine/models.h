/* Reference networks recorded through the plugin builder table, for tests
 * and benchmarks: ResNet-18/50 (timm names) and a MobileNetV3-Large-like
 * net, plus a small convnet. */
#ifndef USI_TESTS_ENGINE_MODELS_H
#define USI_TESTS_ENGINE_MODELS_H

#include <usi/plugin.h>

/* depth: 18 or 50. */
usi_tensor *model_resnet(usi_graph *g, usi_tensor *x, int depth, int num_classes);
usi_tensor *model_mobilenetv3_large(usi_graph *g, usi_tensor *x, int num_classes);
/* For 1x28x28 inputs: (conv-bn-relu, max pool) x2,
 * conv-bn-relu, flatten, linear. */
usi_tensor *model_small_convnet(usi_graph *g, usi_tensor *x, int width, int num_classes);

/* Forward multiply-adds x2 of the convs and linears recorded so far. */
double model_forward_flops(const usi_graph *g);

#endif
