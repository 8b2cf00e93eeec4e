#!/usr/bin/env python3
"""Write the pixels PIL, torchvision and timm produce, for test_pil_parity.c.

Run once from the repository root with Pillow, numpy and timm installed
(timm needs no dependencies here: only its data/auto_augment.py is loaded,
as a file, so torch is not needed):
    python3 -m venv /tmp/pilref
    /tmp/pilref/bin/pip install pillow numpy
    /tmp/pilref/bin/pip install --no-deps timm
    /tmp/pilref/bin/python tests/data/pil/gen_pil_refs.py tests/data/pil
The sources are photographs from Debian's opencv-doc and the Fashion-MNIST
test set from dataset-fashion-mnist (scripts/install-deps installs both).

It writes manifest.txt, one case per line, and one PNG per case:
    source  NAME W H CRC32           PIL's decoded RGB bytes of a photograph
    eval    INPUT SIZE CROP_PCT INTERP OUT
            torchvision Resize(floor(SIZE / CROP_PCT)) + CenterCrop(SIZE),
            as timm's eval transform builds them
    rrc     INPUT TOP LEFT H W OUT_W OUT_H INTERP OUT
            torchvision resized_crop (RandomResizedCrop once its box is drawn)
    resize  INPUT W H INTERP OUT      PIL Image.resize
    op      INPUT NAME MAGNITUDE NEGATE INTERP OUT
            timm's AugmentOp(NAME, prob=1, MAGNITUDE) with the random sign
            forced (NEGATE 1: negated), fill (124, 116, 104)
INPUT is photo:FILE (opencv-doc), fmnist:INDEX (test set, as RGB: torchvision's
ImageFolder converts to RGB), or ref:FILE (a PNG written here).
"""
import gzip
import importlib.util
import math
import os
import sys
import zlib

import PIL
from PIL import Image

OPENCV = '/usr/share/doc/opencv-doc/examples/data'
FMNIST = '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz'
INTERP = {'bicubic': Image.Resampling.BICUBIC, 'bilinear': Image.Resampling.BILINEAR,
          'nearest': Image.Resampling.NEAREST}
FILL = (124, 116, 104)  # timm's img_mean for the ImageNet mean, the plugin's default


