#!/usr/bin/env python3
"""The engine against PyTorch on the same graphs, in the same run.

Runs bench_engine (ResNet-50, ResNet-18, MobileNetV3-Large-like; training
step and inference; batch 32 at 224x224 on 2 threads by default), then the
same networks in PyTorch on the same threads, and prints images/s for both
and the ratio engine time / PyTorch time (<= 1.0: the engine is as fast).

    bench_torch.py BUILD/bench/engine/bench_engine [--batch 32] [--size 224]
                   [--threads 2] [--steps 3] [--models resnet50,resnet18,mobilenetv3]
                   [--omp-wait-policy active|passive]
"""
import argparse
import csv
import os
import subprocess
import sys
import time


def torch_models(nn):
    """The networks of tests/engine/models.c, layer for layer."""

    def conv_bn(cin, cout, k, s, groups=1):
        return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]

    class Block(nn.Module):
        def __init__(self, cin, planes, stride, bottleneck):
            super().__init__()
            exp = 4 if bottleneck else 1
            if bottleneck:
                layers = conv_bn(cin, planes, 1, 1) + [nn.ReLU()] + conv_bn(planes, planes, 3, stride) \
                    + [nn.ReLU()] + conv_bn(planes, planes * 4, 1, 1)
            else:
                layers = conv_bn(cin, planes, 3, stride) + [nn.ReLU()] + conv_bn(planes, planes, 3, 1)
            self.body = nn.Sequential(*layers)
            self.down = None
            if stride != 1 or cin != planes * exp:
                self.down = nn.Sequential(*conv_bn(cin, planes * exp, 1, stride))

        def forward(self, x):
            sc = x if self.down is None else self.down(x)
            return (self.body(x) + sc).relu()

    def resnet(depth):
        blocks = [3, 4, 6, 3] if depth == 50 else [2, 2, 2, 2]
        bott = depth == 50
        layers = conv_bn(3, 64, 7, 2) + [nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for s, n in enumerate(blocks):
            for b in range(n):
                layers.append(Block(cin, 64 << s, 2 if b == 0 and s > 0 else 1, bott))
                cin = (64 << s) * (4 if bott else 1)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
        return nn.Sequential(*layers)

    def make_div(v):
        r = int(v + 4) // 8 * 8
        return r + 8 if r < 0.9 * v else r

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            r = make_div(c / 4.0)
            self.f = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, r, 1), nn.ReLU(),
                                   nn.Conv2d(r, c, 1), nn.Hardsigmoid())

        def forward(self, x):
            return x * self.f(x)

    class IR(nn.Module):
        def __init__(self, cin, k, exp, out, se, hs, stride):
            super().__init__()
            act = nn.Hardswish if hs else nn.ReLU
            layers = []
            if exp != cin:
                layers += conv_bn(cin, exp, 1, 1) + [act()]
            layers += conv_bn(exp, exp, k, stride, exp) + [act()]
            if se:
                layers.append(SE(exp))
            layers += conv_bn(exp, out, 1, 1)
            self.f = nn.Sequential(*layers)
            self.res = stride == 1 and cin == out

        def forward(self, x):
            y = self.f(x)
            return y + x if self.res else y

    def mobilenetv3():
        cfg = [(3, 16, 16, 0, 0, 1), (3, 64, 24, 0, 0, 2), (3, 72, 24, 0, 0, 1),
               (5, 72, 40, 1, 0, 2), (5, 120, 40, 1, 0, 1), (5, 120, 40, 1, 0, 1),
               (3, 240, 80, 0, 1, 2), (3, 200, 80, 0, 1, 1), (3, 184, 80, 0, 1, 1),
               (3, 184, 80, 0, 1, 1), (3, 480, 112, 1, 1, 1), (3, 672, 112, 1, 1, 1),
               (5, 672, 160, 1, 1, 2), (5, 960, 160, 1, 1, 1), (5, 960, 160, 1, 1, 1)]
        layers = conv_bn(3, 16, 3, 2) + [nn.Hardswish()]
        cin = 16
        for k, e, o, se, hs, s in cfg:
            layers.append(IR(cin, k, e, o, se, hs, s))
            cin = o
        layers += conv_bn(cin, 960, 1, 1) + [nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                             nn.Linear(960, 1280), nn.Hardswish(), nn.Linear(1280, 1000)]
        return nn.Sequential(*layers)

    return {'resnet50': lambda: resnet(50), 'resnet18': lambda: resnet(18),
            'mobilenetv3': mobilenetv3}


def torch_times(args, models):
    import torch
    import torch.nn as nn
    torch.set_num_threads(args.threads)
    make = torch_models(nn)
    out = {}
    for name in models:
        net = make[name]()
        x = torch.randn(args.batch, 3, args.size, args.size)
        y = torch.randint(0, 1000, (args.batch,))
        loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
        for mode in ('train', 'infer'):
            net.train(mode == 'train')
            times = []
            for step in range(args.steps + 1):
                t0 = time.perf_counter()
                if mode == 'train':
                    net.zero_grad(set_to_none=False)
                    loss_fn(net(x), y).backward()
                else:
                    with torch.no_grad():
                        net(x)
                if step:
                    times.append(time.perf_counter() - t0)
            out[(name, mode)] = sum(times) / len(times)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument('bench_engine')
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--models', default='resnet50,resnet18,mobilenetv3')
    p.add_argument('--csv', default='bench_torch.csv')
    p.add_argument('--omp-wait-policy', choices=['active', 'passive'],
                   help='OMP_WAIT_POLICY for both (passive helps a lot on shared cores)')
    args = p.parse_args()
    if args.omp_wait_policy:
        # Both runtimes read it when they load: set before the engine starts
        # and before torch is imported.
        os.environ['OMP_WAIT_POLICY'] = args.omp_wait_policy
    models = args.models.split(',')
    engine_csv = args.csv + '.engine.csv'
    subprocess.run([args.bench_engine, '--batch', str(args.batch), '--size', str(args.size),
                    '--threads', str(args.threads), '--steps', str(args.steps),
                    '--models', args.models, '--csv', engine_csv], check=True)
    ours = {}
    with open(engine_csv) as f:
        for row in csv.DictReader(f):
            ours[(row['model'], row['mode'])] = float(row['seconds'])
    try:
        theirs = torch_times(args, models)
    except ImportError:
        print('PyTorch is not installed: engine numbers only (pip install torch)')
        return 0
    print('\n%-12s %-6s %12s %12s %8s' % ('model', 'mode', 'engine img/s', 'torch img/s', 'ratio'))
    with open(args.csv, 'w') as f:
        f.write('model,mode,engine_seconds,torch_seconds,ratio\n')
        for key in sorted(ours):
            if key not in theirs:
                continue
            a, b = ours[key], theirs[key]
            print('%-12s %-6s %12.2f %12.2f %8.2f' % (key[0], key[1], args.batch / a,
                                                     args.batch / b, a / b))
            f.write('%s,%s,%.6f,%.6f,%.4f\n' % (key[0], key[1], a, b, a / b))
    print('ratio = engine time / PyTorch time (target <= 1.0)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
