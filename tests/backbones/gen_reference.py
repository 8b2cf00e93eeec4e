#!/usr/bin/env python3
"""Write the timm state_dict layout of each backbone the tests check.

Run once with timm, torch and numpy installed (CPU wheels are enough):
    python3 tests/backbones/gen_reference.py tests/backbones/ref [MODEL...]
Each <model>.txt lists, in state_dict order, one tensor per line:
    <param|buffer> <name> <f32|i64> <d0,d1,...|->
("-" is a 0-dim tensor). The first lines start with '#': the timm and torch
versions and the trainable parameter count, which the C test checks too.

Each <model>.logits.txt holds timm's logits (10 classes, float64) for a
2x3x64x64 input (LOGIT_INPUTS says where another) after every state_dict
tensor is overwritten with a fixed pattern (pattern_fill below; the engine
test fills its tensors the same way and must reproduce the logits), in eval
mode and in train mode (batch statistics). A "gain G" line says where the
weights' scale is not the default (LOGIT_GAIN). Its last line, "fp32 E T",
is the largest difference of
timm's own float32 logits for the same weights from the float64 ones,
relative to the largest logit, in eval and train mode: deep networks in
train mode (batch statistics of a few values per channel) lose more than
1e-4 to float32 rounding whoever computes them, and the C test allows twice
that where it is above 1e-4.
"""
import os
import sys

import numpy as np
import timm
import timm.optim
import torch

MODELS = ['resnet18', 'resnet34', 'resnet50', 'resnet101',
          'resnet10t', 'resnet14t', 'resnet26d', 'resnext50_32x4d', 'seresnet50',
          'mobilenetv3_small_100', 'mobilenetv3_large_100',
          'mobilenetv3_small_050', 'mobilenetv3_large_075',
          'efficientnet_b0', 'efficientnet_lite0',
          'efficientnet_b2',
          'convnext_atto', 'convnext_tiny', 'convnext_small',
          'convnext_femto', 'convnext_nano',
          'deit_tiny_patch16_224', 'deit_small_patch16_224',
          'vit_small_patch16_224', 'vit_base_patch16_224',
          'vit_small_patch32_224', 'deit_tiny_distilled_patch16_224',
          'mixer_s16_224', 'mixer_b16_224', 'mixer_s32_224',
          'tresnet_m', 'tresnet_l',
          'levit_128s', 'levit_256', 'levit_384', 'levit_128', 'levit_192']

DTYPES = {torch.float32: 'f32', torch.int64: 'i64'}

LOGIT_CLASSES = 10
LOGIT_INPUT = (2, 3, 64, 64)
INPUT_INDEX = 100003  # the input's pattern index, apart from any tensor's
WEIGHT_GAIN = 2.4     # conv and linear weights: gain * s / sqrt(fan_in)

# LeViT puts a batch norm after every Linear, over the batch's tokens, and one
# in each head over the batch alone. At 64 px its last stage has one token
# per image, so two images give those norms two values per channel, and with
# weights at 2.4/sqrt(fan_in) the activations grow through its ~40 Linears
# in eval (nothing normalises them there): timm's own float32 logits then
# stray from float64 by more than 100% in train mode and 1e-5 in eval. Four
# 96 px images (6x6, 3x3 and 2x2 token grids: 16 or more values per norm but
# the heads' 4) and weights at 1/sqrt(fan_in) keep it near 3e-5 and 5e-7.
LEVIT = ('levit_128s', 'levit_256', 'levit_384', 'levit_128', 'levit_192')
LOGIT_INPUTS = {name: (4, 3, 96, 96) for name in LEVIT}
LOGIT_GAIN = {name: 1.0 for name in LEVIT}

# Listings only (no logits): bigger members of a family, built by the C test
# from a smaller one's component with its scaling options, or from their own
# component where a logits run would cost too much time or repeat another's
# (vit_tiny_patch16_224 is deit_tiny_patch16_224's network).
LAYOUT_ONLY = ['efficientnet_b1', 'efficientnet_b3',
               'efficientnet_lite1', 'efficientnet_lite2', 'efficientnet_lite3', 'efficientnet_lite4',
               'mobilenetv3_small_075', 'convnext_pico', 'convnext_base', 'convnext_large',
               'tresnet_xl',
               'vit_tiny_patch16_224', 'deit_small_distilled_patch16_224',
               'deit_base_patch16_224', 'deit_base_distilled_patch16_224',
               'vit_base_patch32_224', 'vit_large_patch16_224',
               'mixer_b32_224', 'mixer_l16_224',
               'resnet26', 'resnet50d', 'resnet101d', 'resnet152', 'wide_resnet50_2']

# Options the logits model is created with besides num_classes: the token
# models size their position tables and LeViT its attention-bias tables from
# img_size (the C test sets img_size to the input side for every model).
LOGIT_KWARGS = {name: {'img_size': LOGIT_INPUTS.get(name, LOGIT_INPUT)[3]} for name in (
    'deit_tiny_patch16_224', 'deit_small_patch16_224',
    'vit_small_patch16_224', 'vit_base_patch16_224', 'mixer_s16_224', 'mixer_b16_224',
    'vit_small_patch32_224', 'deit_tiny_distilled_patch16_224', 'mixer_s32_224') + LEVIT}


