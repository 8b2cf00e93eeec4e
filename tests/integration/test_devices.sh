#!/usr/bin/env bash
# The device seam end to end: the same distillation run (a teacher at
# another input size and normalisation, so its input conversion runs on the
# device) on "cpu" and on "cpu-guarded", whose memory host code cannot touch,
# gives the same losses bit for bit and the same accuracy; `usi eval` agrees
# on both; devices this build lacks or that do not exist are refused in one
# line before anything is written; precision "mixed" shows as what runs,
# and on cpu-guarded with USI_GUARDED_BF16=1 keeps activations as bf16; with
# USI_GUARDED_NHWC=1 channels-last, with cpu's logged numbers.
set -u
build=${1:?usage: test_devices.sh BUILD_ROOT TINY_FOLDER_TOOL}
tiny=${2:?usage: test_devices.sh BUILD_ROOT TINY_FOLDER_TOOL BAD_HEAD_PLUGIN}
bad_head=${3:?usage: test_devices.sh BUILD_ROOT TINY_FOLDER_TOOL BAD_HEAD_PLUGIN}
usi="$build/core/cli/usi"
. "$(dirname "$0")/lib.sh"

"$tiny" /usr/share/datasets/fashion-mnist "$T/data" 16 6 || { echo "FAIL: could not write the test images"; exit 1; }
cat >"$T/run.cfg" <<CFG
backbone = { name = "mobilenetv3_small_100"; };
threads = 2;
data = { train = "$T/data/train"; val = "$T/data/val"; img_size = 28; batch_size = 16; workers = 2;
         mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; repeated_aug = 1; };
augment = ( { name = "random_resized_crop"; scale = [0.6, 1.0]; }, { name = "hflip"; } );
optimizer = { lr = 0.03; clip_grad = 0.5; };
schedule = { epochs = 1; warmup_epochs = 0; cooldown_epochs = 0; };
CFG
losses() { grep '"loss"' "$1" | sed 's/.*"step": \([0-9]*\), "loss": \([^,]*\),.*/\1 \2/'; }

# A teacher to distil from, trained on the CPU.
"$usi" train "$T/run.cfg" --set output_dir="$T/teacher" >"$T/teacher.log" 2>&1 || fail "teacher: $(tail -3 "$T/teacher.log")"
kd=(--set teacher.name=model --set teacher.backbone=mobilenetv3_small_100 --set teacher.img_size=32
    --set teacher.weights="$T/teacher/best.safetensors"
    --set teacher.mean='[0.5, 0.5, 0.5]' --set teacher.std='[0.25, 0.25, 0.25]')
# USI_GRAPH_REPLAY=on: cpu-guarded records the teacher's forward pass and the
# training step's forward and backward passes, and replays them (each checked
# against the same pass node by node first), whatever their time.
for dev in cpu cpu-guarded; do
    if USI_GRAPH_REPLAY=on "$usi" train "$T/run.cfg" --set output_dir="$T/$dev" --set device="$dev" "${kd[@]}" \
        >"$T/$dev.log" 2>&1; then ok
    else fail "KD run on $dev: $(tail -3 "$T/$dev.log")"; fi
    grep -q "training graph on $dev" "$T/$dev.log" && ok || fail "$dev: the log does not name the device"
done
losses "$T/cpu/metrics.jsonl" >"$T/cpu.loss"
losses "$T/cpu-guarded/metrics.jsonl" >"$T/guarded.loss"
[ -s "$T/cpu.loss" ] && cmp -s "$T/cpu.loss" "$T/guarded.loss" && ok \
    || fail "losses differ between cpu and cpu-guarded: $(diff "$T/cpu.loss" "$T/guarded.loss" | head -4)"
top() { grep -o '"top1": [0-9.]*' "$1" | tail -1; }
[ -n "$(top "$T/cpu/metrics.jsonl")" ] && [ "$(top "$T/cpu/metrics.jsonl")" = "$(top "$T/cpu-guarded/metrics.jsonl")" ] \
    && ok || fail "top-1 differs: $(top "$T/cpu/metrics.jsonl") vs $(top "$T/cpu-guarded/metrics.jsonl")"
grep -q 'teacher .model.: top-1' "$T/cpu-guarded.log" && ok || fail "the teacher was not evaluated on cpu-guarded"
grep -q 'graph replay (.*replaying it' "$T/cpu-guarded.log" && ok || fail "cpu-guarded did not replay the teacher's pass"
grep -q 'graph replay (.*backward): .*replaying it' "$T/cpu-guarded.log" && ok \
    || fail "cpu-guarded did not replay the training step's backward pass"
! grep -q 'graph replay' "$T/cpu.log" && ok || fail "the cpu device recorded a pass"
# cpu-guarded runs each batch norm read by a ReLU alone as one node, as a
# GPU does under mixed (core/graph/fuse.c), with cpu's numbers (above):
# MobileNetV3-Small's ReLU blocks, the first's depthwise norm and the next
# two's expansion and depthwise norms; its other blocks use hard-swish.
grep -q 'fused: 5 batch norms apply their ReLU in their own kernels on cpu-guarded' "$T/cpu-guarded.log" && ok \
    || fail "cpu-guarded did not fuse MobileNetV3-Small's 5 norm and ReLU pairs: $(grep 'fused:' "$T/cpu-guarded.log")"
