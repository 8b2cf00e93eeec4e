#!/usr/bin/env python3
"""A few training steps of `usi train` against the same steps in PyTorch/timm.

Run by hand with torch and timm installed (it is not part of the test suite,
which needs neither):
    python3 tests/integration/recipe_vs_timm.py build/core/cli/usi [BACKBONE] [--steps N]
        [--set key=value ...]

It writes a tiny ImageFolder (8 photographs from Debian's opencv-doc, 64 px,
2 classes), a timm resnet18 teacher, and a usi checkpoint at step 0 holding
timm's initial weights for BACKBONE (default resnet18, timm's stem); `usi
train --resume` then trains N steps (one per epoch, the whole folder as one
batch, no augmentation) with the recipe's loss, AdamW, schedule and EMA. The
same steps run in float64 PyTorch: timm's model, torch.optim.AdamW with the
parameter groups of timm's create_optimizer_v2, timm's CosineLRScheduler
stepped per update, soft-target CE + alpha * T^2 * KL(teacher || student).

It prints the loss and learning rate of every step and the largest
differences of the weights, batch-norm statistics, EMA and AdamW moments,
next to those of PyTorch itself in float32, and fails when usi is further
from float64 than float32 PyTorch is by more than a factor of 10 (after the
first step, float32 runs part a little: AdamW's first update is about
lr * sign(g), which rounding flips where a gradient is near eps).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

PHOTOS = '/usr/share/doc/opencv-doc/examples/data/'
CLASSES = {'a': ['baboon.jpg', 'fruits.jpg', 'butterfly.jpg', 'apple.jpg'],
           'b': ['building.jpg', 'board.jpg', 'HappyFish.jpg', 'aero1.jpg']}
SIDE = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TOKEN_MODELS = ('deit', 'vit', 'levit', 'mixer')


def write_folder(root):
    for cls, files in CLASSES.items():
        os.makedirs(os.path.join(root, cls))
        for i, name in enumerate(files):
            im = Image.open(PHOTOS + name).convert('RGB')
            w, h = im.size
            s = min(w, h)
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            im.resize((SIDE, SIDE), Image.BICUBIC).save(os.path.join(root, cls, '%d.png' % i))


def folder_batch(root):
    xs, ys = [], []
    for c, cls in enumerate(sorted(CLASSES)):
        for i in range(len(CLASSES[cls])):
            a = np.asarray(Image.open(os.path.join(root, cls, '%d.png' % i)), dtype=np.float64) / 255
            xs.append(torch.from_numpy(a).permute(2, 0, 1))
            ys.append(c)
    x = torch.stack(xs)
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    return x, F.one_hot(torch.tensor(ys), len(CLASSES)).double()


def perturb(model, gain):
    """Non-trivial norm affines, biases and running statistics, so every path
    of the step matters."""
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.ndim <= 1:
                p.add_(gain * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith('running_var'):
                b.uniform_(0.5, 1.5)
            elif name.endswith('running_mean'):
                b.normal_(0, 0.1)


def optimizer_for(model, lr, wd):
    """torch AdamW with the parameter groups timm's factory makes."""
    ref = create_optimizer_v2(model, 'adamw', lr=lr, weight_decay=wd)
    groups = [{'params': g['params'], 'weight_decay': g['weight_decay']} for g in ref.param_groups]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def train(student, teacher, x, y, cfg, steps, dtype):
    student = student.to(dtype).train()
    teacher = teacher.to(dtype).eval()
    x, y = x.to(dtype), y.to(dtype)
    opt = optimizer_for(student, cfg['lr'], cfg['wd'])
    sched = CosineLRScheduler(opt, t_initial=cfg['epochs'], lr_min=cfg['min_lr'], warmup_t=cfg['warmup'],
                              warmup_lr_init=cfg['warmup_lr'], t_in_epochs=False)
    ema = {k: v.clone() for k, v in student.state_dict().items()}
    log, T = [], cfg['T']
    for step in range(steps):
        lr = opt.param_groups[0]['lr']
        s = student(x)
        with torch.no_grad():
            t = teacher(x)
        loss = torch.sum(-y * F.log_softmax(s, -1), -1).mean()
        loss = loss + cfg['alpha'] * T * T * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1),
                                                      reduction='batchmean')
        log.append((loss.item(), lr))
        opt.zero_grad()
        loss.backward()
        opt.step()
        d = min(cfg['ema'], (1 + step) / (10 + step))  # usi's EMA warm-up
        with torch.no_grad():
            for k, v in student.state_dict().items():
                if v.is_floating_point():
                    ema[k].mul_(d).add_(v, alpha=1 - d)
        sched.step_update(num_updates=step + 1)
    state = {k: v.double() for k, v in student.state_dict().items() if v.is_floating_point()}
    for k, v in ema.items():
        if v.is_floating_point():
            state['ema/' + k] = v.double()
    for k, p in student.named_parameters():
        state['optim.0/' + k] = opt.state[p]['exp_avg'].double()
        state['optim.1/' + k] = opt.state[p]['exp_avg_sq'].double()
    return log, state


