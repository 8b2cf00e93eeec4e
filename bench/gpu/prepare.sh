#!/usr/bin/env bash
# Here, on a machine with the CUDA toolkit (no GPU needed): build what
# bench/gpu/run.sh runs on the GPU machine, in release mode with the CUDA
# backend, and put it in .gpu/ (ignored by git) with every shared library
# the binaries load except the C runtime and CUDA's own: the GPU machine has
# no libconfig, oneDNN, TurboJPEG or spng, and takes cuDNN and cuBLAS from
# PyTorch's wheels. Then carry .gpu in the call (bench/gpu/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${BUILD_DIR:-build-gpu}
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" -Dcuda=enabled -Dbuildtype=release
fi
targets=(bench/gpu/bench_gpu tests/cuda/test_cuda_open tests/cuda/test_cuda_ops
         tests/engine/test_ops_nn tests/engine/test_ops_elem tests/engine/test_ops_shape)
# the op driver, once it has landed
for t in tests/engine/test_backend_ops; do
  if ninja -C "$dir" -t targets all | grep -q "^$t:"; then targets+=("$t"); fi
done
ninja -C "$dir" "${targets[@]}"
rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib
for t in "${targets[@]}"; do cp "$dir/$t" .gpu/bin/; done
strip --strip-unneeded .gpu/bin/*
ldd .gpu/bin/* | awk '$3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
    libcuda.so*|libcudart*|libcudnn*|libcublas*|libnccl*) ;;
    *) cp -L "$lib" .gpu/lib/ ;;
  esac
done
git rev-parse HEAD > .gpu/commit
echo "prepared .gpu/ ($(du -sh .gpu | cut -f1)) at $(cut -c1-12 .gpu/commit):"
ls .gpu/bin .gpu/lib