def load_auto_augment():
    spec = importlib.util.find_spec('timm')
    path = os.path.join(os.path.dirname(spec.origin), 'data', 'auto_augment.py')
    mod_spec = importlib.util.spec_from_file_location('timm_auto_augment', path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


def fmnist(index):
    with gzip.open(FMNIST, 'rb') as f:
        data = f.read()
    off = 16 + index * 784
    return Image.frombytes('L', (28, 28), data[off:off + 784]).convert('RGB')


class Cases:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.lines = []
        self.sources = {}

    def input(self, spec):
        kind, _, arg = spec.partition(':')
        if kind == 'photo':
            im = Image.open(os.path.join(OPENCV, arg)).convert('RGB')
            if arg not in self.sources:
                self.sources[arg] = True
                crc = zlib.crc32(im.tobytes()) & 0xffffffff
                self.lines.append('source %s %d %d %08x' % (arg, im.width, im.height, crc))
            return im
        if kind == 'fmnist':
            return fmnist(int(arg))
        return Image.open(os.path.join(self.out_dir, arg)).convert('RGB')

    def save(self, im, name):
        im.save(os.path.join(self.out_dir, name), optimize=True)

    # torchvision.transforms.functional on PIL images: resize() calls
    # img.resize((w, h), interpolation) with the shorter side set and the
    # longer one int(size * long / short); center_crop() crops at
    # int(round((H - h) / 2.0)); resized_crop() is crop() then resize().
    def eval(self, src, size, crop_pct, interp, out):
        im = self.input(src)
        short = math.floor(size / crop_pct)
        w, h = im.size
        if w <= h:
            nw, nh = short, int(short * h / w)
        else:
            nw, nh = int(short * w / h), short
        im = im.resize((nw, nh), INTERP[interp])
        top = int(round((nh - size) / 2.0))
        left = int(round((nw - size) / 2.0))
        self.save(im.crop((left, top, left + size, top + size)), out)
        self.lines.append('eval %s %d %s %s %s' % (src, size, repr(crop_pct), interp, out))

    def rrc(self, src, top, left, h, w, ow, oh, interp, out):
        im = self.input(src).crop((left, top, left + w, top + h))
        self.save(im.resize((ow, oh), INTERP[interp]), out)
        self.lines.append('rrc %s %d %d %d %d %d %d %s %s' % (src, top, left, h, w, ow, oh, interp, out))

    def resize(self, src, w, h, interp, out):
        self.save(self.input(src).resize((w, h), INTERP[interp]), out)
        self.lines.append('resize %s %d %d %s %s' % (src, w, h, interp, out))

    def op(self, aa, src, name, magnitude, negate, interp, out):
        class Sign:  # timm's _randomly_negate negates when random() > 0.5
            @staticmethod
            def random():
                return 1.0 if negate else 0.0
        aa.random = Sign
        op = aa.AugmentOp(name, prob=1.0, magnitude=magnitude,
                          hparams=dict(img_mean=FILL, interpolation=INTERP[interp]))
        self.save(op(self.input(src)), out)
        self.lines.append('op %s %s %s %d %s %s' % (src, name, repr(magnitude), negate, interp, out))


def main(out_dir):
    aa = load_auto_augment()
    c = Cases(out_dir)
    # The eval transform: photographs shrunk (antialiased), Fashion-MNIST
    # slightly and strongly enlarged, as usi evaluates 28 px data.
    c.eval('photo:fruits.jpg', 48, 0.875, 'bicubic', 'eval_fruits_48_bicubic.png')
    c.eval('photo:fruits.jpg', 48, 0.875, 'bilinear', 'eval_fruits_48_bilinear.png')
    c.eval('photo:baboon.jpg', 40, 0.95, 'bicubic', 'eval_baboon_40_bicubic.png')
    c.eval('photo:left01.jpg', 32, 1.0, 'bilinear', 'eval_left01_32_bilinear.png')
    for i in range(4):
        c.eval('fmnist:%d' % i, 28, 0.95, 'bicubic', 'eval_fmnist%d_28_bicubic.png' % i)
    c.eval('fmnist:4', 28, 0.875, 'bilinear', 'eval_fmnist4_28_bilinear.png')
    c.eval('fmnist:5', 64, 0.875, 'bicubic', 'eval_fmnist5_64_bicubic.png')
    # Plain resizes: Fashion-MNIST down and up, and PIL's NEAREST.
    c.resize('fmnist:6', 20, 20, 'bicubic', 'resize_fmnist6_20_bicubic.png')
    c.resize('fmnist:7', 96, 96, 'bicubic', 'resize_fmnist7_96_bicubic.png')
    c.resize('fmnist:8', 50, 41, 'bilinear', 'resize_fmnist8_50x41_bilinear.png')
    c.resize('fmnist:9', 64, 64, 'nearest', 'resize_fmnist9_64_nearest.png')
    c.resize('photo:fruits.jpg', 50, 47, 'nearest', 'resize_fruits_50x47_nearest.png')
    # RandomResizedCrop's resize: a large box shrunk, a small one enlarged.
    c.rrc('photo:fruits.jpg', 150, 200, 90, 120, 40, 30, 'bicubic', 'rrc_fruits_40x30_bicubic.png')
    c.rrc('photo:fruits.jpg', 100, 37, 211, 301, 48, 48, 'bilinear', 'rrc_fruits_48_bilinear.png')
    c.rrc('photo:baboon.jpg', 200, 300, 17, 23, 48, 48, 'bicubic', 'rrc_baboon_48_bicubic.png')
    c.rrc('fmnist:10', 3, 5, 20, 17, 28, 28, 'bicubic', 'rrc_fmnist10_28_bicubic.png')
    # Each RandAugment operation (rand-m*-inc1 list) at a few magnitudes,
    # on a small photograph (the rrc output above) and on Fashion-MNIST.
    photo = 'ref:rrc_fruits_40x30_bicubic.png'
    names = ['AutoContrast', 'Equalize', 'Invert', 'Rotate', 'PosterizeIncreasing',
             'SolarizeIncreasing', 'SolarizeAdd', 'ColorIncreasing', 'ContrastIncreasing',
             'BrightnessIncreasing', 'SharpnessIncreasing', 'ShearX', 'ShearY',
             'TranslateXRel', 'TranslateYRel']
    geometric = {'Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel'}
    for name in names:
        mags = [7] if name in ('AutoContrast', 'Equalize', 'Invert') else [3.1, 7, 10]
        if name == 'PosterizeIncreasing':
            # at 10 timm asks for 0 bits, which recent Pillow (13.0) refuses
            # (ValueError); the plugin gives black there, as older Pillow did
            mags = [3.1, 7, 9.9]
        for k, m in enumerate(mags):
            negate = k % 2
            c.op(aa, photo, name, m, negate, 'bicubic', 'op_%s_m%s_photo.png' % (name, m))
        if name in geometric:
            c.op(aa, photo, name, 7, 1, 'bilinear', 'op_%s_m7_photo_bilinear.png' % name)
        c.op(aa, 'fmnist:11', name, 7, 0, 'bicubic', 'op_%s_m7_fmnist.png' % name)
    # timm's non-increasing enhance and posterize/solarize variants.
    for name in ['Color', 'Contrast', 'Brightness', 'Sharpness', 'Posterize', 'Solarize']:
        c.op(aa, photo, name, 3.1, 0, 'bicubic', 'op_%s_m3.1_photo.png' % name)
    with open(os.path.join(out_dir, 'manifest.txt'), 'w') as f:
        f.write('# written by gen_pil_refs.py with Pillow %s (see its docstring)\n' % PIL.__version__)
        for line in c.lines:
            f.write(line + '\n')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
