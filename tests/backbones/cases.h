/* The backbones both backbone tests check, with what each needs to know
 * about a model beyond its reference files (ref/<name>.txt, .logits.txt). */
#ifndef USI_TESTS_BACKBONE_CASES_H
#define USI_TESTS_BACKBONE_CASES_H

#include <stdint.h>

typedef struct bb_case {
    const char *name;
    int64_t timm_params;     /* trainable, 1000 classes: timm's count        */
    int32_t drop_paths;      /* drop_path nodes at drop_path_rate 0.2         */
    const char *classifier;  /* the classifier's weight                      */
    /* the first weight's kernel side with timm's stem and with the small one
     * (0: not checked) */
    int32_t stem_k_timm, stem_k_small;
    /* position tables: the input side must equal img_size */
    int32_t fixed_size;
    /* below this input side timm's stem leaves nothing to classify and the
     * build must fail with a message (0: every side from 28 works) */
    int32_t timm_min_side;
} bb_case;

/* drop_paths follows timm's rules: one per residual block but the first
 * (rate 0) for ResNet and ConvNeXt, two per transformer block but the first,
 * two per block for MLP-Mixer (every block gets the full rate), for the
 * EfficientNet builder one per block with a skip, for TResNet one per block
 * but the first, and for LeViT two per block and one per downsample (its
 * MLP), all at the full rate. */
static const bb_case bb_cases[] = {
    {"resnet18", 11689512, 7, "fc.weight", 7, 3, 0, 0},
    {"resnet34", 21797672, 15, "fc.weight", 7, 3, 0, 0},
    {"resnet50", 25557032, 15, "fc.weight", 7, 3, 0, 0},
    {"resnet101", 44549160, 32, "fc.weight", 7, 3, 0, 0},
    {"resnet10t", 5435488, 3, "fc.weight", 3, 3, 0, 0},
    {"resnet14t", 10081632, 3, "fc.weight", 3, 3, 0, 0},
    {"resnet26d", 16014408, 7, "fc.weight", 3, 3, 0, 0},
    {"resnext50_32x4d", 25028904, 15, "fc.weight", 7, 3, 0, 0},
    {"seresnet50", 28088024, 15, "fc.weight", 7, 3, 0, 0},
    {"mobilenetv3_small_100", 2542856, 6, "classifier.weight", 3, 3, 0, 0},
    {"mobilenetv3_large_100", 5483032, 9, "classifier.weight", 3, 3, 0, 0},
    {"mobilenetv3_small_050", 1593224, 7, "classifier.weight", 3, 3, 0, 0},
    {"mobilenetv3_large_075", 3993528, 9, "classifier.weight", 3, 3, 0, 0},
    {"efficientnet_b0", 5288548, 9, "classifier.weight", 3, 3, 0, 0},
    {"efficientnet_lite0", 4652008, 9, "classifier.weight", 3, 3, 0, 0},
    {"efficientnet_b2", 9109994, 16, "classifier.weight", 3, 3, 0, 0},
    {"convnext_atto", 3695520, 11, "head.fc.weight", 4, 4, 0, 32},
    {"convnext_tiny", 28589128, 17, "head.fc.weight", 4, 4, 0, 32},
    {"convnext_small", 50223688, 35, "head.fc.weight", 4, 4, 0, 32},
    {"convnext_femto", 5217784, 11, "head.fc.weight", 4, 4, 0, 32},
    {"convnext_nano", 15593560, 13, "head.fc.weight", 4, 4, 0, 32},
    {"deit_tiny_patch16_224", 5717416, 22, "head.weight", 16, 4, 1, 0},
    {"deit_small_patch16_224", 22050664, 22, "head.weight", 16, 4, 1, 0},
    {"vit_small_patch16_224", 22050664, 22, "head.weight", 16, 4, 1, 0},
    {"vit_base_patch16_224", 86567656, 22, "head.weight", 16, 4, 1, 0},
    {"vit_small_patch32_224", 22878952, 22, "head.weight", 32, 4, 1, 32},
    {"deit_tiny_distilled_patch16_224", 5910800, 22, "head.weight", 16, 4, 1, 0},
    {"mixer_s16_224", 18528264, 16, "head.weight", 16, 4, 1, 0},
    {"mixer_b16_224", 59880472, 24, "head.weight", 16, 4, 1, 0},
    {"mixer_s32_224", 19104624, 16, "head.weight", 32, 4, 1, 32},
    {"tresnet_m", 31389032, 20, "head.fc.weight", 3, 3, 0, 0},
    {"tresnet_l", 55989256, 29, "head.fc.weight", 3, 3, 0, 0},
    {"levit_128s", 7777058, 20, "head.linear.weight", 3, 3, 1, 0},
    {"levit_256", 18893876, 26, "head.linear.weight", 3, 3, 1, 0},
    {"levit_384", 39128836, 26, "head.linear.weight", 3, 3, 1, 0},
    {"levit_128", 9213936, 26, "head.linear.weight", 3, 3, 1, 0},
    {"levit_192", 10947069, 26, "head.linear.weight", 3, 3, 1, 0},
};
#define BB_N_CASES ((int32_t)(sizeof bb_cases / sizeof bb_cases[0]))

