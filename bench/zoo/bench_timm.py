#!/usr/bin/env python3
"""Every backbone plugin against timm's model of the same name, in one run.

Runs `usi bench` over the backbones (inference: an eval-mode forward pass,
batch BATCH at SIZE; --train adds the training step), then timm's models in
PyTorch on the same device, threads, batch and size, and prints a table:
img/s for both and the ratio usi / timm (> 1: usi is faster).

    bench_timm.py USI [--backbones a,b|all] [--batch 8] [--size 224] [--steps 5]
                  [--warmup 1] [--threads 2] [--device cpu|cuda] [--train]
                  [--plugin-dir DIR] [--csv FILE]

USI is the `usi` binary (e.g. build/core/cli/usi). PyTorch and timm come
from the Python running this script (a venv with `pip install torch timm`);
they are the peer measured, never a dependency of usi. On the CPU both sides
get the same thread count (OMP_NUM_THREADS and torch.set_num_threads); on
cuda, torch runs fp32 with TF32 off, as usi's fp32 does, unless usi's
precision is mixed (then both bf16: torch under autocast).
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time


def usi_bench(a, out_dir):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OMP_WAIT_POLICY="passive")
    cmd = [a.usi, "bench", "--backbones", a.backbones, "--img-size", str(a.size), "--batch", str(a.batch),
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--device", a.device, "--out", out_dir,
           "--set", f"threads={a.threads}", "--set", f"precision={a.precision}"]
    if a.train:
        cmd.append("--train")
    for d in a.plugin_dir:
        cmd += ["--plugin-dir", d]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, env=env, check=False)
    rows = {}
    path = os.path.join(out_dir, "bench.csv")
    if not os.path.exists(path):
        sys.exit(f"usi bench wrote no {path}")
    with open(path) as f:
        for r in csv.DictReader(f):
            rows[r["backbone"]] = r
    return rows


def timed(fn, sync, steps, warmup):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_bench(a, names):
    import torch
    import timm

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device if a.device != "cpu" else "cpu")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    bf16 = dev.type == "cuda" and a.precision == "mixed"
    out = {}
    for name in names:
        try:
            m = timm.create_model(name, pretrained=False, num_classes=1000).to(dev)
        except Exception as e:  # a name timm lacks
            out[name] = (None, None, str(e).splitlines()[0])
            continue
        x = torch.randn(a.batch, 3, a.size, a.size, device=dev)
        y = torch.randint(0, 1000, (a.batch,), device=dev)
        ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else (lambda: torch.autocast(
            "cpu", enabled=False))
        m.eval()

        def infer():
            with torch.inference_mode(), ctx():
                m(x)

        t_inf = timed(infer, sync, a.steps, a.warmup)
        t_train = None
        if a.train:
            m.train()
            opt = torch.optim.AdamW(m.parameters(), lr=1e-3)

            def step():
                with ctx():
                    loss = torch.nn.functional.cross_entropy(m(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            t_train = timed(step, sync, a.steps, a.warmup)
        out[name] = (a.batch / t_inf, a.batch / t_train if t_train else None, "")
        print(f"torch {name}: {out[name][0]:.1f} img/s inference"
              + (f", {out[name][1]:.1f} training" if t_train else ""), flush=True)
        del m
    return out, f"torch {torch.__version__}, timm {timm.__version__}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("usi")
    p.add_argument("--backbones", default="all")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "mixed"])
    p.add_argument("--train", action="store_true")
    p.add_argument("--plugin-dir", action="append", default=[])
    p.add_argument("--csv")
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        ours = usi_bench(a, tmp)
    names = [n for n, r in ours.items() if not r.get("error")]
    theirs, versions = torch_bench(a, names)

    cols = ["backbone", "usi infer", "timm infer", "ratio"] + (["usi train", "timm train", "ratio"] if a.train else [])
    print(f"\n{a.device}, {a.threads} thread(s), batch {a.batch} at {a.size}, {a.precision}; {versions}; "
          "img/s (median step); ratio = usi / timm")
    print(f"{cols[0]:<24}" + "".join(f"{c:>12}" for c in cols[1:]))
    table = []
    for n in names:
        r = ours[n]
        ui = float(r["infer_img_s"] or 0)
        ut = float(r["train_img_s"] or 0) if a.train else 0
        ti, tt, why = theirs.get(n, (None, None, "not run"))
        row = [n, ui, ti, ui / ti if ui and ti else None]
        if a.train:
            row += [ut, tt, ut / tt if ut and tt else None]
        table.append(row)
        fmt = lambda v: f"{v:12.1f}" if isinstance(v, float) and v >= 10 else (f"{v:12.2f}" if isinstance(v, float) else f"{'-':>12}")
        line = f"{n:<24}" + "".join(fmt(v) for v in row[1:])
        print(line + (f"  ({why})" if why else ""))
    ratios = [r[3] for r in table if r[3]]
    if ratios:
        print(f"geometric mean of the inference ratios: {statistics.geometric_mean(ratios):.2f}")
    if a.train:
        tr = [r[6] for r in table if r[6]]
        if tr:
            print(f"geometric mean of the training ratios: {statistics.geometric_mean(tr):.2f}")
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["backbone", "usi_infer_img_s", "timm_infer_img_s", "infer_ratio"]
                       + (["usi_train_img_s", "timm_train_img_s", "train_ratio"] if a.train else []))
            w.writerows(table)


if __name__ == "__main__":
    main()
