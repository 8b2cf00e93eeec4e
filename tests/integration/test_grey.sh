#!/usr/bin/env bash
# A backbone of in_chans 1 trains, evaluates and predicts on the loader's
# RGB images through their luma (Pillow's convert("L") weights). Checked
# against a second path: the same weights as a 3-channel network whose first
# convolution holds the grey one's kernel times each channel's luma weight,
# fed the images normalised with the same single mean and std, must give the
# same logits. The grey model serves as a teacher. Counts other than 1 and 3,
# and a mean of 2 values, are refused.
set -u
build=${1:?usage: test_grey.sh BUILD_ROOT TINY_FOLDER_TOOL}
tiny=${2:?usage: test_grey.sh BUILD_ROOT TINY_FOLDER_TOOL}
usi="$build/core/cli/usi"
. "$(dirname "$0")/lib.sh"

"$tiny" /usr/share/datasets/fashion-mnist "$T/data" 16 6 || { echo "FAIL: could not write the test images"; exit 1; }
cat >"$T/run.cfg" <<CFG
backbone = { name = "resnet18"; in_chans = 1; };
threads = 2;
data = { train = "$T/data/train"; val = "$T/data/val"; img_size = 28; batch_size = 16; workers = 2;
         mean = [0.286]; std = [0.353]; repeated_aug = 1; };
augment = ( { name = "random_resized_crop"; scale = [0.8, 1.0]; }, { name = "hflip"; } );
optimizer = { lr = 0.01; };
schedule = { epochs = 1; warmup_epochs = 0; cooldown_epochs = 0; };
CFG
header() { head -c 20000 "$1" | tr -d '\0'; }

out=$("$usi" train "$T/run.cfg" --set output_dir="$T/grey" 2>&1)
[ $? -eq 0 ] && ok || fail "training with in_chans = 1: $(tail -3 <<<"$out")"
grep -q "the backbone reads the images' luma (0.299 R + 0.587 G + 0.114 B), normalised with mean 0.286 and std 0.353" \
    <<<"$out" && ok || fail "training does not say how the grey channel is made: $(grep luma <<<"$out")"