/* A family member checked against timm's listing of that model
 * (ref/<ref>.txt) alone: a bigger one built from a smaller one's component
 * with its scaling options, or a component with no options (opt NULL) whose
 * logits run would cost more test time than it adds. */
typedef struct bb_variant {
    const char *ref;
    const char *component;
    const char *opt[2];      /* float options                                */
    double val[2];
    int64_t timm_params;
} bb_variant;

static const bb_variant bb_variants[] = {
    {"efficientnet_b2", "efficientnet_b0", {"channel_multiplier", "depth_multiplier"},
     {1.1, 1.2}, 9109994},
    {"efficientnet_lite3", "efficientnet_lite0", {"channel_multiplier", "depth_multiplier"},
     {1.2, 1.4}, 8197096},
    {"efficientnet_b1", "efficientnet_b1", {NULL, NULL}, {0, 0}, 7794184},
    {"efficientnet_b3", "efficientnet_b3", {NULL, NULL}, {0, 0}, 12233232},
    {"efficientnet_lite1", "efficientnet_lite1", {NULL, NULL}, {0, 0}, 5416680},
    {"efficientnet_lite2", "efficientnet_lite2", {NULL, NULL}, {0, 0}, 6092072},
    {"efficientnet_lite3", "efficientnet_lite3", {NULL, NULL}, {0, 0}, 8197096},
    {"efficientnet_lite4", "efficientnet_lite4", {NULL, NULL}, {0, 0}, 13006568},
    {"mobilenetv3_small_075", "mobilenetv3_small_075", {NULL, NULL}, {0, 0}, 2041872},
    {"convnext_pico", "convnext_pico", {NULL, NULL}, {0, 0}, 9045672},
    {"convnext_base", "convnext_base", {NULL, NULL}, {0, 0}, 88591464},
    {"convnext_large", "convnext_large", {NULL, NULL}, {0, 0}, 197767336},
    {"tresnet_xl", "tresnet_xl", {NULL, NULL}, {0, 0}, 78436244},
    {"vit_tiny_patch16_224", "vit_tiny_patch16_224", {NULL, NULL}, {0, 0}, 5717416},
    {"deit_small_distilled_patch16_224", "deit_small_distilled_patch16_224", {NULL, NULL}, {0, 0}, 22436432},
    {"deit_base_patch16_224", "deit_base_patch16_224", {NULL, NULL}, {0, 0}, 86567656},
    {"deit_base_distilled_patch16_224", "deit_base_distilled_patch16_224", {NULL, NULL}, {0, 0}, 87338192},
    {"vit_base_patch32_224", "vit_base_patch32_224", {NULL, NULL}, {0, 0}, 88224232},
    {"vit_large_patch16_224", "vit_large_patch16_224", {NULL, NULL}, {0, 0}, 304326632},
    {"mixer_b32_224", "mixer_b32_224", {NULL, NULL}, {0, 0}, 60293428},
    {"mixer_l16_224", "mixer_l16_224", {NULL, NULL}, {0, 0}, 208196168},
    /* ResNets whose blocks the cases above already run: the listing only */
    {"resnet26", "resnet26", {NULL, NULL}, {0, 0}, 15995176},
    {"resnet50d", "resnet50d", {NULL, NULL}, {0, 0}, 25576264},
    {"resnet101d", "resnet101d", {NULL, NULL}, {0, 0}, 44568392},
    {"resnet152", "resnet152", {NULL, NULL}, {0, 0}, 60192808},
    {"wide_resnet50_2", "wide_resnet50_2", {NULL, NULL}, {0, 0}, 68883240},
};
#define BB_N_VARIANTS ((int32_t)(sizeof bb_variants / sizeof bb_variants[0]))

#endif
