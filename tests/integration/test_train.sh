#!/usr/bin/env bash
# `usi train` and `usi eval` end to end on a small real ImageFolder (PNG files
# of Fashion-MNIST) with the shipped plugins: an interrupted and resumed run
# gives the same losses as an uninterrupted one; evaluations and checkpoints
# come as often as eval.every_epochs and checkpoint.every_epochs say; NaN, a
# full disk, a bad output folder, a wrong teacher and wrong weights are
# refused cleanly; so are NaN outputs at an evaluation (in training, `usi eval`
# and `usi predict`), epochs that train no step, a resume past the schedule,
# a val folder with no readable image and output paths that cannot be written.
set -u
build=${1:?usage: test_train.sh BUILD_ROOT TINY_FOLDER_TOOL}
tiny=${2:?usage: test_train.sh BUILD_ROOT TINY_FOLDER_TOOL}
usi="$build/core/cli/usi"
. "$(dirname "$0")/lib.sh"

idx=/usr/share/datasets/fashion-mnist
if [ ! -f "$idx/train-images-idx3-ubyte.gz" ]; then
    echo "FAIL: $idx is missing (Debian package dataset-fashion-mnist; scripts/install-deps installs it)"
    exit 1
fi
"$tiny" "$idx" "$T/data" 40 10 || { echo "FAIL: could not write the test images"; exit 1; }

cat >"$T/run.cfg" <<CFG
backbone = { name = "mobilenetv3_small_100"; };
threads = 2;
data = { train = "$T/data/train"; val = "$T/data/val"; img_size = 28; batch_size = 32; workers = 2;
         mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; repeated_aug = 1; };
augment = ( { name = "random_resized_crop"; scale = [0.6, 1.0]; }, { name = "hflip"; } );
optimizer = { lr = 0.03; };
schedule = { epochs = 3; warmup_epochs = 1; cooldown_epochs = 0; };
CFG
losses() { grep '"loss"' "$1" | sed 's/.*"step": \([0-9]*\), "loss": \([^,]*\),.*/\1 \2/'; }

# A backbone's own build error (recorded with the graph builder's fail()) is
# what the user reads, not "the network returned no output".
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/chans" --set backbone.name=convnext_atto --set backbone.stem=timm 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && grep -q "convnext_atto: a 28 px input is too small: with timm's stem it needs at least 32 px" <<<"$out" &&
    ! grep -q "returned no output" <<<"$out"; then ok; else fail "a backbone's build error: exit $rc: $out"; fi

# One class folder is no classification task: refused before training.
mkdir -p "$T/one/train" && cp -r "$(find "$T/data/train" -mindepth 1 -maxdepth 1 -type d | sort | head -1)" "$T/one/train/"
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/onec" --set data.train="$T/one/train" --set data.val="$T/one/train" 2>&1)
rc=$?
[ "$rc" -eq 1 ] && grep -q "data.train: $T/one/train has one class folder" <<<"$out" && [ ! -e "$T/onec/metrics.jsonl" ] \
    && ok || fail "one class folder: exit $rc: $out"

# A network built for another size than the data's is refused before training.
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/size" --set backbone.img_size=64 2>&1)
rc=$?
[ "$rc" -eq 1 ] && grep -q "has img_size = 64 but the data needs 28" <<<"$out" && ok \
    || fail "backbone.img_size against data.img_size: exit $rc: $out"

# --- an uninterrupted run ---
if "$usi" train "$T/run.cfg" --set output_dir="$T/a" >"$T/a.log" 2>&1; then ok; else fail "run A: $(tail -5 "$T/a.log")"; fi
for f in last.safetensors best.safetensors metrics.jsonl; do
    [ -s "$T/a/$f" ] && ok || fail "run A wrote no $f"
done
[ "$(grep -c '"top1"' "$T/a/metrics.jsonl")" -eq 3 ] && ok || fail "run A: expected 3 evaluations"

# --- eval.every_epochs and checkpoint.every_epochs: every Nth epoch, and always the last ---
if "$usi" train "$T/run.cfg" --set output_dir="$T/every" --set eval.every_epochs=2 --set checkpoint.every_epochs=5 \
    >"$T/every.log" 2>&1; then ok; else fail "eval every 2 epochs: $(tail -5 "$T/every.log")"; fi
