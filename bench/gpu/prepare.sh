#!/usr/bin/env bash
# Here, on a machine with the CUDA toolkit (no GPU needed): build what
# bench/gpu/run.sh runs on the GPU machine, in release mode with the CUDA
# backend, and put it in .gpu/ (ignored by git) with every shared library
# the binaries load except the C runtime and CUDA's own: the GPU machine has
# no libconfig, oneDNN, TurboJPEG, spng, libwebp or libtiff, and takes cuDNN
# and cuBLAS from PyTorch's wheels. Then carry .gpu in the call (bench/gpu/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${BUILD_DIR:-build-gpu}
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" -Dcuda=enabled -Dbuildtype=release
fi
targets=(bench/gpu/bench_gpu tests/cuda/test_cuda_open tests/cuda/test_cuda_ops
         tests/engine/test_backend_ops tests/engine/test_graph tests/engine/test_fashion_mnist
         core/cli/usi)
ninja -C "$dir"
# staged in $dir/gpu-stage, then packed into .gpu/pack.tar.xz: unpacked,
# the binaries (each with the core linked in) and oneDNN are over a call's
# 64 MiB; packed they are about 17 MiB.
stage=$dir/gpu-stage
rm -rf "$stage" .gpu
mkdir -p "$stage"
cd "$stage"
mkdir -p .gpu/bin .gpu/lib .gpu/plugins .gpu/data
root=$OLDPWD
for t in "${targets[@]}"; do cp "$root/$dir/$t" .gpu/bin/; done
# every backbone, teacher and augmentation plugin, found by `usi --plugin-dir`
find "$root/$dir/plugins" "$root/$dir/teachers" "$root/$dir/augment" -name 'usi_*.so' -not -path '*.p/*' \
  -exec cp -t .gpu/plugins {} +
strip --strip-unneeded .gpu/bin/* .gpu/plugins/*
ldd .gpu/bin/* .gpu/plugins/* | awk '$3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
    libcuda.so*|libcudart*|libcudnn*|libcublas*|libnccl*) ;;
    *) cp -L "$lib" .gpu/lib/ ;;
  esac
done
# Data, cut down to fit a call: the first 6,000 training and 2,000 test
# images of Fashion-MNIST's IDX files (test_fashion_mnist), and a class-
# balanced ImageFolder of PNGs (300 + 100 per class) for `usi train`.
python3 - <<'PY'
import gzip
src = "/usr/share/datasets/fashion-mnist/"
for name, n, item, head in [("train-images-idx3-ubyte.gz", 6000, 784, 16),
                            ("train-labels-idx1-ubyte.gz", 6000, 1, 8),
                            ("t10k-images-idx3-ubyte.gz", 2000, 784, 16),
                            ("t10k-labels-idx1-ubyte.gz", 2000, 1, 8)]:
    with gzip.open(src + name) as f:
        data = bytearray(f.read(head + n * item))
    data[4:8] = n.to_bytes(4, "big")
    with gzip.open(".gpu/data/" + name, "wb") as f:
        f.write(bytes(data))
PY
fm=$root/data/fashion-mnist
[ -d "$fm/val" ] || "$root/$dir/core/cli/usi" data import-idx --out "$fm"
for split in train val; do
  n=300; [ $split = val ] && n=100
  for d in "$fm"/$split/*/; do
    mkdir -p ".gpu/data/fmnist/$split/$(basename "$d")"
    find "$d" -maxdepth 1 -name '*.png' | sort | awk -v n="$n" 'NR <= n' | xargs -r cp -t ".gpu/data/fmnist/$split/$(basename "$d")"
  done
done
git -C "$root" rev-parse HEAD > .gpu/commit
git -C "$root" diff --quiet HEAD || echo "(with uncommitted changes)" >> .gpu/commit
ls .gpu/bin .gpu/lib .gpu/plugins
cd "$root"
mkdir -p .gpu
tar -C "$stage/.gpu" -cf - . | xz -9 -T0 > .gpu/pack.tar.xz
echo "prepared .gpu/pack.tar.xz ($(du -sh .gpu/pack.tar.xz | cut -f1)) at $(head -c12 "$stage/.gpu/commit")"