best=$(grep -o 'best top-1 [0-9.]*' <<<"$out" | awk '{print $3}')
h=$(header "$T/grey/best.safetensors")
grep -q '"conv1.weight":{"dtype":"F32","shape":\[64,1,' <<<"$h" && ok || fail "conv1 is not [64, 1, ...]: $h"
grep -q '"mean":"\[0.286\]"' <<<"$h" && grep -q '"std":"\[0.353\]"' <<<"$h" && ok \
    || fail "the file does not store the grey channel's mean and std: $(grep -o '"mean":"[^"]*"' <<<"$h")"

# usi eval and usi predict build the same input from the file alone.
out=$("$usi" eval "$T/run.cfg" --checkpoint "$T/grey/best.safetensors" --json 2>&1)
got=$(grep -o '"top1": [0-9.]*' <<<"$out" | awk '{printf "%.2f", $2}')
[ -n "$best" ] && [ "$got" = "$best" ] && ok || fail "eval: top-1 '$got', training said '$best': $out"
# The same on cpu-guarded with channels-last activations, as a GPU keeps
# them (the luma sum then runs over the last axis in memory).
out=$(USI_GUARDED_NHWC=1 "$usi" eval "$T/run.cfg" --checkpoint "$T/grey/best.safetensors" --set device=cpu-guarded \
      --json 2>&1)
got=$(grep -o '"top1": [0-9.]*' <<<"$out" | awk '{printf "%.2f", $2}')
[ -n "$best" ] && [ "$got" = "$best" ] && ok || fail "eval on cpu-guarded, channels-last: top-1 '$got', not '$best': $out"
# Grey files and colour photographs (where the luma weights matter).
photos=/usr/share/doc/opencv-doc/examples/data
imgs="$(ls "$T"/data/val/*/*.png | head -12) $photos/baboon.jpg $photos/fruits.jpg $photos/HappyFish.jpg $photos/butterfly.jpg"
"$usi" predict --weights "$T/grey/best.safetensors" --logits "$T/grey.safetensors" $imgs >/dev/null 2>"$T/p1.err" \
    && ok || fail "predict with in_chans = 1: $(tail -2 "$T/p1.err")"

# The 3-channel twin: conv1[:, c] = grey conv1 * luma[c].
python3 - "$T/grey/best.safetensors" "$T/rgb.safetensors" <<'PY'
import array, json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
head, data = json.loads(b[8:8 + n]), b[8 + n:]
meta = head.pop('__metadata__')
meta['backbone_options'] = meta['backbone_options'].replace('in_chans = 1', 'in_chans = 3')
out, blob = {'__metadata__': meta}, b''
for k, v in head.items():
    s, e = v['data_offsets']
    raw = data[s:e]
    if k == 'conv1.weight':
        o, i, kh, kw = v['shape']
        w = array.array('f', raw)
        w3 = array.array('f')
        for oc in range(o):
            kernel = w[oc * kh * kw:(oc + 1) * kh * kw]
            for luma in (0.299, 0.587, 0.114):
                w3.extend(x * luma for x in kernel)
        raw = w3.tobytes()
        v = dict(v, shape=[o, 3, kh, kw])
    out[k] = dict(v, data_offsets=[len(blob), len(blob) + len(raw)])
    blob += raw
h = json.dumps(out).encode()
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(h)) + h + blob)
PY
# relative difference of two --logits files, or "-" when they differ in size
compare() {
    python3 - "$1" "$2" <<'PY'
import array, json, struct, sys
def logits(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    v = json.loads(b[8:8 + n])['logits']
    s, e = v['data_offsets']
    return array.array('f', b[8 + n + s:8 + n + e])
a, b = logits(sys.argv[1]), logits(sys.argv[2])
ok = len(a) == len(b) and len(a) > 0
print("%.3g" % (max(abs(x - y) for x, y in zip(a, b)) / max(abs(x) for x in b)) if ok else "-")
PY
}
small() { python3 -c "import sys; sys.exit(not ('$1' != '-' and float('$1') < 1e-4))"; }
"$usi" predict --weights "$T/rgb.safetensors" --set backbone.in_chans=3 --logits "$T/rgb_logits.safetensors" $imgs \
    >/dev/null 2>"$T/p3.err" && ok || fail "predict with the 3-channel twin: $(tail -2 "$T/p3.err")"
rel=$(compare "$T/grey.safetensors" "$T/rgb_logits.safetensors")
small "$rel" && ok || fail "grey input and its 3-channel twin disagree: relative difference $rel"

# Per-channel mean and std (ImageNet's): the grey channel is normalised with
# their luma weighing, which the twin gets as its single mean and std.
"$usi" predict --weights "$T/grey/best.safetensors" --set 'data.mean=[0.485, 0.456, 0.406]' \
    --set 'data.std=[0.229, 0.224, 0.225]' --logits "$T/grey_in.safetensors" $imgs >/dev/null 2>"$T/p4.err" \
    && ok || fail "predict with in_chans = 1 and ImageNet's mean and std: $(tail -2 "$T/p4.err")"
m=$(python3 -c 'print(repr(0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406))')
s=$(python3 -c 'print(repr(0.299 * 0.229 + 0.587 * 0.224 + 0.114 * 0.225))')
"$usi" predict --weights "$T/rgb.safetensors" --set backbone.in_chans=3 --set "data.mean=[$m]" --set "data.std=[$s]" \
    --logits "$T/rgb_in.safetensors" $imgs >/dev/null 2>"$T/p5.err" \
    && ok || fail "predict with the twin, mean $m, std $s: $(tail -2 "$T/p5.err")"
rel=$(compare "$T/grey_in.safetensors" "$T/rgb_in.safetensors")
small "$rel" && ok || fail "with ImageNet's mean and std, grey input and its twin disagree: relative difference $rel"

# The grey model as a teacher: backbone, options, mean and std from its file;
# it reads the luma too, so its top-1 is the one it trained to.
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/kd" --set teacher.name=model \
      --set teacher.weights="$T/grey/best.safetensors" 2>&1)
rc=$?
teacher=$(grep -o "teacher 'model': top-1 [0-9.]*" <<<"$out" | awk '{print $4}')
[ $rc -eq 0 ] && [ -n "$best" ] && [ "$teacher" = "$best" ] && ok \
    || fail "KD from the grey model: exit $rc, teacher top-1 '$teacher', trained to '$best': $(tail -3 <<<"$out")"

# Refused: other channel counts, a mean of 2 values.
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/two" --set backbone.in_chans=2 2>&1)
[ $? -eq 1 ] && grep -q "backbone.in_chans = 2: usi reads images as RGB (3 channels) or grey (1)" <<<"$out" && ok \
    || fail "in_chans = 2: $out"
[ ! -e "$T/two" ] && ok || fail "a refused run left $T/two"
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/two" --set 'data.mean=[0.5, 0.5]' 2>&1)
[ $? -eq 1 ] && grep -q "'data.mean' has 2 values; give 3, one per channel (R, G, B), or 1 for all" <<<"$out" && ok \
    || fail "a mean of 2 values: $out"
finish