evals=$(grep '"top1"' "$T/every/metrics.jsonl" | sed 's/.*"epoch": \([0-9]*\),.*/\1/' | tr '\n' ' ')
[ "$evals" = "2 3 " ] && ok || fail "eval.every_epochs = 2 over 3 epochs evaluated after epochs '$evals', not 2 and 3"
head -c 65536 "$T/every/last.safetensors" | grep -a -q '"epoch":"3"' && [ -s "$T/every/best.safetensors" ] && ok \
    || fail "checkpoint.every_epochs = 5 over 3 epochs: no checkpoint of epoch 3, or no best weights"

# --- a new run in a folder that holds one starts metrics.jsonl again and
# says so; a run that fails to start writes no metrics.jsonl ---
"$usi" train "$T/run.cfg" --set output_dir="$T/every" --set schedule.epochs=1 >"$T/again.log" 2>&1 \
    || fail "a new run over an old one: $(tail -3 "$T/again.log")"
[ "$(grep -c '"top1"' "$T/every/metrics.jsonl")" -eq 1 ] && ok \
    || fail "metrics.jsonl kept the earlier run's lines: $(grep -c '"top1"' "$T/every/metrics.jsonl") evaluations"
grep -q "$T/every already holds a run: this new run writes its metrics.jsonl and checkpoints over it" "$T/again.log" \
    && ok || fail "no word that the earlier run's files are replaced: $(head -3 "$T/again.log")"
"$usi" train "$T/run.cfg" --set output_dir="$T/nostart" --resume "$T/none.safetensors" >/dev/null 2>&1 \
    && fail "resuming from a missing file started"
[ ! -e "$T/nostart/metrics.jsonl" ] && ok || fail "a run that did not start left $T/nostart/metrics.jsonl"

# --- the same run, stopped with SIGINT and resumed ---
"$usi" train "$T/run.cfg" --set output_dir="$T/b" >"$T/b1.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    grep -q '"loss"' "$T/b/metrics.jsonl" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
# A second run into the same folder meanwhile is refused, naming the first,
# before it sets anything up (the device's line comes after the check).
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/b" 2>&1)
[ $? -eq 1 ] && grep -q "output_dir $T/b is in use by another usi train (process $pid)" <<<"$out" \
    && ! grep -q 'runs as fp32 on device' <<<"$out" && ok || fail "a second run into a busy output_dir: $out"
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
self=$(readlink -f "$usi")
if [ $rc -eq 130 ] && grep -qF "continue with: '$self' train '$T/run.cfg' --set 'output_dir=$T/b' --resume '$T/b/last.safetensors'" \
    "$T/b1.log"; then ok
else fail "SIGINT: exit $rc, log: $(tail -3 "$T/b1.log")"; fi
ls "$T/b" | grep -q '\.tmp-' && fail "a temporary file was left after SIGINT" || ok
# the command it says, as it says it (this usi, the run's --set options with it)
again=$(sed -n 's/.*continue with: //p' "$T/b1.log")
if eval "$again" >"$T/b2.log" 2>&1; then ok
else fail "resume with '$again': $(tail -5 "$T/b2.log")"; fi
! grep -q 'other than it was trained with' "$T/b2.log" && ok || fail "resuming as it was said warns of changes"
losses "$T/a/metrics.jsonl" | sort -n >"$T/a.loss"
losses "$T/b/metrics.jsonl" | sort -n | uniq >"$T/b.loss"
after=$(grep -o 'step [0-9]*)' "$T/b2.log" | head -1 | tr -dc 0-9)
if [ -s "$T/b.loss" ] && cmp -s "$T/a.loss" "$T/b.loss"; then ok
else fail "losses differ after resuming (resumed at step ${after:-?}): $(diff "$T/a.loss" "$T/b.loss" | head -6)"; fi
top_a=$(grep -o '"top1": [0-9.]*' "$T/a/metrics.jsonl" | tail -1)
top_b=$(grep -o '"top1": [0-9.]*' "$T/b/metrics.jsonl" | tail -1)
[ "$top_a" = "$top_b" ] && ok || fail "final accuracy differs: $top_a vs $top_b"

