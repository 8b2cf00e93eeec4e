#!/usr/bin/env bash
# On a GPU machine, in one call of under 9 minutes, from the binaries that
# bench/gpu/prepare.sh put in .gpu/ (carried with the working tree), the
# correctness checks first, then the whole product, then speed:
#   1. the CUDA device opens (test_cuda_open);
#   2. the op driver: every op case on cpu, cpu-guarded and cuda, forward
#      against float64, backward against finite differences, cuda against
#      cpu (test_backend_ops), then every case again with activations kept
#      as bf16 against cpu in fp32; then test_cuda_ops (the step kernels,
#      dropout masks, precision "mixed");
#   3. one ResNet step on CUDA and on the CPU from the same weights, compared
#      (bench_gpu --check); the engine tests with USI_TEST_DEVICE=cuda;
#   4. `usi train` on cuda on real PNG files: a teacher, then a KD student
#      from its checkpoint, then `usi eval`; the same student on cpu;
#   5. the NCCL path with 1 rank (gradients, then dist.sync_bn) against a
#      plain run: the same losses;
#   6. every backbone plugin against timm's model of the same name (train +
#      infer, bench/zoo/bench_timm.py);
#   7. ResNet-50 at 224: the engine's img/s, then timm's resnet50 in
#      PyTorch in the same call, and the ratios.
# Sizes: BATCH (256), SIZE (224), STEPS (100), WARMUP (10), PROFILE (5 steps
# profiled op by op after the timed ones; 0: none). PARTS picks sections
# (default all: "ops check engine train dist zoo speed"). Everything it prints
# also goes to $OUT/run.log when OUT is set (the device tool).
set -uo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS
DEV=${DEV:-cuda} # another device (cpu-guarded) tries the script out on a machine without a GPU
BATCH=${BATCH:-256} SIZE=${SIZE:-224} STEPS=${STEPS:-100} WARMUP=${WARMUP:-10}
PROFILE=${PROFILE:-5} PARTS=${PARTS:-ops check engine train dist zoo speed}
budget=${BUDGET:-500} # seconds after which the later parts are skipped
bin=.gpu/bin
if [ -f .gpu/pack.tar.xz ] && [ ! -x $bin/bench_gpu ]; then
  python3 -c 'import tarfile; tarfile.open(".gpu/pack.tar.xz").extractall(".gpu")'
fi
if [ ! -x $bin/bench_gpu ]; then
  echo "no .gpu/bench_gpu: run bench/gpu/prepare.sh on the build machine and carry .gpu"
  exit 2
fi
section() { echo; echo "== $1 [$((SECONDS - start)) s] =="; }
part() { [[ " $PARTS " == *" $1 "* ]]; }
# time left before the budget, at most $1 seconds; 0 when past it
left() { local l=$((budget - (SECONDS - start))); [ $l -gt "$1" ] && l=$1; [ $l -lt 0 ] && l=0; echo $l; }
step() { # seconds, command...: runs it unless past the budget, says how it ended
  local t; t=$(left "$1"); shift
  if [ "$t" -le 5 ]; then echo "SKIPPED (past ${budget} s): $*"; return; fi
  local s0=$SECONDS; timeout "$t" "$@"; local rc=$?
  echo "-> rc $rc in $((SECONDS - s0)) s: $*"
}