def worst(a, b, keys):
    """Largest |a - b| over keys, relative to the largest |b| of its tensor."""
    out = (0.0, '')
    for k in keys:
        scale = max(b[k].abs().max().item(), 1e-30)
        r = (a[k].double() - b[k]).abs().max().item() / scale
        out = max(out, (r, k))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('usi')
    ap.add_argument('backbone', nargs='?', default='resnet18')
    ap.add_argument('--steps', type=int, default=4)
    ap.add_argument('--set', action='append', default=[], help='more usi settings, key=value')
    ap.add_argument('--keep', action='store_true', help='keep the work folder')
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix='usi-recipe-')
    try:
        data, out = os.path.join(work, 'data'), os.path.join(work, 'run')
        os.makedirs(out)
        write_folder(data)
        torch.manual_seed(0)
        kw = {'num_classes': len(CLASSES)}
        if a.backbone.startswith(TOKEN_MODELS):
            kw['img_size'] = SIDE
        student = timm.create_model(a.backbone, **kw)
        perturb(student, 0.05)
        teacher = timm.create_model('resnet18', num_classes=len(CLASSES))
        perturb(teacher, 0.1)
        with torch.no_grad():
            teacher.fc.weight.mul_(20)  # a confident teacher
        save_file({k: v.contiguous() for k, v in teacher.state_dict().items()},
                  os.path.join(work, 'teacher.safetensors'))

        epochs = a.steps - 1 if a.steps > 2 else a.steps  # the last step in the cool-down
        sets = ['seed=3', 'device="cpu"', 'precision="fp32"', 'metrics_every=1', 'augment=()',
                'data.train="%s"' % data, 'data.val="%s"' % data, 'data.img_size=%d' % SIDE,
                'data.batch_size=8', 'data.workers=0', 'data.repeated_aug=1',
                'schedule.epochs=%d' % epochs, 'schedule.warmup_epochs=1',
                'schedule.cooldown_epochs=%d' % (a.steps - epochs),
                'teacher.name="model"', 'teacher.backbone="resnet18"',
                'teacher.weights="%s"' % os.path.join(work, 'teacher.safetensors'),
                'teacher.num_classes=%d' % len(CLASSES), 'teacher.img_size=%d' % SIDE,
                'teacher.backbone_options="stem = \\"timm\\";"',
                'backbone.name="%s"' % a.backbone, 'backbone.stem="timm"', 'output_dir="%s"' % out] + a.set
        args = sum([['--set', s] for s in sets], [])
        shown = subprocess.run([a.usi, 'config', 'show'] + args, capture_output=True, text=True, check=True).stdout
        cfg_file = os.path.join(work, 'run.cfg')
        with open(cfg_file, 'w') as f:
            f.write(shown)

        def num(key):
            section, name = key.split('.')
            block = shown[shown.index('\n%s = {' % section):]
            line = next(l for l in block.splitlines() if l.strip().startswith(name + ' ='))
            return float(line.split('=')[1].strip().rstrip(';'))
        cfg = {'lr': num('optimizer.lr') * 8 / num('optimizer.lr_batch'), 'wd': num('optimizer.weight_decay'),
               'epochs': epochs, 'warmup': 1, 'warmup_lr': num('schedule.warmup_lr'),
               'min_lr': num('schedule.min_lr'), 'ema': num('ema.decay'), 'alpha': num('loss.kd_alpha'),
               'T': num('loss.kd_temperature')}

        # the step-0 checkpoint: timm's weights, the EMA equal to them, zero moments
        start = {k: v.contiguous().clone() for k, v in student.state_dict().items()}
        for k, v in student.state_dict().items():
            if v.is_floating_point():
                start['ema/' + k] = v.clone()
        for k, p in student.named_parameters():
            start['optim.0/' + k] = torch.zeros_like(p)
            start['optim.1/' + k] = torch.zeros_like(p)
        meta = {'format': 'usi-checkpoint-1', 'backbone': a.backbone, 'config': shown, 'epoch': '0',
                'batch_in_epoch': '0', 'step': '0', 'best_top1': '-1', 'ranks': '1', 'global_batch': '8'}
        c0 = os.path.join(work, 'step0.safetensors')
        save_file(start, c0, metadata=meta)
        r = subprocess.run([a.usi, 'train', cfg_file, '--resume', c0], capture_output=True, text=True)
        if r.returncode:
            sys.exit('usi train failed:\n' + r.stderr)
        usi_log = [json.loads(l) for l in open(os.path.join(out, 'metrics.jsonl'))]
        usi_log = [(m['loss'], m['lr']) for m in usi_log if 'loss' in m and 'lr' in m]
        got = load_file(os.path.join(out, 'last.safetensors'))

        x, y = folder_batch(data)
        s64, t64 = timm.create_model(a.backbone, **kw), timm.create_model('resnet18', num_classes=len(CLASSES))
        s32, t32 = timm.create_model(a.backbone, **kw), timm.create_model('resnet18', num_classes=len(CLASSES))
        for m in (s64, s32):
            m.load_state_dict(student.state_dict())
        for m in (t64, t32):
            m.load_state_dict(teacher.state_dict())
        log, ref = train(s64, t64, x, y, cfg, a.steps, torch.float64)
        _, ref32 = train(s32, t32, x, y, cfg, a.steps, torch.float32)

        bad = 0
        print('step  loss usi / torch (rel)        lr usi / torch')
        for i, ((lu, ru), (lt, rt)) in enumerate(zip(usi_log, log)):
            rel = abs(lu - lt) / abs(lt)
            bad += rel > 1e-5 or abs(ru - rt) > 1e-12 * rt
            print('%4d  %.7f / %.7f (%.1e)  %.6e / %.6e' % (i + 1, lu, lt, rel, ru, rt))
        if len(usi_log) != a.steps:
            print('usi logged %d steps, not %d' % (len(usi_log), a.steps))
            bad += 1
        params = [k for k, _ in s64.named_parameters()]
        kinds = [('weights', params),
                 ('buffers', [k for k in s64.state_dict() if k not in params and k in ref]),
                 ('ema', ['ema/' + k for k in s64.state_dict() if 'ema/' + k in ref]),
                 ('adam m', ['optim.0/' + k for k in params]), ('adam v', ['optim.1/' + k for k in params])]
        print('largest difference from float64 torch, relative to the tensor\'s largest value:')
        for label, keys in kinds:
            if not keys:
                continue
            wu, wt = worst(got, ref, keys), worst(ref32, ref, keys)
            ok = wu[0] <= 10 * wt[0] + 1e-6
            bad += not ok
            print('  %-8s usi %.2e (%s), torch float32 %.2e%s' % (label, wu[0], wu[1], wt[0], '' if ok else '  FAIL'))
        print('FAILED' if bad else 'usi follows the recipe as timm/PyTorch compute it')
        sys.exit(1 if bad else 0)
    finally:
        if a.keep:
            print('work folder:', work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