# --- checkpoint.resume in the config resumes as --resume does, and a
# resumed run with other settings names them ---
if "$usi" train "$T/run.cfg" --set output_dir="$T/c" --set schedule.epochs=4 \
    --set checkpoint.resume="$T/b/last.safetensors" >"$T/c.log" 2>&1; then ok
else fail "checkpoint.resume: $(tail -3 "$T/c.log")"; fi
grep -q "resuming $T/b/last.safetensors at epoch 4" "$T/c.log" && ok || fail "checkpoint.resume did not resume: $(head -3 "$T/c.log")"
grep "other than it was trained with" "$T/c.log" | grep -q "schedule.epochs = 4 (was 3)" \
    && grep "other than it was trained with" "$T/c.log" | grep -q "output_dir = \"$T/c\" (was \"$T/b\")" && ok \
    || fail "the changed settings are not named: $(grep -i 'resuming' "$T/c.log")"
[ "$(grep -c '"top1"' "$T/c/metrics.jsonl")" -eq 1 ] && ok || fail "the resumed run trained other than epoch 4"
# The checkpoint's best top-1 is that of the best.safetensors beside it: a run
# resumed into another folder takes it along, else the folder it names at the
# end may hold no best weights at all.
grep -q "best.safetensors (top-1 [0-9.]*%) copied from $T/b/best.safetensors to $T/c/best.safetensors" "$T/c.log" \
    && [ -s "$T/c/best.safetensors" ] && ok || fail "the best weights were not carried into $T/c: $(ls "$T/c")"
# Another optimizer's state is refused by name, before anything is written.
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/sgd" --set schedule.epochs=4 --set optimizer.name=sgd \
      --resume "$T/b/last.safetensors" 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "$T/b/last.safetensors was trained with optimizer.name = \"adamw\", this run has \"sgd\": .*resume with optimizer.name = \"adamw\"" <<<"$out" \
    && [ ! -e "$T/sgd/last.safetensors" ] && ok || fail "resume with another optimizer: exit $rc: $(tail -2 <<<"$out")"
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/c2" --set checkpoint.resume="$T/nothing.safetensors" 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "$T/nothing.safetensors" <<<"$out" && ok || fail "a missing checkpoint.resume: exit $rc: $out"

# --- loss.label_smoothing changes the hard-label term: the first step's
# loss (the same weights and batch) differs from the plain run's ---
# (the second run also has no EMA: its evaluation has no EMA figures)
for ls in 0 0.3; do
    noema=(); [ "$ls" = 0.3 ] && noema=(--set ema.enabled=false)
    "$usi" train "$T/run.cfg" --set output_dir="$T/ls$ls" --set schedule.epochs=1 --set metrics_every=1 \
        --set loss.label_smoothing=$ls "${noema[@]}" >"$T/ls$ls.log" 2>&1 || fail "label smoothing $ls: $(tail -3 "$T/ls$ls.log")"
done
grep -q '"top1"' "$T/ls0.3/metrics.jsonl" && ! grep -q 'ema_' "$T/ls0.3/metrics.jsonl" && ! grep -q 'EMA top-1' "$T/ls0.3.log" \
    && grep -q '"ema_top1"' "$T/ls0/metrics.jsonl" && ok || fail "EMA figures where there is no EMA, or none where there is"
l0=$(losses "$T/ls0/metrics.jsonl" | head -1)
l3=$(losses "$T/ls0.3/metrics.jsonl" | head -1)
[ -n "$l0" ] && [ -n "$l3" ] && [ "$l0" != "$l3" ] && ok || fail "label smoothing 0.3 left the loss as it was: '$l0' '$l3'"
# A warm-up as long as the run is named (run A's, shorter, is not).
grep -q "schedule.warmup_epochs = 1 is not less than schedule.epochs = 1: the learning rate rises" "$T/ls0.log" \
    && ! grep -q "warmup_epochs" "$T/a.log" && ok || fail "no word of a run that is all warm-up: $(grep warm "$T/ls0.log")"