run_all() {

# cuDNN and cuBLAS come from PyTorch's wheels here, the runtime from the
# toolkit or a wheel; our other libraries from .gpu/lib.
nvdirs=$(python3 - <<'EOF'
import os, sys
want = {"libcudnn.so.9", "libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13", "libnccl.so.2"}
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
step 30 $bin/test_cuda_open

if part ops; then
section "op driver: every case on cpu, cpu-guarded and cuda (fp32), then with activations kept as bf16"
OMP_WAIT_POLICY=passive step 150 $bin/test_backend_ops
section "the bf16 pass again with every node through fp32 copies (USI_BF16_NATIVE=off: the native kernels' A/B)"
USI_BF16_NATIVE=off OMP_WAIT_POLICY=passive step 150 $bin/test_backend_ops | grep -E "bf16|FAIL"
section "the bf16 pass again with activations NCHW (USI_CHANNELS_LAST=off: the channels-last kernels' A/B)"
USI_CHANNELS_LAST=off OMP_WAIT_POLICY=passive step 150 $bin/test_backend_ops | grep -E "bf16|FAIL"
section "the bf16 pass again with each batch norm and its ReLU apart (USI_FUSE=off: the fused kernels' A/B)"
USI_FUSE=off OMP_WAIT_POLICY=passive step 150 $bin/test_backend_ops | grep -E "bf16|FAIL"

section "CUDA against CPU: step kernels, dropout, mixed precision"
step 120 $bin/test_cuda_ops
section "the same with activations NCHW, every bf16 convolution's copies channels-last, then NCHW"
USI_CHANNELS_LAST=off USI_CUDA_CONV_LAYOUT=nhwc step 60 $bin/test_cuda_ops | grep -E "^bf16|FAIL|passed|failed"
USI_CHANNELS_LAST=off USI_CUDA_CONV_LAYOUT=nchw step 60 $bin/test_cuda_ops | grep -E "^bf16|FAIL|passed|failed"
section "batch norm and the ResNet stages on our batch-norm kernels instead of cuDNN's"
USI_CUDA_BATCH_NORM=ours step 60 $bin/test_cuda_ops | grep -E "batch norm|stage|FAIL|passed|failed"
fi

if part check; then
section "one training step: CUDA against CPU, beside the CPU's own noise floor"
step 90 $bin/bench_gpu --check --device $DEV
step 90 $bin/bench_gpu --check --device $DEV --model resnet18 --check-batch 16 --check-size 96
section "every node of that step: where the device and the CPU part"
step 90 $bin/bench_gpu --check-nodes --device $DEV --model resnet18 --check-batch 16 --check-size 96
section "every node in bf16, beside what bf16 storage alone does (cpu-guarded under mixed)"
step 120 $bin/bench_gpu --check-nodes --device $DEV --model resnet18 --check-batch 8 --check-size 64 \
  --precision mixed
section "every node in bf16 with activations NCHW (USI_CHANNELS_LAST=off)"
USI_CHANNELS_LAST=off step 120 $bin/bench_gpu --check-nodes --device $DEV --model resnet18 --check-batch 8 \
  --check-size 64 --precision mixed | tail -12
section "the ResNet-18 step again with batch norm on our kernels (USI_CUDA_BATCH_NORM=ours), not cuDNN's"
USI_CUDA_BATCH_NORM=ours step 90 $bin/bench_gpu --check --device $DEV --model resnet18 --check-batch 16 \
  --check-size 96
fi

if part engine; then
section "engine tests on cuda"
USI_TEST_DEVICE=$DEV step 60 $bin/test_graph
USI_TEST_DEVICE=$DEV USI_FASHION_MNIST_DIR=.gpu/data/ step 60 $bin/test_fashion_mnist
step 60 $bin/usi summary resnet50 --plugin-dir .gpu/plugins --device $DEV --batch 256
step 60 $bin/usi summary resnet50 --plugin-dir .gpu/plugins --device $DEV --batch 256 --precision fp32 | tail -3
fi

if part train; then
section "usi train on cuda: teacher, KD student, eval; the teacher again on cpu"
usi=(step 120 $bin/usi)
runs=$(mktemp -d)
fm=(samples/fashion_mnist.cfg --plugin-dir .gpu/plugins --set data.train=.gpu/data/fmnist/train
    --set data.val=.gpu/data/fmnist/val --set data.workers=8)
"${usi[@]}" config show "${fm[@]}" --set device=$DEV | grep -E "device|precision" 
"${usi[@]}" train "${fm[@]}" --set device=$DEV --set backbone.name=resnet18 --set backbone.stem=timm \
  --set schedule.epochs=3 --set output_dir="$runs/teacher"
"${usi[@]}" train "${fm[@]}" --set device=$DEV --set backbone.name=mobilenetv3_small_100 \
  --set teacher.name=model --set teacher.backbone=resnet18 --set teacher.backbone_options='stem = "timm";' \
  --set teacher.weights="$runs/teacher/best.safetensors" --set teacher.mean='[0.286, 0.286, 0.286]' \
  --set teacher.std='[0.353, 0.353, 0.353]' --set schedule.epochs=3 \
  --set output_dir="$runs/kd"
"${usi[@]}" eval "${fm[@]}" --set device=$DEV --set backbone.name=mobilenetv3_small_100 \
  --checkpoint "$runs/kd/best.safetensors"
"${usi[@]}" train "${fm[@]}" --set device=cpu --set backbone.name=resnet18 --set backbone.stem=timm \
  --set schedule.epochs=3 --set output_dir="$runs/teacher_cpu"
for r in teacher teacher_cpu kd; do echo "$r: $(tail -1 "$runs/$r/metrics.jsonl" 2>/dev/null)"; done
fi

if part dist; then
section "the reductions over ranks on one GPU: NCCL with 1 rank against no reduction"
# One process may run the NCCL path (dist.backend = "nccl" names it): the
# gradients go through ncclAllReduce over a 1-rank communicator, and with
# dist.sync_bn every batch norm's sums through NCCL on the backend's stream
# and our kernels instead of cuDNN's. Both must give the losses of a plain
# run, within the plain run's own drift from itself (cuDNN's algorithms may
# sum in another order on each run).
runs=$(mktemp -d)
fm=(samples/fashion_mnist.cfg --plugin-dir .gpu/plugins --set data.train=.gpu/data/fmnist/train
    --set data.val=.gpu/data/fmnist/val --set data.workers=8 --set device=$DEV --set seed=3
    --set backbone.name=resnet18 --set backbone.stem=timm --set schedule.epochs=1 --set metrics_every=1)
dist_runs=(plain plain_again)
if [[ $DEV == cuda* ]]; then dist_runs+=(nccl nccl_sync_bn); fi
for r in "${dist_runs[@]}"; do
  extra=()
  case $r in
    nccl) extra=(--set dist.backend=nccl) ;;
    nccl_sync_bn) extra=(--set dist.backend=nccl --set dist.sync_bn=true) ;;
  esac
  step 60 $bin/usi train "${fm[@]}" "${extra[@]}" --set output_dir="$runs/$r" >"$runs/$r.log" 2>&1
  grep -E "^-> rc|all-reduced|batch norm:|error" "$runs/$r.log"
