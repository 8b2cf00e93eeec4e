#!/usr/bin/env python3
"""The PyTorch peer of bench_gpu, for the same call on a GPU machine.

timm's resnet50 in channels_last, on synthetic data of the same batch and
size: a training step (forward, the loss read back, backward, SGD with
momentum, zeroed gradients) and an eval forward, in fp32 (TF32 off, like the
engine's fp32) and in bf16 autocast. cudnn.benchmark is on: algorithms are
timed once per shape, as the engine does.

    bench_torch.py [--model resnet50] [--batch 256] [--size 224] [--steps 200]
                   [--warmup 10] [--precisions fp32,bf16] [--modes train,infer]

Prints one line per measurement:
    RESULT torch <model> <mode> <precision> <batch> <size> <img/s> <ms/step>
"""
import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--modes", default="train,infer")
    a = ap.parse_args()

    import torch
    import timm

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    print(f"torch {torch.__version__}, timm {timm.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.get_device_name(0)}", file=sys.stderr)

    x = (torch.arange(a.batch * 3 * a.size * a.size, device=dev, dtype=torch.float32) * 7919 % 255 / 255 - 0.5)
    x = x.reshape(a.batch, 3, a.size, a.size).contiguous(memory_format=torch.channels_last)
    y = torch.arange(a.batch, device=dev) * 37 % 1000

    for precision in a.precisions.split(","):
        autocast = precision == "bf16"
        for mode in a.modes.split(","):
            torch.manual_seed(0)
            model = timm.create_model(a.model, num_classes=1000).to(dev).to(memory_format=torch.channels_last)
            if mode == "train":
                model.train()
                opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
                loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

                def step():
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                        loss = loss_fn(model(x), y)
                    loss.item()  # the loss read back each step, as the engine's trainer does
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
            else:
                model.eval()

                def step():
                    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                        model(x)

            for _ in range(a.warmup):
                step()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(a.steps):
                step()
            torch.cuda.synchronize()
            t = time.perf_counter() - t0
            print(f"RESULT torch {a.model} {mode} {precision} {a.batch} {a.size} "
                  f"{a.batch * a.steps / t:.1f} {1e3 * t / a.steps:.2f}", flush=True)
            del model
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