# --- SIGTERM does the same as Ctrl-C ---
"$usi" train "$T/run.cfg" --set output_dir="$T/term" >"$T/term.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    grep -q '"loss"' "$T/term/metrics.jsonl" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
kill -TERM $pid 2>/dev/null
wait $pid
rc=$?
[ $rc -eq 130 ] && [ -s "$T/term/last.safetensors" ] && ok || fail "SIGTERM: exit $rc: $(tail -2 "$T/term.log")"

# --- SIGHUP (a closed terminal) too, unless the run was started with it
# ignored (nohup): then it trains on ---
started() { # $1: pid, $2: output_dir
    for _ in $(seq 1 600); do
        grep -q '"loss"' "$2/metrics.jsonl" 2>/dev/null && break
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
}
env --default-signal=HUP "$usi" train "$T/run.cfg" --set output_dir="$T/hup" >"$T/hup.log" 2>&1 &
pid=$!
started $pid "$T/hup"
kill -HUP $pid 2>/dev/null
wait $pid
rc=$?
[ $rc -eq 130 ] && [ -s "$T/hup/last.safetensors" ] && grep -q "stopping after this step" "$T/hup.log" && ok \
    || fail "SIGHUP: exit $rc: $(tail -2 "$T/hup.log")"
env --ignore-signal=HUP "$usi" train "$T/run.cfg" --set output_dir="$T/nohup" --set schedule.epochs=200 \
    >"$T/nohup.log" 2>&1 &
pid=$!
started $pid "$T/nohup"
kill -HUP $pid 2>/dev/null
sleep 1
kill -0 $pid 2>/dev/null && ! grep -q "stopping after this step" "$T/nohup.log" && ok \
    || fail "SIGHUP stopped a run started with it ignored: $(tail -2 "$T/nohup.log")"
kill -TERM $pid 2>/dev/null
wait $pid

# --- usi eval agrees with what training reported ---
best=$(grep -o 'best top-1 [0-9.]*' "$T/a.log" | awk '{print $3}')
out=$("$usi" eval "$T/run.cfg" --checkpoint "$T/a/best.safetensors" --json 2>&1)
got=$(grep -o '"top1": [0-9.]*' <<<"$out" | awk '{printf "%.2f", $2}')
[ -n "$best" ] && [ "$got" = "$best" ] && ok || fail "eval gives $got, training said $best: $out"
# without data.train: the class names the weights file stores, checked against the val folder's
cat >"$T/evalonly.cfg" <<CFG
backbone = { name = "mobilenetv3_small_100"; };
data = { val = "$T/data/val"; img_size = 28; mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; };
CFG
out=$("$usi" eval "$T/evalonly.cfg" --checkpoint "$T/a/best.safetensors" --json 2>&1)
got2=$(grep -o '"top1": [0-9.]*' <<<"$out" | awk '{printf "%.2f", $2}')
[ -n "$got2" ] && [ "$got2" = "$got" ] && ok || fail "eval without data.train: '$got2', with it '$got': $out"
# with data.val alone: the backbone, the side and the transform the file stores
echo "data = { val = \"$T/data/val\"; };" >"$T/valonly.cfg"
out=$("$usi" eval "$T/valonly.cfg" --checkpoint "$T/a/best.safetensors" --json 2>&1)
got3=$(grep -o '"top1": [0-9.]*' <<<"$out" | awk '{printf "%.2f", $2}')
[ -n "$got3" ] && [ "$got3" = "$got" ] && \
    grep -q "settings from the file: data.mean, data.std, data.crop_pct, data.interpolation, backbone.name, data.img_size" \
         <<<"$out" && ok || fail "eval with data.val alone: '$got3', with the training config '$got': $out"
mkdir -p "$T/renamed" && cp -r "$T/data/val/." "$T/renamed/"
first=$(find "$T/renamed" -mindepth 1 -maxdepth 1 -type d | sort | head -1)
mv "$first" "$T/renamed/zz_other"
out=$("$usi" eval "$T/evalonly.cfg" --checkpoint "$T/a/best.safetensors" --set data.val="$T/renamed" 2>&1)
rc=$?
[ "$rc" -eq 1 ] && grep -q "data.val: class [0-9]* is '.*' in $T/renamed but '.*' in $T/a/best.safetensors" <<<"$out" \
    && ok || fail "eval without data.train, other class folders: exit $rc: $out"