done
losses() { grep '"loss"' "$1" | sed 's/.*"step": \([0-9]*\), "loss": \([^,]*\),.*/\1 \2/' | sort -n | uniq; }
worst() { # a b: steps compared and the largest relative loss difference
  join <(losses "$runs/$1/metrics.jsonl") <(losses "$runs/$2/metrics.jsonl") | awk '
    { n++; d = $2 - $3; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2); if (r > w) w = r }
    END { printf "%d %.3g\n", n, w }'
}
read -r n floor < <(worst plain plain_again)
echo "plain against plain again: $n steps, largest relative loss difference $floor (the floor)"
for r in "${dist_runs[@]:2}"; do
  read -r n d < <(worst plain "$r")
  verdict=$(awk -v d="$d" -v f="$floor" -v n="$n" 'BEGIN { print (n > 0 && d <= 10 * f + 1e-5) ? "PASS" : "FAIL" }')
  echo "$verdict: plain against $r: $n steps, largest relative loss difference $d (passes within 10x the floor + 1e-5)"
done
fi

if part zoo; then
section "every backbone on $DEV against timm's model of the same name (bf16 both), train and infer"
step 240 python3 bench/zoo/bench_timm.py $bin/usi --plugin-dir .gpu/plugins --device $DEV --batch 64 \
  --steps 5 --warmup 2 --train --precision mixed --csv "${OUT:-/tmp}/zoo.csv"
fi

if part speed; then
results=$(mktemp)
section "ResNet-50 speed: the engine (batch $BATCH at $SIZE, $STEPS steps)"
step 150 $bin/bench_gpu --device $DEV --batch "$BATCH" --size "$SIZE" --steps "$STEPS" --warmup "$WARMUP" \
  --profile "$PROFILE" | tee -a "$results"
section "the same in bf16 with activations NCHW (USI_CHANNELS_LAST=off: channels-last storage's A/B)"
USI_CHANNELS_LAST=off step 100 $bin/bench_gpu --device $DEV --batch "$BATCH" --size "$SIZE" --steps "$STEPS" \
  --warmup "$WARMUP" --precision mixed | sed 's/^RESULT/NCHW-ACT-RESULT/'
section "the same in bf16 with activations NCHW and every convolution's copies NCHW (the layout choice's A/B)"
USI_CHANNELS_LAST=off USI_CUDA_CONV_LAYOUT=nchw step 100 $bin/bench_gpu --device $DEV --batch "$BATCH" --size "$SIZE" --steps "$STEPS" \
  --warmup "$WARMUP" --precision mixed | sed 's/^RESULT/NCHW-RESULT/'
section "the same in bf16 with activations kept fp32 (USI_BF16_ACTIVATIONS=off: bf16 storage's A/B)"
USI_BF16_ACTIVATIONS=off step 100 $bin/bench_gpu --device $DEV --batch "$BATCH" --size "$SIZE" --steps "$STEPS" \
  --warmup "$WARMUP" --precision mixed | sed 's/^RESULT/F32-ACT-RESULT/'
section "the same in bf16 with every node through fp32 copies (USI_BF16_NATIVE=off)"
USI_BF16_NATIVE=off step 100 $bin/bench_gpu --device $DEV --batch "$BATCH" --size "$SIZE" --steps "$STEPS" \
  --warmup "$WARMUP" --precision mixed | sed 's/^RESULT/COPIES-RESULT/'

section "the same in bf16 with each batch norm and its ReLU apart (USI_FUSE=off: the fused kernels' A/B)"
USI_FUSE=off step 100 $bin/bench_gpu --device $DEV --batch "$BATCH" --size "$SIZE" --steps "$STEPS" \
  --warmup "$WARMUP" --precision mixed | sed 's/^RESULT/UNFUSED-RESULT/'

section "the same with every pass node by node (USI_GRAPH_REPLAY=off: graph replay's A/B)"
USI_GRAPH_REPLAY=off step 100 $bin/bench_gpu --device $DEV --batch "$BATCH" --size "$SIZE" --steps "$STEPS" \
  --warmup "$WARMUP" --precision mixed | sed 's/^RESULT/NO-REPLAY-RESULT/'

section "ResNet-50 speed: PyTorch + timm, channels_last"
step 150 python3 bench/gpu/bench_torch.py --batch "$BATCH" --size "$SIZE" --steps "$STEPS" \
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
echo "(usi bf16 = precision \"mixed\": bf16 operands for conv, linear and matmul, activations kept as bf16 and"
echo " channels-last, batch norms applying their ReLU; torch bf16 = autocast, channels_last)"
[ -n "${OUT:-}" ] && cp "$results" "$OUT/results.txt"
fi
section "done"
}

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  run_all 2>&1 | tee "$OUT/run.log"
else
  run_all
fi