! grep -q 'fused:' "$T/cpu.log" && ok || fail "the cpu device fused a pair"
# cpu-guarded has input stages as a GPU has: its batches took that path,
# as uint8 images normalised on the device (this chain has no Mixup/CutMix).
grep -q 'input: each batch is made and uploaded to cpu-guarded .*as uint8 images' "$T/cpu-guarded.log" && ok \
    || fail "the cpu-guarded run did not stage its input as uint8"
! grep -q 'input: each batch is made and uploaded' "$T/cpu.log" && ok || fail "the cpu run staged its input"
# With Mixup/CutMix the floats are made on the host and staged as floats:
# the same losses again.
mix=(--set 'augment=({ name = "random_resized_crop"; scale = [0.6, 1.0]; }, { name = "mixup_cutmix"; })'
     --set schedule.epochs=1 --set eval.every_epochs=1)
for dev in cpu cpu-guarded; do
    "$usi" train "$T/run.cfg" --set output_dir="$T/mix-$dev" --set device="$dev" "${mix[@]}" >"$T/mix-$dev.log" 2>&1 \
        && ok || fail "Mixup run on $dev: $(tail -3 "$T/mix-$dev.log")"
done
losses "$T/mix-cpu/metrics.jsonl" >"$T/mix-cpu.loss"
losses "$T/mix-cpu-guarded/metrics.jsonl" >"$T/mix-guarded.loss"
[ -s "$T/mix-cpu.loss" ] && cmp -s "$T/mix-cpu.loss" "$T/mix-guarded.loss" && ok \
    || fail "Mixup losses differ between cpu and cpu-guarded: $(diff "$T/mix-cpu.loss" "$T/mix-guarded.loss" | head -4)"
grep 'input: each batch is made and uploaded to cpu-guarded' "$T/mix-cpu-guarded.log" | grep -vq 'uint8' && ok \
    || fail "the Mixup run on cpu-guarded did not stage floats"
grep -q 'precision "mixed" runs as fp32 on device cpu' "$T/cpu.log" && ok || fail "no word that mixed runs as fp32"
grep -q 'precision "mixed" runs as fp32 on device cpu-guarded' "$T/cpu-guarded.log" && ok \
    || fail "cpu-guarded does not say that mixed runs as fp32 there without USI_GUARDED_BF16=1"
[ "$(grep -c 'precision "mixed"' "$T/cpu.log")" -eq 1 ] && ok || fail "the precision note is not said exactly once"

# usi eval of the same checkpoint on both devices.
e1=$("$usi" eval "$T/run.cfg" --checkpoint "$T/cpu/last.safetensors" --json 2>/dev/null | grep -o '"top1": [0-9.]*')
e2=$("$usi" eval "$T/run.cfg" --checkpoint "$T/cpu/last.safetensors" --json --set device=cpu-guarded 2>/dev/null \
     | grep -o '"top1": [0-9.]*')
[ -n "$e1" ] && [ "$e1" = "$e2" ] && ok || fail "usi eval: cpu '$e1', cpu-guarded '$e2'"

# Activations kept channels-last ([N,H,W,C], as on a GPU under "mixed") on
# cpu-guarded with USI_GUARDED_NHWC=1: binary ops and reductions run on them
# in memory order, every other kernel on NCHW copies, so the logged losses
# and the evaluation are cpu's, the passes still recorded and replayed.
if USI_GUARDED_NHWC=1 USI_GRAPH_REPLAY=on "$usi" train "$T/run.cfg" --set output_dir="$T/nhwc" --set device=cpu-guarded \
    "${kd[@]}" >"$T/nhwc.log" 2>&1; then ok; else fail "KD run channels-last: $(tail -3 "$T/nhwc.log")"; fi
grep -qE 'layout: [0-9]+ activations and their gradients kept channels-last \(NHWC\) on cpu-guarded' "$T/nhwc.log" \
    && ok || fail "the channels-last run does not say it keeps activations so"
! grep -q 'channels-last' "$T/cpu-guarded.log" && ok || fail "cpu-guarded kept activations channels-last unasked"
grep -q 'graph replay (.*backward): .*replaying it' "$T/nhwc.log" && ok || fail "the channels-last run replayed no backward pass"
losses "$T/nhwc/metrics.jsonl" >"$T/nhwc.loss"
cmp -s "$T/cpu.loss" "$T/nhwc.loss" && ok \
    || fail "channels-last losses differ from cpu's: $(diff "$T/cpu.loss" "$T/nhwc.loss" | head -4)"
e4=$(USI_GUARDED_NHWC=1 "$usi" eval "$T/run.cfg" --checkpoint "$T/cpu/last.safetensors" --json --set device=cpu-guarded \
     2>/dev/null | grep -o '"top1": [0-9.]*')