# --- NaN: stops with the step, writes nothing ---
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/nan" --set optimizer.lr=100 --set optimizer.weight_decay=10 \
      --set schedule.warmup_epochs=0 --set metrics_every=1 2>&1)
rc=$?
if [ $rc -eq 1 ] && grep -qE "the (loss|gradient norm) is (NaN|infinite) at step [0-9]+" <<<"$out"; then ok; else fail "NaN: exit $rc: $(tail -2 <<<"$out")"; fi
# the step it names is the one after the last in metrics.jsonl (steps count from 1 in both)
nan_step=$(grep -oE "at step [0-9]+" <<<"$out" | tr -dc 0-9)
last_step=$(losses "$T/nan/metrics.jsonl" | tail -1 | cut -d' ' -f1)
[ -n "$nan_step" ] && [ "$nan_step" -eq $((${last_step:-0} + 1)) ] && ok \
    || fail "NaN at step '$nan_step' after metrics.jsonl's last step '$last_step'"
[ ! -e "$T/nan/last.safetensors" ] && ok || fail "a checkpoint was written after NaN"

# --- a full disk leaves the previous checkpoint whole ---
mkdir -p "$T/full"
cp "$T/a/last.safetensors" "$T/a/best.safetensors" "$T/full/"
out=$(ulimit -f 64; "$usi" train "$T/run.cfg" --set output_dir="$T/full" --set schedule.epochs=1 2>&1)
rc=$?
if [ $rc -eq 1 ] && grep -q "cannot write $T/full/.*safetensors: File too large; the previous file is untouched" <<<"$out"; then ok
else fail "full disk: exit $rc: $(tail -2 <<<"$out")"; fi
cmp -s "$T/a/last.safetensors" "$T/full/last.safetensors" && cmp -s "$T/a/best.safetensors" "$T/full/best.safetensors" \
    && ok || fail "the previous checkpoint was changed"
