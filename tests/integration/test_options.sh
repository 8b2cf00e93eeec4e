#!/usr/bin/env bash
# A backbone's options travel with its weights: a MobileNetV3 trained with
# the small stem at 72 px (where "auto" would pick timm's stem) writes its
# options into its files and says it is not timm's network of that name;
# `usi eval` and a `model` teacher that do not repeat the option still build
# it as trained and reproduce its accuracy. A ResNet at 28 px is flagged with
# "auto" (which picks the small stem there) and not with the timm stem.
set -u
build=${1:?usage: test_options.sh BUILD_ROOT TINY_FOLDER_TOOL}
tiny=${2:?usage: test_options.sh BUILD_ROOT TINY_FOLDER_TOOL}
usi="$build/core/cli/usi"
. "$(dirname "$0")/lib.sh"

"$tiny" /usr/share/datasets/fashion-mnist "$T/data" 16 6 || { echo "FAIL: could not write the test images"; exit 1; }
cat >"$T/run.cfg" <<CFG
backbone = { name = "mobilenetv3_small_100"; };
threads = 2;
data = { train = "$T/data/train"; val = "$T/data/val"; img_size = 72; batch_size = 16; workers = 2;
         mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; repeated_aug = 1; };
# 28 px images to 72 px: random_resized_crop resizes (without it every image
# is skipped, and a run that trains no step is an error)
augment = ( { name = "random_resized_crop"; scale = [0.6, 1.0]; }, { name = "hflip"; } );
optimizer = { lr = 0.03; };
schedule = { epochs = 1; warmup_epochs = 0; cooldown_epochs = 0; };
CFG
header() { head -c 20000 "$1" | tr -d '\0'; }

out=$("$usi" train "$T/run.cfg" --set output_dir="$T/small" --set backbone.stem=small 2>&1)
[ $? -eq 0 ] && ok || fail "training with the small stem: $(tail -3 <<<"$out")"
grep -q "mobilenetv3_small_100 with .*stem = \"small\".* is not timm's mobilenetv3_small_100 network" <<<"$out" \
    && ok || fail "no warning that the network is not timm's: $(grep -i warn <<<"$out")"
