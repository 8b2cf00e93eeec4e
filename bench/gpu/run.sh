#!/usr/bin/env bash
# On a GPU machine, in one call of under 8 minutes, from the binaries that
# bench/gpu/prepare.sh put in .gpu/ (carried with the working tree):
#   1. the CUDA device opens, and its op test (CUDA against CPU, every op
#      forward and backward, the training-step kernels);
#   2. one ResNet-50 training step on CUDA and on the CPU from the same
#      weights and batch, compared;
#   3. ResNet-50 at 224 on synthetic data: training steps and inference,
#      img/s, then timm's resnet50 in PyTorch (channels_last; fp32 with TF32
#      off, and bf16 autocast) in the same call, and the ratios;
#   4. time allowing: the op driver (where it has landed) and the engine's
#      op tests on cuda.
# Sizes: BATCH (256), SIZE (224), STEPS (200), WARMUP (10). Everything it
# prints also goes to $OUT/run.log when OUT is set (the device tool).
set -uo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS
BATCH=${BATCH:-256} SIZE=${SIZE:-224} STEPS=${STEPS:-200} WARMUP=${WARMUP:-10}
budget=${BUDGET:-450} # seconds before the optional parts are skipped
bin=.gpu/bin
if [ ! -x $bin/bench_gpu ]; then
  echo "no .gpu/bench_gpu: run bench/gpu/prepare.sh on the build machine and carry .gpu"
  exit 2
fi
section() { echo; echo "== $1 [$((SECONDS - start)) s] =="; }

run_all() {

# cuDNN and cuBLAS come from PyTorch's wheels here, the runtime from the
# toolkit or a wheel; our other libraries from .gpu/lib.
nvdirs=$(python3 - <<'EOF'
import os, sys
want = {"libcudnn.so.9", "libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13"}
roots = [p for p in sys.path if p.endswith("-packages") and os.path.isdir(p)]
dirs = []
for root in roots:
    for sub in ("nvidia", "torch"):
        for d, _, files in os.walk(os.path.join(root, sub)):
            if want & set(files) and d not in dirs:
                dirs.append(d)
print(":".join(dirs))
EOF
)
export LD_LIBRARY_PATH="$PWD/.gpu/lib:$nvdirs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"

section "machine"
echo "binaries of commit $(cat .gpu/commit 2>/dev/null || echo '?'), tree at $(git rev-parse HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldd $bin/bench_gpu | grep -E "cud|cublas|not found"

section "device open"
timeout 60 $bin/test_cuda_open

section "CUDA against CPU, op by op"
timeout 240 $bin/test_cuda_ops

section "ResNet-50 step: CUDA against CPU"
timeout 120 $bin/bench_gpu --check

results=$(mktemp)
section "ResNet-50 speed: the engine (batch $BATCH at $SIZE, $STEPS steps)"
timeout 300 $bin/bench_gpu --batch "$BATCH" --size "$SIZE" --steps "$STEPS" --warmup "$WARMUP" | tee -a "$results"

section "ResNet-50 speed: PyTorch + timm, channels_last"
timeout 300 python3 bench/gpu/bench_torch.py --batch "$BATCH" --size "$SIZE" --steps "$STEPS" \
  --warmup "$WARMUP" | tee -a "$results"

section "summary (img/s; ratio = engine / PyTorch at the same precision)"
awk '$1 == "RESULT" { v[$2 " " $4 " " $5] = $8 }
     END {
       printf "%-6s %-5s %12s %12s %8s\n", "mode", "prec", "usi", "torch", "ratio";
       split("train infer", modes, " "); split("fp32 bf16", precs, " ");
       for (i = 1; i <= 2; i++) for (j = 1; j <= 2; j++) {
         m = modes[i]; p = precs[j]; u = v["usi " m " " p]; t = v["torch " m " " p];
         printf "%-6s %-5s %12s %12s %8s\n", m, p, u ? u : "-", t ? t : "-", (u && t) ? sprintf("%.2fx", u / t) : "-";
       }
     }' "$results"
echo "(usi bf16 = precision \"mixed\": bf16 operands for conv, linear and matmul, fp32 activations in NCHW;"
echo " torch bf16 = autocast, channels_last)"
[ -n "${OUT:-}" ] && cp "$results" "$OUT/results.txt"

if [ -x $bin/test_backend_ops ] && [ $((SECONDS - start)) -lt "$budget" ]; then
  section "op driver on cuda"
  timeout $((budget + 60 - (SECONDS - start))) $bin/test_backend_ops
fi
for t in test_ops_nn test_ops_elem test_ops_shape; do
  if [ $((SECONDS - start)) -ge "$budget" ]; then
    echo "skipped $t and later: past ${budget} s"
    break
  fi
  section "$t on cuda (float64 references, finite differences)"
  USI_TEST_DEVICE=cuda timeout 60 $bin/$t | tail -5
done
section "done"
}

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  run_all 2>&1 | tee "$OUT/run.log"
else
  run_all
fi