# that checkpoint was an earlier run's: no word of continuing from it
! grep -q "continue with" <<<"$out" && ok || fail "a new run offers to continue from an earlier run's checkpoint: $out"
# resumed from it, the run is its own: the error says how to go on once there is room
out=$(ulimit -f 64; "$usi" train "$T/run.cfg" --set output_dir="$T/full" --set schedule.epochs=4 \
      --resume "$T/full/last.safetensors" 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "File too large; the previous file is untouched" <<<"$out" && grep -qF "usi: once its files can be written (room on the disk), continue with: '$(readlink -f "$usi")' train '$T/run.cfg' --set 'output_dir=$T/full' --set 'schedule.epochs=4' --resume '$T/full/last.safetensors'" <<<"$out" \
    && cmp -s "$T/a/last.safetensors" "$T/full/last.safetensors" && ok || fail "full disk in a resumed run: exit $rc: $(tail -2 <<<"$out")"
ls "$T/full" | grep -q '\.tmp-' && fail "a temporary file was left on a full disk" || ok

# --- refusals before training ---
out=$("$usi" train "$T/run.cfg" --set output_dir=/proc/usi-no/out 2>&1)
[ $? -eq 1 ] && grep -q "cannot create /proc/usi-no" <<<"$out" && ok || fail "unwritable output: $out"
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/run.cfg" 2>&1)
[ $? -eq 1 ] && grep -q "output_dir $T/run.cfg is a file, not a folder" <<<"$out" && ok || fail "output_dir a file: $out"
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/wo" --set schedule.epochs=4 --resume "$T/a/best.safetensors" 2>&1)
[ $? -eq 1 ] && grep -q "$T/a/best.safetensors holds weights only (as best.safetensors does), not a training checkpoint" \
    <<<"$out" && ok || fail "resume from weights only: $out"
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/t" --set teacher.name=model --set teacher.num_classes=5 \
      --set teacher.backbone=mobilenetv3_small_100 --set teacher.weights="$T/a/best.safetensors" 2>&1)
[ $? -eq 1 ] && grep -q "num_classes = 5 but the data needs 10" <<<"$out" && ok || fail "teacher classes: $out"
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/t" --set teacher.name=model \
      --set teacher.backbone=resnet18 --set teacher.weights="$T/a/best.safetensors" 2>&1)
[ $? -eq 1 ] && grep -q "tensor 'conv1.weight' is missing" <<<"$out" && ok || fail "teacher weights: $out"
out=$("$usi" train "$T/run.cfg" --set data.train="$T/none" 2>&1)
[ $? -eq 1 ] && grep -q "$T/none" <<<"$out" && ok || fail "missing data folder: $out"
out=$("$usi" eval "$T/run.cfg" --checkpoint "$T/run.cfg" 2>&1)
[ $? -eq 1 ] && grep -q "run.cfg" <<<"$out" && ok || fail "eval of a non-safetensors file: $out"

# --- KD from the trained run: the teacher is checked before training ---
# The teacher's backbone, mean and std are not set: they come from the file
# (ImageNet's mean and std, the option defaults, would give another top-1).
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/kd" --set schedule.epochs=1 --set teacher.name=model \
      --set teacher.weights="$T/a/best.safetensors" 2>&1)
teacher=$(grep -o "teacher 'model': top-1 [0-9.]*" <<<"$out" | awk '{print $4}')
[ $? -eq 0 ] && [ "$teacher" = "$best" ] && ok || fail "KD run: teacher top-1 '$teacher' vs $best: $(tail -3 <<<"$out")"
grep -q "teacher: backbone, mean, std, interpolation from $T/a/best.safetensors" <<<"$out" && ok \
    || fail "the teacher's settings from its file are not named: $(grep teacher <<<"$out")"

# --- outputs that are not numbers, runs that train nothing, and refusals of
# usi eval / usi predict / usi preview: on a smaller folder (8 + 4 per class) ---
"$tiny" "$idx" "$T/small" 8 4 || fail "could not write the small test images"
cat >"$T/small.cfg" <<CFG
backbone = { name = "mobilenetv3_small_100"; };
threads = 2;
data = { train = "$T/small/train"; val = "$T/small/val"; img_size = 28; batch_size = 8; workers = 2;
         mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; };
augment = ( { name = "hflip"; } );
schedule = { epochs = 2; warmup_epochs = 0; cooldown_epochs = 0; };
CFG
# every line of metrics.jsonl is JSON (JSON has no NaN: null instead)
json_lines() { python3 -c 'import json, sys
for line in open(sys.argv[1]): json.loads(line, parse_constant=lambda c: sys.exit("not JSON: " + line))' "$1"; }
# a copy of a weights file with every float tensor NaN
nan_copy() { python3 - "$1" "$2" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
for k, v in json.loads(b[8:8 + n]).items():
    if k != '__metadata__' and v['dtype'] == 'F32':
        s, e = v['data_offsets']
        b[8 + n + s:8 + n + e] = b'\x00\x00\xc0\x7f' * ((e - s) // 4)
open(sys.argv[2], 'wb').write(b)
PY
}

# The weights diverge in epoch 1 (SGD at a high rate) without a NaN gradient:
# the evaluation stops the run and no NaN weights are kept as "best".
out=$("$usi" train "$T/small.cfg" --set output_dir="$T/div" --set optimizer.name=sgd --set optimizer.lr=0.05 \
      --set optimizer.lr_batch=1 --set schedule.epochs=3 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "the outputs are NaN or infinite after epoch 1 (raw weights): the weights diverged; lower optimizer.lr" \
    <<<"$out" && ok || fail "diverged weights: exit $rc: $(tail -3 <<<"$out")"
! grep -q "top-1 100.00%" <<<"$out" && ok || fail "NaN outputs were scored correct: $(grep top-1 <<<"$out")"
[ ! -e "$T/div/best.safetensors" ] && [ ! -e "$T/div/last.safetensors" ] && ok || fail "weights written after NaN outputs"
json_lines "$T/div/metrics.jsonl" && grep -q '"val_loss": null' "$T/div/metrics.jsonl" && ok \
    || fail "metrics.jsonl with NaN is not JSON: $(grep top1 "$T/div/metrics.jsonl")"

# A healthy 2-epoch run, for what follows.
"$usi" train "$T/small.cfg" --set output_dir="$T/s2" >"$T/s2.log" 2>&1 && json_lines "$T/s2/metrics.jsonl" && ok \
    || fail "small run: $(tail -3 "$T/s2.log")"

# Resuming a 2-epoch checkpoint with schedule.epochs = 1 trains nothing: refused, nothing written.
cp "$T/s2/last.safetensors" "$T/s2.last"
out=$("$usi" train "$T/small.cfg" --set output_dir="$T/s2" --set schedule.epochs=1 --resume "$T/s2/last.safetensors" 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "the checkpoint has trained 2 epochs; schedule.epochs = 1 leaves nothing to train: raise schedule.epochs" \
    <<<"$out" && ! grep -q "weights in" <<<"$out" && cmp -s "$T/s2.last" "$T/s2/last.safetensors" && ok \
    || fail "resume past the schedule: exit $rc: $(tail -2 <<<"$out")"

# Epochs that train no step stop before writing anything: too few images for
# a batch, a chain that does not give data.img_size (the chain's fault, not
# the files'), every file corrupt.
out=$("$usi" train "$T/small.cfg" --set output_dir="$T/z1" --set data.batch_size=128 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "data.train: 80 images in $T/small/train make no full batch of data.batch_size = 128" <<<"$out" \
    && [ ! -e "$T/z1/best.safetensors" ] && [ ! -e "$T/z1/last.safetensors" ] && ok \
    || fail "fewer images than a batch: exit $rc: $(tail -2 <<<"$out")"
out=$("$usi" train "$T/small.cfg" --set output_dir="$T/z2" --set 'augment=()' --set data.img_size=32 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "the image is 28x28 and no augmentation resizes it to data.img_size = 32: add random_resized_crop (training) or eval_resize_crop (evaluation) to the chain (image $T/small/train/class_" <<<"$out" \
    && [ ! -e "$T/z2/best.safetensors" ] && [ ! -e "$T/z2/last.safetensors" ] && [ ! -e "$T/z2/metrics.jsonl" ] && ok \
    || fail "no augmentation to data.img_size: exit $rc: $(tail -2 <<<"$out")"
mkdir -p "$T/bad/class_0" "$T/bad/class_1"
for i in 1 2 3 4 5 6 7 8 9; do echo "not an image" >"$T/bad/class_$((i % 2))/$i.png"; done
out=$("$usi" train "$T/small.cfg" --set output_dir="$T/z3" --set data.train="$T/bad" --set data.val="$T/bad" \
      --set data.batch_size=4 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "data.train: every one of the 8 images read from $T/bad was skipped (it holds 9;" <<<"$out" \
    && [ ! -e "$T/z3/best.safetensors" ] && [ ! -e "$T/z3/last.safetensors" ] && ok \
    || fail "every file corrupt: exit $rc: $(tail -2 <<<"$out")"

# usi eval: NaN outputs are an error, not 100%; so is a val folder with no readable image.
nan_copy "$T/s2/best.safetensors" "$T/nan.safetensors"
out=$("$usi" eval "$T/small.cfg" --checkpoint "$T/nan.safetensors" 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "$T/nan.safetensors: the outputs are NaN or infinite for 40 of the 40 val images" <<<"$out" \
    && ! grep -q "100.00" <<<"$out" && ok || fail "eval of NaN weights: exit $rc: $out"
# A teacher of NaN weights is named before training, not blamed on the rate.
out=$("$usi" train "$T/small.cfg" --set output_dir="$T/nant" --set teacher.name=model \
      --set teacher.weights="$T/nan.safetensors" 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "teacher 'model': its outputs are NaN or infinite for 40 of the 40 val images" <<<"$out" \
    && ! grep -q "optimizer.lr" <<<"$out" && [ ! -e "$T/nant/last.safetensors" ] && ok \
    || fail "a NaN teacher: exit $rc: $(tail -2 <<<"$out")"
mkdir -p "$T/badval"
for i in $(seq 0 9); do mkdir -p "$T/badval/class_$i"; echo "not an image" >"$T/badval/class_$i/x.png"; done
for json in "" --json; do
    out=$("$usi" eval "$T/small.cfg" --checkpoint "$T/s2/best.safetensors" --set data.val="$T/badval" $json 2>&1)
    rc=$?
    [ $rc -eq 1 ] && grep -q "data.val: none of the 10 images in $T/badval could be read" <<<"$out" && ok \
        || fail "eval on no readable image $json: exit $rc: $out"
done
out=$("$usi" eval --checkpoint "$T/s2/best.safetensors" 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "usage: usi eval" <<<"$out" && ok || fail "eval without CONFIG: exit $rc (usage is 2): $out"

# usi predict: NaN weights refused by name; --logits checked before any work;
# --json stays JSON for a file name that is not UTF-8 (U+FFFD for the byte).
img=$(ls "$T/small/val/class_0/"*.png | head -1)
out=$("$usi" predict --weights "$T/nan.safetensors" "$img" 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "$T/nan.safetensors: its outputs are NaN" <<<"$out" && ! grep -q "nan%" <<<"$out" && ok \
    || fail "predict with NaN weights: exit $rc: $out"
out=$("$usi" predict --weights "$T/s2/best.safetensors" --logits "$T/no/such/x.safetensors" "$img" 2>"$T/pl.err")
rc=$?
[ $rc -eq 1 ] && [ -z "$out" ] && grep -q -- "--logits $T/no/such/x.safetensors: the folder $T/no/such" "$T/pl.err" && ok \
    || fail "predict --logits into a missing folder: exit $rc: $out $(cat "$T/pl.err")"
odd="$T/odd"$'\xff'".png"
cp "$img" "$odd"
"$usi" predict --weights "$T/s2/best.safetensors" --json --logits "$T/odd.safetensors" "$odd" >"$T/odd.json" 2>"$T/odd.err" \
    && python3 -c 'import json, sys
d = json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))
assert d[0]["image"].endswith("odd\ufffd.png"), d[0]["image"]
b = open(sys.argv[2], "rb").read()
n = int.from_bytes(b[:8], "little")
json.loads(b[8:8 + n].decode("utf-8"))' "$T/odd.json" "$T/odd.safetensors" && ok \
    || fail "predict --json of a name that is not UTF-8: $(cat "$T/odd.err") $(head -c 300 "$T/odd.json")"

# usi predict reads every format to the same pixels: one picture as PNG, BMP,
# PPM, TIFF (plain and LZW) and lossless WebP (tests/data/formats) gives the
# same logits, bit for bit.
fx="$(cd "$(dirname "$0")/../data/formats" && pwd)"
"$usi" predict --weights "$T/s2/best.safetensors" --logits "$T/formats.safetensors" "$fx/rgb24.bmp.rgb.png" \
    "$fx/rgb24.bmp" "$fx/rgb.ppm" "$fx/raw.tif" "$fx/lzw.tif" "$fx/lossless.webp" >/dev/null 2>"$T/formats.err" \
    && python3 - "$T/formats.safetensors" <<'PY' && ok || fail "predict of one picture in six formats: $(cat "$T/formats.err")"
import json, sys
b = open(sys.argv[1], "rb").read()
n = int.from_bytes(b[:8], "little")
t = json.loads(b[8:8 + n])["logits"]
rows, classes = t["shape"]
start, end = t["data_offsets"]
data = b[8 + n + start:8 + n + end]
size = 4 * classes
assert rows == 6 and len(set(data[i * size:(i + 1) * size] for i in range(rows))) == 1, "the rows differ"
PY

# usi preview names the path it was given, not a temporary file beside it.
out=$("$usi" preview "$T/small.cfg" --out "$T/no/such/g.png" 2>&1 >/dev/null)
rc=$?
[ $rc -eq 1 ] && grep -q "$T/no/such/g.png" <<<"$out" && ! grep -q "g.png.tmp" <<<"$out" && ok \
    || fail "preview into a missing folder: exit $rc: $out"

finish