best=$(grep -o 'best top-1 [0-9.]*' <<<"$out" | awk '{print $3}')
for f in best last; do
    h=$(header "$T/small/$f.safetensors")
    grep -q '"backbone_options":"[^"]*stem = \\"small\\"' <<<"$h" && grep -q '"timm_network":"false"' <<<"$h" && ok \
        || fail "$f.safetensors does not store the options: $(grep -o '"backbone_options":"[^"]*"' <<<"$h")"
done

# usi eval with the config that does not name the stem.
out=$("$usi" eval "$T/run.cfg" --checkpoint "$T/small/best.safetensors" --json 2>&1)
got=$(grep -o '"top1": [0-9.]*' <<<"$out" | awk '{printf "%.2f", $2}')
[ -n "$best" ] && [ "$got" = "$best" ] && ok || fail "eval without the stem: top-1 '$got', training said '$best': $out"
grep -q "backbone options from the file: .*stem" <<<"$out" && ok || fail "eval does not say it took the stem: $out"

# usi predict with the file alone: class names, options and transform from
# the file; its top-1 over the val images is usi eval's.
imgs=$(ls "$T"/data/val/*/*.png)
out=$("$usi" predict --weights "$T/small/best.safetensors" --json --topk 3 --logits "$T/logits.safetensors" $imgs 2>"$T/predict.err")
[ $? -eq 0 ] && ok || fail "predict: $(cat "$T/predict.err")"
acc=$(python3 -c '
import json, sys
rows = json.loads(sys.stdin.read())
right = sum(r["top"][0]["name"] == r["image"].split("/")[-2] for r in rows)
print("%.2f %d %d" % (100.0 * right / len(rows), len(rows), min(len(r["top"]) for r in rows)))' <<<"$out")
[ "$acc" = "$best $(wc -w <<<"$imgs") 3" ] && ok || fail "predict: top-1, images, top-k '$acc', want '$best $(wc -w <<<"$imgs") 3'"
h=$(header "$T/logits.safetensors")
grep -q '"logits":{"dtype":"F32","shape":\[60,10\]' <<<"$h" && ok || fail "predict --logits: $h"
# A CONFIG that sets neither the backbone nor the transform: they come from
# the file as without one, so the logits are the same bytes.
echo "threads = 1;" >"$T/bare.cfg"
"$usi" predict "$T/bare.cfg" --weights "$T/small/best.safetensors" --logits "$T/logits2.safetensors" $imgs \
    >/dev/null 2>"$T/predict2.err" && cmp -s "$T/logits.safetensors" "$T/logits2.safetensors" && ok \
    || fail "predict with a bare CONFIG differs from predict without one: $(tail -2 "$T/predict2.err")"
# Without the batch norms' num_batches_tracked (a state dict timm loads
# strictly): the same logits.
python3 - "$T/small/best.safetensors" "$T/nonbt.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
head, data = json.loads(b[8:8 + n]), b[8 + n:]
out, blob = {'__metadata__': head.pop('__metadata__')}, b''
for k, v in head.items():
    if k.endswith('.num_batches_tracked'):
        continue
    s, e = v['data_offsets']
    out[k] = dict(v, data_offsets=[len(blob), len(blob) + e - s])
    blob += data[s:e]
h = json.dumps(out).encode()
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(h)) + h + blob)
PY
"$usi" predict --weights "$T/nonbt.safetensors" --logits "$T/logits3.safetensors" $imgs >/dev/null 2>"$T/predict3.err" &&
    cmp -s "$T/logits.safetensors" "$T/logits3.safetensors" && ok \
    || fail "weights without num_batches_tracked: $(tail -2 "$T/predict3.err")"
# --set wins over what the file stores: another crop, other logits.
"$usi" predict --weights "$T/small/best.safetensors" --set data.crop_pct=0.5 --logits "$T/logits4.safetensors" \
    $imgs >/dev/null 2>"$T/predict4.err" && ! cmp -s "$T/logits.safetensors" "$T/logits4.safetensors" &&
    ! grep "settings from the file" "$T/predict4.err" | grep -q crop_pct && ok \
    || fail "predict --set data.crop_pct is not used: $(tail -2 "$T/predict4.err")"
out=$("$usi" predict --weights "$T/small/best.safetensors" "$T/none.png" 2>&1)
[ $? -eq 1 ] && grep -q "$T/none.png" <<<"$out" && ok || fail "predict of a missing image: $out"
printf 'not an image' >"$T/bad.png"
out=$("$usi" predict --weights "$T/small/best.safetensors" "$T/bad.png" 2>&1)
[ $? -eq 1 ] && grep -q "$T/bad.png" <<<"$out" && ok || fail "predict of a corrupt image: $out"
# Bad files among good ones (first, across a batch of 16, last): each is
# named, the others are classified as alone (the same logits bytes), the
# status is 1, and --json keeps each bad file in its place with its error.
mkdir "$T/folder.png"
echo text >"$T/notes.txt"
set -- $imgs
mixed="$T/none.png ${*:1:16} $T/bad.png $T/folder.png ${*:17} $T/notes.txt"
"$usi" predict --weights "$T/small/best.safetensors" --json --topk 3 --logits "$T/logits5.safetensors" $mixed \
    >"$T/mixed.json" 2>"$T/mixed.err"
rc=$?
[ $rc -eq 1 ] && ok || fail "predict with bad files: exit $rc, want 1: $(tail -2 "$T/mixed.err")"
for f in none.png bad.png folder.png notes.txt; do
    grep -q "error: $T/$f: " "$T/mixed.err" && ok || fail "predict does not name $f: $(cat "$T/mixed.err")"
done
grep -q "error: 4 of the 64 images could not be classified" "$T/mixed.err" && ok \
    || fail "predict's last line: $(tail -1 "$T/mixed.err")"
cmp -s "$T/logits.safetensors" "$T/logits5.safetensors" && ok \
    || fail "predict with bad files: the good images' logits differ from predict of them alone"
python3 - "$T/mixed.json" "$T" $mixed <<'PY' && ok || fail "predict --json with bad files: $(head -c 400 "$T/mixed.json")"
import json, sys
rows, t, names = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3:]
assert [r["image"] for r in rows] == names, [r["image"] for r in rows]
bad = {t + "/none.png": "cannot open", t + "/bad.png": "not a JPEG, PNG", t + "/folder.png": "a folder",
       t + "/notes.txt": "not a JPEG, PNG"}
for r in rows:
    if r["image"] in bad:
        assert "top" not in r and r["error"].find(bad[r["image"]]) >= 0 and t not in r["error"], r
    else:
        assert "error" not in r and len(r["top"]) == 3, r
PY
# Every image bad: the same report, status 1, no logits file.
out=$("$usi" -q predict --weights "$T/small/best.safetensors" --logits "$T/logits6.safetensors" "$T/none.png" "$T/bad.png" 2>&1)
[ $? -eq 1 ] && grep -q "none of the 2 images could be classified" <<<"$out" && grep -q "$T/bad.png" <<<"$out" &&
    [ ! -e "$T/logits6.safetensors" ] && ok || fail "predict of bad files only: $out"
"$usi" predict "$T/bad.png" >/dev/null 2>&1
[ $? -eq 2 ] && ok || fail "predict without --weights is a usage error"

# A model teacher wrapping the file, with no backbone_options of its own.
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/kd" --set teacher.name=model \
      --set teacher.backbone=mobilenetv3_small_100 --set teacher.weights="$T/small/best.safetensors" \
      --set teacher.img_size=72 --set teacher.mean='[0.286, 0.286, 0.286]' --set teacher.std='[0.353, 0.353, 0.353]' \
      2>&1)
teacher=$(grep -o "teacher 'model': top-1 [0-9.]*" <<<"$out" | awk '{print $4}')
[ -n "$teacher" ] && [ "$(printf '%.2f' "$teacher")" = "$best" ] && ok \
    || fail "teacher from the file: top-1 '$teacher' vs $best: $(tail -3 <<<"$out")"

# ResNet-18 at 28 px: "auto" picks the small stem (flagged), "timm" is timm's resnet18.
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/resnet" --set backbone.name=resnet18 --set data.img_size=28 2>&1)
[ $? -eq 0 ] && ok || fail "resnet18: $(tail -3 <<<"$out")"
grep -q "resnet18 with img_size = 28 is not timm's" <<<"$out" && ok || fail "resnet18 auto at 28 px not flagged"
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/resnet-timm" --set backbone.name=resnet18 --set data.img_size=28 \
      --set backbone.stem=timm 2>&1)
[ $? -eq 0 ] && ok || fail "resnet18 timm stem: $(tail -3 <<<"$out")"
grep -q "is not timm's" <<<"$out" && fail "resnet18 with the timm stem flagged: $(grep "timm's" <<<"$out")" || ok
grep -q '"timm_network":"true"' <<<"$(header "$T/resnet-timm/best.safetensors")" && ok \
    || fail "resnet18 with the timm stem is not marked as timm's"

# Backbones without buffers (no batch norm: ConvNeXt, ViT, Mixer) train with
# the EMA on (the recipe's default), and their EMA weights evaluate.
for net in convnext_atto deit_tiny_patch16_224; do
    out=$("$usi" train "$T/run.cfg" --set output_dir="$T/$net" --set backbone.name=$net --set data.img_size=32 2>&1)
    [ $? -eq 0 ] && [ -s "$T/$net/last.safetensors" ] && ok || fail "$net with the EMA: $(tail -2 <<<"$out")"
    out=$("$usi" eval "$T/run.cfg" --checkpoint "$T/$net/last.safetensors" --ema --set backbone.name=$net \
          --set data.img_size=32 2>&1)
    [ $? -eq 0 ] && grep -q "(EMA weights): top-1" <<<"$out" && ok || fail "$net EMA eval: $(tail -2 <<<"$out")"
done

finish
