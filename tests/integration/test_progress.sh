#!/usr/bin/env bash
# The training progress line: in a log (stderr not a terminal) it comes every
# progress_interval seconds and at each epoch's end, not every N steps; it
# shows img/s with one decimal; `usi -q` silences it with the info lines; on
# a terminal it is redrawn in place and every other line starts on a line of
# its own; epochs are counted from 1 in every line.
set -u
build=${1:?usage: test_progress.sh BUILD_ROOT TINY_FOLDER_TOOL}
tiny=${2:?}
usi="$build/core/cli/usi"
T=$(mktemp -d /tmp/usi-progress-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
checks=0
ok() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }
export OMP_WAIT_POLICY=passive

"$tiny" /usr/share/datasets/fashion-mnist "$T/data" 20 5 || { echo "FAIL: no test images"; exit 1; }
cat >"$T/run.cfg" <<CFG
backbone = { name = "mobilenetv3_small_100"; };
threads = 1;
data = { train = "$T/data/train"; val = "$T/data/val"; img_size = 28; batch_size = 16; workers = 1;
         mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; repeated_aug = 1; };
augment = ( { name = "hflip"; } );
schedule = { epochs = 2; warmup_epochs = 0; cooldown_epochs = 0; };
CFG
progress_lines() { grep -c '^epoch [0-9]*/2  step' "$1"; }

# --- a log: only at epoch ends with a long interval, every step with 0 ---
"$usi" train "$T/run.cfg" --set output_dir="$T/a" --set progress_interval=1000 2>"$T/a.log" || fail "run a: $(tail -3 "$T/a.log")"
n=$(progress_lines "$T/a.log")
[ "$n" -eq 2 ] && grep -q '^epoch 1/2  step 12/12 ' "$T/a.log" && grep -q '^epoch 2/2  step 12/12 ' "$T/a.log" && ok \
    || fail "interval 1000: $n progress lines: $(grep '^epoch' "$T/a.log")"
"$usi" train "$T/run.cfg" --set output_dir="$T/b" --set progress_interval=0 2>"$T/b.log" || fail "run b: $(tail -3 "$T/b.log")"
n=$(progress_lines "$T/b.log")
[ "$n" -eq 24 ] && ok || fail "interval 0: $n progress lines, want 24 (one per step)"
bad=$(grep '^epoch [0-9]*/2  step' "$T/b.log" | grep -cvE '  [0-9]+\.[0-9] img/s on cpu  ')
[ "$bad" -eq 0 ] && ok || fail "$bad progress lines without img/s to one decimal: $(grep -m1 '^epoch' "$T/b.log")"
# One numbering: the data summary, the progress line and the accuracy line agree.
for e in 1 2; do
    grep -q "^usi: info: data: epoch $e: 192 samples in 12 batches" "$T/b.log" && grep -q "^epoch $e/2  step 12/12" "$T/b.log" \
        && grep -q "^epoch $e: top-1" "$T/b.log" && ok || fail "epoch $e is not numbered $e everywhere: $(grep "epoch" "$T/b.log" | tail -4)"
done
grep -q 'data: epoch 0' "$T/b.log" && fail "an epoch 0 in the log" || ok

# --- -q: errors only, progress included ---
"$usi" -q train "$T/run.cfg" --set output_dir="$T/q" --set progress_interval=0 2>"$T/q.log" || fail "run -q: $(tail -3 "$T/q.log")"
[ ! -s "$T/q.log" ] && [ -s "$T/q/last.safetensors" ] && ok || fail "-q printed: $(head -3 "$T/q.log")"

# --- a terminal (script gives the run a pseudo-terminal) ---
if command -v script >/dev/null; then
    script -qfec "'$usi' train '$T/run.cfg' --set output_dir='$T/t'" /dev/null >"$T/t.raw" 2>&1 </dev/null
    tr -d '\r' <"$T/t.raw" >"$T/t.log"
    grep -q $'\r''epoch 1/2  step' "$T/t.raw" && ok || fail "no progress redrawn in place on a terminal: $(head -c 300 "$T/t.raw")"
    glued=$(grep -a 'ETA.*\(usi: \|top-1\|best\)' "$T/t.log" | head -2)
    [ -z "$glued" ] && ok || fail "a line glued onto the progress line: $glued"
    for e in 1 2; do
        grep -aq "^usi: info: data: epoch $e: " "$T/t.log" && grep -aq "^epoch $e: top-1" "$T/t.log" && ok \
            || fail "terminal: epoch $e lines do not start their own line: $(grep -a "epoch $e" "$T/t.log" | head -3)"
    done
else
    echo "script (bsdutils) is missing: the terminal checks were skipped"
fi

echo "$checks checks, $fails failed"
[ "$fails" -eq 0 ]
