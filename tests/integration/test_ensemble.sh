#!/usr/bin/env bash
# The `ensemble` teacher end to end: two small members are trained for one
# epoch each, `usi weights merge` joins their best.safetensors under m0./m1.,
# and a KD run with the ensemble reports its top-1 before training. A merged
# file that lacks a member is refused, naming the missing tensor.
set -u
build=${1:?usage: test_ensemble.sh BUILD_ROOT TINY_FOLDER_TOOL}
tiny=${2:?usage: test_ensemble.sh BUILD_ROOT TINY_FOLDER_TOOL}
usi="$build/core/cli/usi"
. "$(dirname "$0")/lib.sh"

idx=/usr/share/datasets/fashion-mnist
if [ ! -f "$idx/train-images-idx3-ubyte.gz" ]; then
    echo "FAIL: $idx is missing (Debian package dataset-fashion-mnist; scripts/install-deps installs it)"
    exit 1
fi
# Members need enough steps to beat chance (or the comparison below says
# nothing); the KD runs only need the teacher's val pass, so they train on a
# few images (same val images: tiny_folder takes the first of each class).
"$tiny" "$idx" "$T/data" 100 10 && "$tiny" "$idx" "$T/small" 4 10 \
    || { echo "FAIL: could not write the test images"; exit 1; }

cat >"$T/run.cfg" <<CFG
backbone = { name = "mobilenetv3_small_100"; };
threads = 2;
data = { train = "$T/data/train"; val = "$T/data/val"; img_size = 28; batch_size = 32; workers = 2;
         mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; };
augment = ( { name = "hflip"; } );
optimizer = { lr = 0.03; };
schedule = { epochs = 1; warmup_epochs = 0; cooldown_epochs = 0; };
CFG
# The teacher block of a KD run: NAMES and WEIGHTS are filled in per run.
teacher_cfg() {
    cat "$T/run.cfg"
    cat <<CFG
teacher = { name = "ensemble"; backbones = "$1"; weights = "$2"; num_classes = 10; img_size = 28;
            mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; };
CFG
}

# --- two members, differing only in their seed ---
tops=()
for m in 0 1; do
    if "$usi" train "$T/run.cfg" --set output_dir="$T/m$m" --set seed=$((m + 1)) >"$T/m$m.log" 2>&1; then ok
    else fail "member $m: $(tail -5 "$T/m$m.log")"; fi
    tops[$m]=$(grep -o 'best top-1 [0-9.]*' "$T/m$m.log" | awk '{print $3}')
    [ -n "${tops[$m]}" ] && ok || fail "member $m printed no best top-1"
done

# --- merge ---
out=$("$usi" weights merge "$T/ens.safetensors" m0="$T/m0/best.safetensors" m1="$T/m1/best.safetensors" 2>&1)
[ $? -eq 0 ] && [ -s "$T/ens.safetensors" ] && ok || fail "merge: $out"
out=$("$usi" weights merge "$T/bad.safetensors" "$T/m0/best.safetensors" 2>&1)
[ $? -eq 2 ] && grep -q "is not PREFIX=FILE" <<<"$out" && ok || fail "merge without a prefix: $out"
out=$("$usi" weights merge "$T/bad.safetensors" m0="$T/m0/best.safetensors" m0="$T/m1/best.safetensors" 2>&1)
[ $? -eq 1 ] && grep -q "added twice" <<<"$out" && [ ! -e "$T/bad.safetensors" ] && ok \
    || fail "merge with one prefix twice: $out"

# --- KD from the ensemble: its top-1 is printed before training ---
teacher_cfg "mobilenetv3_small_100, mobilenetv3_small_100" "$T/ens.safetensors" >"$T/kd.cfg"
out=$("$usi" train "$T/kd.cfg" --set output_dir="$T/kd" --set data.train="$T/small/train" 2>&1)
rc=$?
ens=$(grep -o "teacher 'ensemble': top-1 [0-9.]*" <<<"$out" | awk '{print $4}')
if [ $rc -eq 0 ] && [ -n "$ens" ]; then ok; else fail "KD run: exit $rc: $(tail -3 <<<"$out")"; fi
# Averaging probabilities should not be much worse than the worse member.
if [ -n "$ens" ] && awk -v e="$ens" -v a="${tops[0]:-0}" -v b="${tops[1]:-0}" \
        'BEGIN { w = a < b ? a : b; exit !(e >= w - 5) }'; then ok
else fail "ensemble top-1 $ens vs members ${tops[0]:-?} and ${tops[1]:-?}"; fi
echo "members: ${tops[0]:-?}% ${tops[1]:-?}%, ensemble: ${ens:-?}%"

# --- a one-member ensemble ranks classes as its member does: same top-1 ---
"$usi" weights merge "$T/one.safetensors" m0="$T/m0/best.safetensors" >/dev/null 2>&1 && ok || fail "merge of one file"
teacher_cfg "mobilenetv3_small_100" "$T/one.safetensors" >"$T/one.cfg"
out=$("$usi" train "$T/one.cfg" --set output_dir="$T/one" --set data.train="$T/small/train" 2>&1)
one=$(grep -o "teacher 'ensemble': top-1 [0-9.]*" <<<"$out" | awk '{print $4}')
[ -n "$one" ] && [ "$one" = "${tops[0]}" ] && ok || fail "one-member ensemble: top-1 '$one' vs ${tops[0]:-?}: $(tail -3 <<<"$out")"

# --- refusal: the merged file lacks member 1 ---
teacher_cfg "mobilenetv3_small_100, mobilenetv3_small_100" "$T/one.safetensors" >"$T/miss.cfg"
out=$("$usi" train "$T/miss.cfg" --set output_dir="$T/miss" --set data.train="$T/small/train" 2>&1)
[ $? -eq 1 ] && grep -q "tensor 'm1\.[a-z0-9_.]*' is missing" <<<"$out" && ok || fail "missing member: $out"
[ ! -e "$T/miss/last.safetensors" ] && ok || fail "a run with a missing member wrote a checkpoint"
# ... and an empty member name is refused before anything is built.
teacher_cfg "mobilenetv3_small_100, " "$T/ens.safetensors" >"$T/empty.cfg"
out=$("$usi" train "$T/empty.cfg" --set output_dir="$T/empty" --set data.train="$T/small/train" 2>&1)
[ $? -eq 1 ] && grep -q "has an empty name" <<<"$out" && ok || fail "empty member name: $out"

finish
