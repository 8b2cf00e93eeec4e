#!/usr/bin/env bash
# The commands README.md and samples/ show, run as written from the folder
# they imply: samples/fashion_mnist.cfg trains as it stands (one process of
# samples/distributed.md's command, on a small copy of the data at the
# relative path it names), then eval, predict, preview and plot of the run;
# eval with only the val folder copied; relative paths start at the current
# folder, and the error says so.
set -u
build=${1:?usage: test_samples.sh BUILD_ROOT SOURCE_ROOT TINY_FOLDER_TOOL}
src=${2:?usage: test_samples.sh BUILD_ROOT SOURCE_ROOT TINY_FOLDER_TOOL}
tiny=${3:?usage: test_samples.sh BUILD_ROOT SOURCE_ROOT TINY_FOLDER_TOOL}
usi="$build/core/cli/usi"
. "$(dirname "$0")/lib.sh"
cfg="$src/samples/fashion_mnist.cfg"

mkdir -p "$T/user/data"
"$tiny" /usr/share/datasets/fashion-mnist "$T/user/data/fashion-mnist" 16 6 ||
    { echo "FAIL: could not write the test images"; exit 1; }
cd "$T/user" || exit 1

# samples/distributed.md's one-host command on one process, one short epoch.
out=$("$usi" train "$cfg" --set threads=1 --set data.batch_size=32 --set output_dir=runs/fmnist-2proc \
      --set schedule.epochs=1 --set schedule.warmup_epochs=0 2>&1)
[ $? -eq 0 ] && ok || fail "train samples/fashion_mnist.cfg: $(tail -3 <<<"$out")"
for f in best.safetensors last.safetensors metrics.jsonl curves.png; do
    [ -s "runs/fmnist-2proc/$f" ] && ok || fail "the sample's run wrote no runs/fmnist-2proc/$f"
done
best=$(grep -o 'best top-1 [0-9.]*' <<<"$out" | awk '{print $3}')

# usi eval with the same config gives the figure training printed; so it does
# where only the val folder was copied (the file stores the class names).
top1() { grep -o 'top-1 [0-9.]*%' <<<"$1" | head -1 | tr -d '%' | awk '{print $2}'; }
out=$("$usi" eval "$cfg" --checkpoint runs/fmnist-2proc/best.safetensors 2>&1)
[ $? -eq 0 ] && [ -n "$best" ] && [ "$(top1 "$out")" = "$best" ] && ok \
    || fail "eval of the sample's run: '$(top1 "$out")', training said '$best': $out"
mkdir -p "$T/evalonly/data/fashion-mnist"
cp -r data/fashion-mnist/val "$T/evalonly/data/fashion-mnist/"
out=$(cd "$T/evalonly" && "$usi" eval "$cfg" --checkpoint "$T/user/runs/fmnist-2proc/best.safetensors" 2>&1)
[ $? -eq 0 ] && [ "$(top1 "$out")" = "$best" ] && grep -q "the class names .* stores are used" <<<"$out" && ok \
    || fail "eval with only data.val there: $out"

# README's predict, on real photos (a JPEG and a PNG), names with a space and
# a non-ASCII letter: three classes each.
photos=/usr/share/doc/opencv-doc/examples/data
mkdir -p "my photos/été"
cp "$photos/baboon.jpg" "my photos/été/photo 1.jpg" && cp "$photos/box.png" "my photos/photo2.png" || fail "no photos"
out=$("$usi" predict --weights runs/fmnist-2proc/best.safetensors "my photos/été/photo 1.jpg" "my photos/photo2.png" \
      --topk 3 2>"$T/predict.err")
[ $? -eq 0 ] && [ "$(grep -c '^my photos/' <<<"$out")" -eq 2 ] &&
    [ "$(grep -cE '^ +[0-9.]+%  class_[0-9] \([0-9]\)$' <<<"$out")" -eq 6 ] && ok \
    || fail "predict as README shows it: $out $(cat "$T/predict.err")"

# preview and plot as the usage lines show them.
out=$("$usi" preview "$cfg" --out grid.png 2>&1)
[ $? -eq 0 ] && grep -q "^wrote grid.png (32 images)$" <<<"$out" && [ "$(head -c 4 grid.png | tail -c 3)" = PNG ] && ok \
    || fail "preview of the sample: $(tail -2 <<<"$out")"
out=$("$usi" plot runs/fmnist-2proc --out curves.svg 2>&1)
[ $? -eq 0 ] && grep -q "<svg" curves.svg && ok || fail "plot of the sample's run: $out"

# A usi replaced on disk while it trains (rebuilt, upgraded): the command
# that continues the run names the path, not "PATH (deleted)", and runs.
mkdir "$T/bin"
cp "$usi" "$T/bin/usi"
plugin_path=$(find "$build/plugins" "$build/augment" "$build/teachers" -name 'usi_*.so' -printf '%h\n' | sort -u | paste -sd:)
export USI_PLUGIN_PATH="$plugin_path"
"$T/bin/usi" train "$cfg" --set data.batch_size=16 --set schedule.epochs=1000 --set output_dir=runs/long \
    >"$T/long.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    grep -q '"loss"' runs/long/metrics.jsonl 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
rm "$T/bin/usi" && cp "$usi" "$T/bin/usi"
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
again=$(sed -n 's/.*continue with: //p' "$T/long.log")
[ $rc -eq 130 ] && grep -q "^'$T/bin/usi' train " <<<"$again" && ok \
    || fail "continue line of a usi replaced on disk: exit $rc: $(tail -2 "$T/long.log")"
first=$(eval "set -- $again" && printf '%s' "$1")
[ -x "$first" ] && ok || fail "the continue line's program '$first' is not there"
unset USI_PLUGIN_PATH

# From another folder the sample's relative data paths are not found, and
# the error says where they were looked for; nothing is written there.
mkdir "$T/elsewhere"
out=$(cd "$T/elsewhere" && "$usi" train "$cfg" 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "data.train: dataset folder data/fashion-mnist/train (relative to the current folder $T/elsewhere)" <<<"$out" &&
    [ -z "$(ls -A "$T/elsewhere")" ] && ok || fail "the sample from another folder: exit $rc: $out"

finish