[ -n "$e4" ] && [ "$e4" = "$e1" ] && ok || fail "usi eval channels-last: '$e4', cpu '$e1'"

# Precision "mixed" on cpu-guarded with USI_GUARDED_BF16=1: activations and
# their gradients kept as bf16 as on a GPU (the log says how many), the
# passes still recorded and replayed; the losses are the fp32 run's to
# bf16's precision, and not the same.
if USI_GUARDED_BF16=1 USI_GRAPH_REPLAY=on "$usi" train "$T/run.cfg" --set output_dir="$T/bf16" --set device=cpu-guarded "${kd[@]}" \
    >"$T/bf16.log" 2>&1; then ok; else fail "KD run in mixed precision: $(tail -3 "$T/bf16.log")"; fi
grep -qE 'precision "mixed": [0-9]+ activations and their gradients kept as bf16' "$T/bf16.log" && ok \
    || fail "the mixed run does not say it keeps activations as bf16"
grep -q 'graph replay (.*backward): .*replaying it' "$T/bf16.log" && ok || fail "the mixed run replayed no backward pass"
losses "$T/bf16/metrics.jsonl" >"$T/bf16.loss"
python3 - "$T/guarded.loss" "$T/bf16.loss" <<'PY' && ok || fail "mixed-precision losses: $(paste "$T/guarded.loss" "$T/bf16.loss" | head -3)"
import sys
a = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
b = [tuple(map(float, l.split())) for l in open(sys.argv[2])]
assert a and [s for s, _ in a] == [s for s, _ in b], "other steps"
rel = [abs(x - y) / abs(x) for (_, x), (_, y) in zip(a, b)]
print("mixed vs fp32 losses, relative: largest %.2e over %d steps" % (max(rel), len(rel)))
assert 0 < max(rel) < 0.1, rel
PY
e3=$(USI_GUARDED_BF16=1 "$usi" eval "$T/run.cfg" --checkpoint "$T/cpu/last.safetensors" --json --set device=cpu-guarded 2>/dev/null \
     | grep -o '"top1": [0-9.]*' | grep -o '[0-9.]*$')
python3 -c "import sys; sys.exit(0 if abs(float('$e3' or 'nan') - float('${e2##* }')) <= 10 else 1)" && ok \
    || fail "usi eval in mixed precision: top-1 $e3, fp32 ${e2##* }"

# Refusals: one line, exit 1, nothing written.
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/cuda" --set device=cuda 2>&1)
rc=$?
if [ $rc -eq 1 ] && grep -q 'device = "cuda": this build of usi has no CUDA backend' <<<"$out" \
   && [ "$(grep -vc '^usi: info' <<<"$out")" -eq 1 ]; then ok
elif [ $rc -eq 1 ] && grep -q "device 'cuda'" <<<"$out"; then ok   # a CUDA build on a machine without a GPU
else fail "device cuda: exit $rc: $out"; fi
[ ! -e "$T/cuda" ] && ok || fail "a refused device still created the output folder"
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/tpu" --set device=tpu 2>&1)
[ $? -eq 1 ] && grep -q 'unknown device; valid devices: cpu, cpu-guarded, cuda, cuda:N' <<<"$out" && ok \
    || fail "unknown device: $out"
out=$("$usi" config show "$T/run.cfg" --set device=cuda:x 2>&1)
[ $? -eq 1 ] && grep -q 'device = "cuda:x": unknown device' <<<"$out" && ok || fail "cuda:x: $out"
out=$("$usi" config show "$T/run.cfg" 2>&1)
grep -q '^precision = "fp32";' <<<"$out" && grep -q '^device = "cpu";' <<<"$out" && ok \
    || fail "config show does not print what runs: $(grep -E 'precision|device' <<<"$out")"

# usi plugins says which devices this build and machine have.
out=$("$usi" plugins 2>&1)
grep -qE '^  cpu-guarded +available$' <<<"$out" && grep -qE '^  cuda +(device .cuda.: |available)' <<<"$out" && ok \
    || fail "usi plugins does not list the devices: $(grep -A4 '^devices' <<<"$out")"
json=$("$usi" plugins --json 2>/dev/null)
python3 -c 'import json,sys; d={x["name"]: x for x in json.load(sys.stdin)["devices"]}; sys.exit(0 if d["cpu"]["available"] and (d["cuda"]["available"] or d["cuda"]["why"]) else 1)' <<<"$json" \
    && ok || fail "usi plugins --json has no devices"

# A plugin's shape error names the component, its file and the layer.
mkdir -p "$T/plugins" && cp "$bad_head" "$T/plugins/" && chmod -R go-w "$T/plugins"
out=$("$usi" train "$T/run.cfg" --plugin-dir "$T/plugins" --set backbone.name=bad_head --set output_dir="$T/bad" 2>&1)
[ $? -eq 1 ] && grep -q "backbone 'bad_head' ($T/plugins/bad_head.so): .*linear 'head.fc': " <<<"$out" && ok \
    || fail "a plugin's shape error: $out"

finish
