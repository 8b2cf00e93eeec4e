#!/usr/bin/env bash
# A checkpoint survives kill -9 at any moment: `usi train` on a tiny
# Fashion-MNIST folder (two steps an epoch, so checkpoints are written often)
# is SIGKILLed KILLS times after random delays, wherever it is (starting up,
# loading the checkpoint, in a step, evaluating, halfway through writing a
# checkpoint). After each kill last.safetensors (and best.safetensors) must
# load with `usi eval`, and the next run resumes from it and gets further.
# The delays come from a seeded generator; a failure prints the seed, and
# USI_KILL_SEED=N replays it.
set -u
build=${1:?usage: test_kill.sh BUILD_ROOT TINY_FOLDER_TOOL}
tiny=${2:?usage: test_kill.sh BUILD_ROOT TINY_FOLDER_TOOL}
usi="$build/core/cli/usi"
T=$(mktemp -d /tmp/usi-kill-XXXXXX)
trap 'rm -rf "$T"' EXIT
KILLS=${USI_KILL_COUNT:-15}
seed=${USI_KILL_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
fails=0
checks=0
ok() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL (seed $seed, kill $k after ${delay}s): $*"; }

idx=/usr/share/datasets/fashion-mnist
if [ ! -f "$idx/train-images-idx3-ubyte.gz" ]; then
    echo "FAIL: $idx is missing (Debian package dataset-fashion-mnist; scripts/install-deps installs it)"
    exit 1
fi
"$tiny" "$idx" "$T/data" 4 2 || { echo "FAIL: could not write the test images"; exit 1; }
cat >"$T/run.cfg" <<CFG
backbone = { name = "mobilenetv3_small_100"; };
threads = 1;
data = { train = "$T/data/train"; val = "$T/data/val"; img_size = 28; batch_size = 16; workers = 1;
         mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; repeated_aug = 1; };
augment = ( { name = "random_resized_crop"; scale = [0.6, 1.0]; }, { name = "hflip"; } );
schedule = { epochs = 100000; warmup_epochs = 1; cooldown_epochs = 0; };
output_dir = "$T/out";
CFG

now() { date +%s.%N; }
last_step=-1
advanced=0
resumed=0
k=0
delay=0
span=0
in_save=0
for k in $(seq 1 "$KILLS"); do
    resume=()
    [ -e "$T/out/last.safetensors" ] && resume=(--resume "$T/out/last.safetensors")
    start=$(now)
    "$usi" train "$T/run.cfg" "${resume[@]}" >"$T/run$k.log" 2>&1 &
    pid=$!
    if [ "$k" -eq 1 ]; then
        # the first run writes a checkpoint before its kill; how long that
        # took (start-up and an epoch) scales the delays, so a slow machine
        # is killed as often at each stage as a fast one
        for _ in $(seq 1 2400); do
            [ -e "$T/out/last.safetensors" ] && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        span=$(awk -v a="$start" -v b="$(now)" 'BEGIN { s = 2 * (b - a); printf "%.3f", s < 1.5 ? 1.5 : s }')
    fi
    # from 0.05 s (start-up, loading the checkpoint) to twice the time to
    # the first checkpoint, at least 1.5 s (several epochs, their
    # evaluations and saves)
    delay=$(awk -v r=$RANDOM -v s="$span" 'BEGIN { printf "%.3f", 0.05 + s * r / 32768 }')
    sleep "$delay"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rc=$?
    [ "$rc" -eq 137 ] && ok || { fail "usi train ended with $rc before the kill: $(tail -3 "$T/run$k.log")"; continue; }
    if [ ${#resume[@]} -gt 0 ]; then
        step=$(sed -n 's/.*resuming .* (step \([0-9]*\)).*/\1/p' "$T/run$k.log" | head -1)
        if grep -q "error" "$T/run$k.log"; then
            fail "the resumed run failed: $(grep error "$T/run$k.log" | head -2)"
        elif [ -n "$step" ]; then
            resumed=$((resumed + 1))
            [ "$step" -ge "$last_step" ] && ok || fail "resumed at step $step, before the previous $last_step"
            [ "$step" -gt "$last_step" ] && advanced=$((advanced + 1))
            last_step=$step
        fi
    fi
    for f in last best; do
        [ -e "$T/out/$f.safetensors" ] || continue
        out=$("$usi" eval "$T/run.cfg" --checkpoint "$T/out/$f.safetensors" --json 2>&1)
        [ $? -eq 0 ] && grep -q '"top1"' <<<"$out" && ok || fail "$f.safetensors does not load: $out"
    done
    # a killed writer leaves its temporary file; the next save removes those
    # of writers no longer running, so at most the last run's two remain
    stale=$(find "$T/out" -name '*.tmp-*' | wc -l)
    [ "$stale" -le 2 ] && ok || fail "$stale temporary files pile up: $(ls "$T/out")"
    [ -n "$(find "$T/out" -name "*.tmp-$pid")" ] && in_save=$((in_save + 1))
done
delay=-
[ -e "$T/out/last.safetensors" ] && ok || fail "no checkpoint was ever written"
# the runs got somewhere: resumed often, and from later and later steps
[ "$resumed" -ge $((KILLS / 2)) ] && [ "$advanced" -ge $((KILLS / 4)) ] && ok ||
    fail "only $resumed runs resumed and $advanced got further (last step $last_step)"
# and a clean stop after all that still works
"$usi" train "$T/run.cfg" --resume "$T/out/last.safetensors" >"$T/final.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
    grep -q "^epoch [0-9]*:" "$T/final.log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -INT "$pid" 2>/dev/null
wait "$pid"
rc=$?
[ "$rc" -eq 130 ] && grep -q "resuming" "$T/final.log" && ok || fail "final resume and stop: exit $rc: $(tail -3 "$T/final.log")"
stale=$(find "$T/out" -name '*.tmp-*' | wc -l)
[ "$stale" -eq 0 ] && ok || fail "temporary files of killed runs remain after a clean save: $(ls "$T/out")"
# Each resume redid the steps after its checkpoint: metrics.jsonl holds each
# step's loss and each epoch's evaluation once, in order, not again for
# every kill that came after them.
for kind in loss top1; do
    steps=$(grep "\"$kind\"" "$T/out/metrics.jsonl" | sed 's/.*"step": \([0-9]*\),.*/\1/')
    [ -n "$steps" ] && [ "$steps" = "$(sort -n -u <<<"$steps")" ] && ok \
        || fail "metrics.jsonl repeats or reorders $kind lines: steps $(uniq -d <<<"$(sort -n <<<"$steps")" | head -5 | tr '\n' ' ')"
done

[ "$fails" -eq 0 ] && echo "kill: all $checks checks passed ($KILLS kills within ${span}s each, seed $seed;" \
    "$resumed resumed, $advanced further than before, up to step $last_step; $in_save killed while saving)"
exit $((fails > 0))
