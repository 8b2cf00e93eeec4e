#!/usr/bin/env python3
"""Loader throughput per thread: USI's C loader against torchvision + Pillow.

Both pipelines do the same work on the same JPEGs (~500x375, quality 90):
decode, RandomResizedCrop(224, bicubic), horizontal flip 0.5,
RandAugment(2 ops, magnitude 7; timm's rand-m7-mstd0.5-inc1 when timm imports,
else torchvision's RandAugment), and a uint8 batch. One thread each.

usage: bench/data/bench_data.py [--build build] [--seconds 30] [--rounds 5] [--csv out.csv]
Needs torch, torchvision and Pillow (Debian: python3-torch python3-torchvision).
"""
import argparse
import glob
import os
import random
import subprocess
import sys
import tempfile
import time

PHOTOS = (glob.glob('/usr/share/doc/opencv-doc/examples/data/*.jpg') +
          glob.glob('/usr/lib/python3/dist-packages/sklearn/datasets/images/*.jpg'))


def make_images(folder, count):
    from PIL import Image
    rng = random.Random(0)
    srcs = []
    for p in sorted(PHOTOS):
        im = Image.open(p).convert('RGB')
        if im.width >= 320 and im.height >= 240 and len(set(im.resize((16, 16)).getdata())) > 40:
            srcs.append(im)
    if not srcs:
        sys.exit('no photographs found: apt-get install opencv-doc python3-sklearn')
    os.makedirs(os.path.join(folder, 'photos'), exist_ok=True)
    for i in range(count):
        im = srcs[i % len(srcs)]
        # a random 4:3 window resized to 500x375, as an ImageNet-sized photo
        w = rng.randint(min(im.width, 320), im.width)
        h = min(im.height, int(w * 0.75))
        w = int(h / 0.75)
        x, y = rng.randint(0, im.width - w), rng.randint(0, im.height - h)
        out = im.crop((x, y, x + w, y + h)).resize((500, 375), Image.BICUBIC)
        out.save(os.path.join(folder, 'photos', '%03d.jpg' % i), quality=90)


def run_usi(build, folder, seconds, threads):
    exe = os.path.join(build, 'bench', 'data', 'bench_pipeline')
    plugins = os.path.join(build, 'augment')
    out = subprocess.run([exe, folder, plugins, str(seconds), str(threads)], check=True,
                         capture_output=True, text=True).stdout
    fields = dict(kv.split('=') for kv in out.split())
    return float(fields['images_per_s'])


def make_randaugment(img_mean):
    try:
        from timm.data.auto_augment import rand_augment_transform
        hp = dict(translate_const=int(224 * 0.45), img_mean=img_mean)
        from PIL import Image
        hp['interpolation'] = Image.BICUBIC
        return rand_augment_transform('rand-m7-mstd0.5-inc1', hp), 'timm rand-m7-mstd0.5-inc1'
    except Exception:
        from torchvision import transforms
        # torchvision counts magnitude in 31 bins; 7 of 10 is bin 21
        return transforms.RandAugment(num_ops=2, magnitude=21, fill=list(img_mean)), \
            'torchvision RandAugment(2, 21/30)'


def run_torchvision(folder, seconds, batch=64):
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms
    torch.set_num_threads(1)
    ra, ra_name = make_randaugment((124, 116, 104))
    tf = transforms.Compose([
        transforms.RandomResizedCrop(224, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        ra,
    ])
    files = sorted(glob.glob(os.path.join(folder, '*', '*.jpg')))
    out = np.empty((batch, 224, 224, 3), dtype=np.uint8)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        random.shuffle(files)
        for i, f in enumerate(files):
            with open(f, 'rb') as fh:
                im = Image.open(fh).convert('RGB')
            out[i % batch] = np.asarray(tf(im))
            n += 1
            if time.perf_counter() - t0 >= seconds:
                break
    return n / (time.perf_counter() - t0), ra_name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default='build')
    ap.add_argument('--seconds', type=float, default=30,
                    help='total seconds per pipeline')
    ap.add_argument('--images', type=int, default=128)
    ap.add_argument('--rounds', type=int, default=5,
                    help='alternate the two pipelines this many times; the ratio is the median '
                         'of the per-round ratios, so a busy machine penalises both alike')
    ap.add_argument('--csv', default='')
    a = ap.parse_args()
    per = a.seconds / a.rounds
    usi_runs, tv_runs = [], []
    with tempfile.TemporaryDirectory(prefix='usi-bench-data-') as tmp:
        make_images(tmp, a.images)
        for _ in range(a.rounds):
            usi_runs.append(run_usi(a.build, tmp, per, 1))
            ips, ra_name = run_torchvision(tmp, per)
            tv_runs.append(ips)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    usi1, tv1 = med(usi_runs), med(tv_runs)
    ratio = med([u / t for u, t in zip(usi_runs, tv_runs)])
    print('rounds: usi %s, torchvision %s images/s' % (
        ' '.join('%.0f' % x for x in usi_runs), ' '.join('%.0f' % x for x in tv_runs)))
    import PIL
    import torch
    import torchvision
    rows = [('usi (C, libjpeg-turbo)', 1, usi1, ratio),
            ('torchvision %s + Pillow %s' % (torchvision.__version__, PIL.__version__), 1, tv1, 1.0)]
    print('decode + RRC(224) + flip + RandAugment(2, m7) + uint8 batch, 500x375 JPEGs, 1 thread')
    print('torchvision side uses %s (torch %s)' % (ra_name, torch.__version__))
    print('medians over %d alternating rounds; ratio = median of the per-round ratios' % a.rounds)
    print('%-40s %8s %12s %8s' % ('pipeline', 'threads', 'images/s', 'ratio'))
    for name, th, ips, r in rows:
        print('%-40s %8d %12.1f %8.2f' % (name, th, ips, r))
    csv = 'pipeline,threads,images_per_s_per_thread,ratio_to_torchvision\n' + ''.join(
        '%s,%d,%.1f,%.3f\n' % (name, th, ips, r) for name, th, ips, r in rows)
    print(csv, end='')
    if a.csv:
        with open(a.csv, 'w') as f:
            f.write(csv)


if __name__ == '__main__':
    main()