def write_model(name, out_dir):
    model = timm.create_model(name, pretrained=False, num_classes=1000)
    trainable = {n for n, _ in model.named_parameters()}
    n_params = sum(p.numel() for p in model.parameters())
    path = os.path.join(out_dir, name + '.txt')
    with open(path, 'w') as f:
        f.write('# timm %s torch %s\n' % (timm.__version__, torch.__version__))
        f.write('# params %d\n' % n_params)
        for key, t in model.state_dict().items():
            kind = 'param' if key in trainable else 'buffer'
            shape = ','.join(str(d) for d in t.shape) if t.dim() else '-'
            f.write('%s %s %s %s\n' % (kind, key, DTYPES[t.dtype], shape))
    print('%s: %d trainable parameters -> %s' % (name, n_params, path))


def pattern(numel, index):
    """Uniform in [-1, 1) from a 32-bit integer hash of (element j, tensor
    index): reproducible bit for bit in C. A smooth pattern (sines) leaves
    channels with almost no batch variance, which makes train-mode batch norm
    amplify rounding until float32 and float64 disagree."""
    m = np.uint64(0xffffffff)
    x = (np.arange(numel, dtype=np.uint64) * np.uint64(2654435761)
         + np.uint64(index * 40503 + 12345)) & m
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7feb352d)) & m
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846ca68b)) & m
    x ^= x >> np.uint64(16)
    return torch.from_numpy(x.astype(np.float64) / 4294967296.0 * 2 - 1)


def pattern_fill(model, gain=WEIGHT_GAIN):
    """Tensor number i of the state_dict gets s = pattern(numel, i): conv and
    linear weights gain s / sqrt(fan_in) (2.4: about He's scale), 1-D weights
    1 + 0.2 s, biases and running means 0.1 s, running vars 1 + 0.5 s^2,
    integer counters 0."""
    with torch.no_grad():
        for i, (key, t) in enumerate(model.state_dict().items()):
            if t.dtype != torch.float64:
                t.zero_()
                continue
            s = pattern(t.numel(), i).reshape(t.shape)
            leaf = key.rsplit('.', 1)[-1]
            if leaf == 'running_var':
                v = 1 + 0.5 * s * s
            elif leaf in ('bias', 'running_mean'):
                v = 0.1 * s
            elif t.dim() >= 2:
                v = gain * s / (t[0].numel() ** 0.5)
            else:
                v = 1 + 0.2 * s
            t.copy_(v)


def write_logits(name, out_dir):
    kwargs = LOGIT_KWARGS.get(name, {})
    shape = LOGIT_INPUTS.get(name, LOGIT_INPUT)
    gain = LOGIT_GAIN.get(name, WEIGHT_GAIN)
    model = timm.create_model(name, pretrained=False, num_classes=LOGIT_CLASSES,
                              **kwargs).double()
    pattern_fill(model, gain)
    # the same weights in float32: how close timm itself gets in float32
    model32 = timm.create_model(name, pretrained=False, num_classes=LOGIT_CLASSES, **kwargs)
    model32.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in model.state_dict().items()})
    n = 1
    for d in shape:
        n *= d
    x = pattern(n, INPUT_INDEX).reshape(shape)
    path = os.path.join(out_dir, name + '.logits.txt')
    rel32 = []
    with open(path, 'w') as f:
        f.write('# timm %s torch %s\n' % (timm.__version__, torch.__version__))
        f.write('input %s\n' % ' '.join(str(d) for d in shape))
        f.write('classes %d\n' % LOGIT_CLASSES)
        if gain != WEIGHT_GAIN:
            f.write('gain %g\n' % gain)
        for mode in ('eval', 'train'):
            model.train(mode == 'train')
            model32.train(mode == 'train')
            with torch.no_grad():
                y = model(x)
                y32 = model32(x.float()).double()
            rel32.append(((y32 - y).abs().max() / y.abs().max()).item())
            f.write(mode + ' ' + ' '.join('%.9e' % v for v in y.flatten().tolist()) + '\n')
        f.write('fp32 %.3e %.3e\n' % tuple(rel32))

def write_no_weight_decay(names, out_dir):
    """ref/no_weight_decay.txt: for each model, the trainable parameters
    timm's optimizer factory (create_optimizer_v2, as the USI reference calls
    it) leaves out of weight decay: biases, 1-D parameters and what the
    model's no_weight_decay() lists. One line per model: the name, then
    those parameters."""
    path = os.path.join(out_dir, 'no_weight_decay.txt')
    with open(path, 'w') as f:
        f.write('# timm %s torch %s\n' % (timm.__version__, torch.__version__))
        for name in names:
            model = timm.create_model(name, pretrained=False, num_classes=1000)
            opt = timm.optim.create_optimizer_v2(model, 'adamw', lr=2e-3, weight_decay=2e-2)
            spared = {id(p) for g in opt.param_groups if g['weight_decay'] == 0 for p in g['params']}
            keys = [k for k, p in model.named_parameters() if id(p) in spared]
            f.write('%s %s\n' % (name, ' '.join(keys)))
    print('weight decay groups -> %s' % path)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'ref')
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    only = set(sys.argv[2:])  # optional model names: regenerate just those
    for name in MODELS + LAYOUT_ONLY:
        if only and name not in only:
            continue
        write_model(name, out_dir)
        if name in MODELS:
            write_logits(name, out_dir)
    if not only:
        write_no_weight_decay(MODELS, out_dir)


if __name__ == '__main__':
    main()
