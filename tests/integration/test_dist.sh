#!/usr/bin/env bash
# Distributed training on this host (loopback and shared memory only):
# - equivalence: `mpirun -np 2` gives the same per-step losses and final
#   weights as one process that plays both ranks in turn (dist.simulate_ranks
#   = 2: rank 0's micro-batch, then rank 1's, gradients averaged, rank 0's
#   batch-norm statistics kept), with repeated augmentation, Mixup/CutMix,
#   clipping, EMA and a KD teacher, on the cpu and cpu-guarded devices.
#   Tolerance: losses within 1e-6 relative, every float of the checkpoint
#   (weights, EMA, optimizer state, statistics) within 1e-5 absolute. Both
#   form (a + b) / 2 of the same two gradients with one rounding, so the
#   observed difference is 0; the figures are printed;
# - evaluation is sharded and its counts summed: the top-1 training reports
#   equals `usi eval` of best.safetensors on one process;
# - SIGKILL of rank 1 mid-epoch ends the job within seconds naming rank 1;
#   the checkpoint on disk is whole (usi eval loads it, with the top-1 of its
#   epoch) and resuming it on 2 ranks ends where the uninterrupted run did;
# - dist.sync_bn: `mpirun -np 2` (batch 8 each, batch-norm statistics over
#   both ranks) gives the same per-step losses and final state as ONE
#   process with the global batch of 16 and plain batch norm (the same
#   images: each step's positions of the one epoch order, each augmented
#   from its position). Without Mixup/CutMix, which pairs images within a
#   batch; SGD at a small rate. The two can't be identical (different
#   summation orders in the statistics, the convolutions, the loss mean and
#   the gradient sum), and a float rounding now and then flips a ReLU,
#   which the training carries on: the same run on 2 threads instead of 1
#   differs from itself by as much as the two do. Tolerances, with what was
#   measured and what batch norm per rank gives instead: losses within 1e-3
#   relative (1.9e-4; 0.17), weights and EMA within 1e-4 absolute (6e-6;
#   2.7e-3), running statistics within 5e-3 (4.6e-4; 0.5), optimizer
#   momentum within 0.2 (0.037; 2.6); the first step's loss, before any
#   update, within 2e-6 (3e-7; 0.12). dx from one rank's sums alone (no
#   reduction in backward) fails every one but the first step's (losses
#   off by 1.3e-3 at step 2, 0.05 later; weights by 1.8e-3). One process with
#   sync_bn is plain batch norm, bit for bit; a rank left without a batch
#   (bad files with no readable file to take their place) still takes part
#   in every sum, so the others go on;
#   sync_bn with simulated ranks is refused with the reason;
# - a rank that fails stops the job naming itself; ranks that run other
#   settings (named) or other data are refused before anything runs.
set -u
build=${1:?usage: test_dist.sh BUILD_ROOT TINY_FOLDER_TOOL ST_COMPARE MPIRUN}
tiny=${2:?}
st_compare=${3:?}
mpirun=${4:?}
usi="$build/core/cli/usi"
T=$(mktemp -d /tmp/usi-dist-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
checks=0
ok() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }

# Open MPI on this host only; root allowed (containers); 2 ranks on any cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
       OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_tcp_if_include=lo OMP_WAIT_POLICY=passive
mpi() { "$mpirun" --oversubscribe --bind-to none "$@"; }

idx=/usr/share/datasets/fashion-mnist
"$tiny" "$idx" "$T/data" 40 10 || { echo "FAIL: could not write the test images (dataset-fashion-mnist)"; exit 1; }

cat >"$T/run.cfg" <<CFG
backbone = { name = "mobilenetv3_small_100"; };
threads = 1;
seed = 5;
metrics_every = 1;
data = { train = "$T/data/train"; val = "$T/data/val"; img_size = 28; batch_size = 8; workers = 1;
         mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; repeated_aug = 3; };
augment = ( { name = "random_resized_crop"; scale = [0.6, 1.0]; }, { name = "hflip"; },
            { name = "mixup_cutmix"; } );
optimizer = { lr = 0.03; clip_grad = 5.0; };
schedule = { epochs = 2; warmup_epochs = 1; cooldown_epochs = 0; };
CFG
losses() { grep '"loss"' "$1" | sed 's/.*"step": \([0-9]*\), "loss": \([^,]*\),.*/\1 \2/' | sort -n | uniq; }
# Same steps, losses within 1e-6 relative (or $4); prints the largest difference.
same_losses() {
    join <(losses "$1") <(losses "$2") | awk -v want="$3" -v tol="${4:-1e-6}" '
        { n++; d = $2 - $3; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2); if (r > worst) worst = r
          if (n == 1) first = r }
        END { printf "%d steps compared, largest relative loss difference %g (tolerance %g), first step %g\n",
                     n, worst, tol, first; exit !(n == want && worst <= tol) }'
}

# --- equivalence: 2 processes vs one process playing 2 ranks ---
if mpi -np 2 "$usi" train "$T/run.cfg" --set output_dir="$T/a" >"$T/a.log" 2>&1; then ok
else fail "mpirun -np 2: $(tail -5 "$T/a.log")"; fi
if "$usi" train "$T/run.cfg" --set output_dir="$T/s" --set dist.simulate_ranks=2 >"$T/s.log" 2>&1; then ok
else fail "simulate_ranks=2: $(tail -5 "$T/s.log")"; fi
if out=$(same_losses "$T/a/metrics.jsonl" "$T/s/metrics.jsonl" 48); then ok; echo "losses: $out"
else fail "losses of 2 processes and 2 simulated ranks: $out"; fi
if out=$("$st_compare" "$T/a/last.safetensors" "$T/s/last.safetensors" 1e-5); then ok; echo "checkpoint: $out"
else fail "final state of 2 processes and 2 simulated ranks: $out"; fi
grep -q "data: epoch 2: 384 samples in 48 batches of 2 ranks, 0 skipped" "$T/a.log" && ok \
    || fail "data summary: $(grep 'data: epoch 2' "$T/a.log")"
[ "$(grep -c 'usi\[rank 1/2\]: info' "$T/a.log")" -eq 0 ] && ok || fail "rank 1 printed info lines"
# Rank 0 alone writes: one metrics line per step, not two.
[ "$(grep -c '"loss"' "$T/a/metrics.jsonl")" -eq 48 ] && ok || fail "$(grep -c '"loss"' "$T/a/metrics.jsonl") loss lines"

# --- sharded evaluation = one process ---
best=$(grep -o 'best top-1 [0-9.]*' "$T/a.log" | awk '{print $3}')
out=$("$usi" eval "$T/run.cfg" --checkpoint "$T/a/best.safetensors" --json 2>&1)
got=$(grep -o '"top1": [0-9.]*' <<<"$out" | awk '{printf "%.2f", $2}')
[ -n "$best" ] && [ "$got" = "$best" ] && ok || fail "usi eval gives '$got', the 2-process run said '$best': $out"

# --- with a KD teacher (the run above as teacher), one epoch; the 2 processes
# on the cpu-guarded device, whose gradients reach MPI through host copies ---
kd=(--set schedule.epochs=1 --set teacher.name=model --set teacher.backbone=mobilenetv3_small_100
    --set teacher.weights="$T/a/best.safetensors" --set teacher.mean='[0.286, 0.286, 0.286]'
    --set teacher.std='[0.353, 0.353, 0.353]')
if mpi -np 2 "$usi" train "$T/run.cfg" --set output_dir="$T/kd2" --set device=cpu-guarded "${kd[@]}" >"$T/kd2.log" 2>&1 &&
   "$usi" train "$T/run.cfg" --set output_dir="$T/kds" --set dist.simulate_ranks=2 "${kd[@]}" >"$T/kds.log" 2>&1
then ok; else fail "KD runs: $(tail -3 "$T/kd2.log" "$T/kds.log")"; fi
t2=$(grep -o "teacher 'model': top-1 [0-9.]*" "$T/kd2.log"); ts=$(grep -o "teacher 'model': top-1 [0-9.]*" "$T/kds.log")
[ -n "$t2" ] && [ "$t2" = "$ts" ] && ok || fail "teacher accuracy: '$t2' on 2 ranks, '$ts' on one"
if out=$(same_losses "$T/kd2/metrics.jsonl" "$T/kds/metrics.jsonl" 24) &&
   out2=$("$st_compare" "$T/kd2/last.safetensors" "$T/kds/last.safetensors" 1e-5); then ok; echo "KD: $out; $out2"
else fail "KD equivalence: $out ${out2:-}"; fi

# --- sync_bn: 2 processes of batch 8 vs one process of batch 16 ---
cat >"$T/sbn.cfg" <<CFG
backbone = { name = "mobilenetv3_small_100"; };
threads = 1;
seed = 5;
metrics_every = 1;
data = { train = "$T/data/train"; val = "$T/data/val"; img_size = 28; batch_size = 8; workers = 1;
         mean = [0.286, 0.286, 0.286]; std = [0.353, 0.353, 0.353]; repeated_aug = 3; };
augment = ( { name = "random_resized_crop"; scale = [0.6, 1.0]; }, { name = "hflip"; } );
optimizer = { name = "sgd"; lr = 0.005; clip_grad = 5.0; };
schedule = { epochs = 2; warmup_epochs = 1; cooldown_epochs = 0; };
CFG
if mpi -np 2 "$usi" train "$T/sbn.cfg" --set output_dir="$T/sb2" --set dist.sync_bn=true >"$T/sb2.log" 2>&1 &&
   "$usi" train "$T/sbn.cfg" --set output_dir="$T/sb1" --set data.batch_size=16 >"$T/sb1.log" 2>&1
then ok; else fail "sync_bn runs: $(tail -3 "$T/sb2.log" "$T/sb1.log")"; fi
grep -q "batch norm: statistics of the global batch (2 x 8 images), summed with mpi" "$T/sb2.log" && ok \
    || fail "sync_bn is not on: $(grep -i 'batch norm' "$T/sb2.log")"
if out=$(same_losses "$T/sb2/metrics.jsonl" "$T/sb1/metrics.jsonl" 48 1e-3) &&
   awk '{ exit !($NF <= 2e-6) }' <<<"$out"; then ok; echo "sync_bn losses: $out"
else fail "losses of 2 processes with sync_bn and one with the global batch: $out"; fi
if out=$("$st_compare" "$T/sb2/last.safetensors" "$T/sb1/last.safetensors" 1e-4 running_=5e-3 optim.=0.2)
then ok; echo "sync_bn checkpoint: $out"
else fail "final state of 2 processes with sync_bn and one with the global batch: $out"; fi
# One process: plain batch norm exactly.
if "$usi" train "$T/sbn.cfg" --set output_dir="$T/sb1s" --set data.batch_size=16 --set dist.sync_bn=true \
       >"$T/sb1s.log" 2>&1 && out=$("$st_compare" "$T/sb1s/last.safetensors" "$T/sb1/last.safetensors" 0) &&
   cmp -s <(losses "$T/sb1s/metrics.jsonl") <(losses "$T/sb1/metrics.jsonl"); then ok
else fail "one process with sync_bn differs from plain batch norm: ${out:-$(tail -3 "$T/sb1s.log")}"; fi
out=$("$usi" train "$T/sbn.cfg" --set output_dir="$T/sbs" --set dist.sync_bn=true --set dist.simulate_ranks=2 2>&1)
[ $? -eq 1 ] && grep -q "dist.sync_bn with dist.simulate_ranks = 2: .*data.batch_size = 16" <<<"$out" && ok \
    || fail "sync_bn with simulated ranks: $out"
# Bad files: a training sample whose file fails takes the next readable file
# in dataset order (up to 50 files on); the first 60 files bad leaves the
# first 10 without one, and a batch holding such a sample is left out on its
# rank alone (no repeated augmentation, so each position once per epoch),
# whose batch norms must not wait for that rank in vain.
cp -r "$T/data" "$T/bad"
find "$T/bad/train" -type f | LC_ALL=C sort | head -60 | while read -r f; do echo "not an image" >"$f"; done
if out=$(timeout 120 "$mpirun" --oversubscribe --bind-to none -np 2 "$usi" train "$T/sbn.cfg" \
             --set output_dir="$T/sbb" --set data.train="$T/bad/train" --set data.repeated_aug=1 \
             --set schedule.epochs=1 --set dist.sync_bn=true 2>&1) &&
   grep -q "batch left out" <<<"$out" && grep -q "10 skipped, 50 replaced by the next readable file" <<<"$out"; then ok
else fail "sync_bn with a batch left out on one rank: $(tail -5 <<<"$out")"; fi

# --- SIGKILL of rank 1 in epoch 2 ---
# mpirun itself in the background (not a function's subshell): its children are the ranks.
"$mpirun" --oversubscribe --bind-to none -np 2 "$usi" train "$T/run.cfg" --set output_dir="$T/k" >"$T/k.log" 2>&1 &
job=$!
for _ in $(seq 1 1200); do
    grep -q '"step": 26,' "$T/k/metrics.jsonl" 2>/dev/null && break
    kill -0 $job 2>/dev/null || break
    sleep 0.05
done
rank1=""
for p in $(pgrep -P "$job"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && rank1=$p
done
ranks=$(pgrep -P "$job" | tr '\n' ' ')
if [ -n "$rank1" ]; then
    start=$(date +%s%N)
    kill -KILL "$rank1"
    wait $job
    rc=$?
    took=$((($(date +%s%N) - start) / 1000000))
    echo "SIGKILL of rank 1: the job ended in $took ms with status $rc"
    [ $rc -ne 0 ] && [ $took -lt 15000 ] && ok || fail "after SIGKILL: status $rc after $took ms"
    grep -q "rank 1 .*exited on signal 9" "$T/k.log" && ok || fail "the message does not name rank 1: $(tail -5 "$T/k.log")"
    # Ranks still running (not zombies waiting to be reaped) 5 s after the job ended.
    alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null); [ -n "$st" ] && [ "$st" != Z ]; }
    left=""
    for _ in $(seq 1 50); do
        left=""; for p in $ranks; do alive "$p" && left="$left $p"; done
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -z "$left" ] && ok || { fail "processes left after the job ended:$left"; kill -KILL $left; }
else
    fail "no rank 1 to kill (the run ended early?): $(tail -3 "$T/k.log")"
    wait $job
fi
ls "$T/k" | grep -q '\.tmp-' && fail "a temporary file was left: $(ls "$T/k")" || ok
epoch1=$(grep '"top1"' "$T/k/metrics.jsonl" | head -1 | grep -o '"top1": [0-9.]*' | awk '{printf "%.2f", $2}')
out=$("$usi" eval "$T/run.cfg" --checkpoint "$T/k/last.safetensors" --json 2>&1)
got=$(grep -o '"top1": [0-9.]*' <<<"$out" | awk '{printf "%.2f", $2}')
[ -n "$epoch1" ] && [ "$got" = "$epoch1" ] && ok || fail "the checkpoint after SIGKILL: eval '$got', epoch 1 said '$epoch1': $out"
cp "$T/k/last.safetensors" "$T/k1.safetensors"
if mpi -np 2 "$usi" train "$T/run.cfg" --set output_dir="$T/k" --resume "$T/k/last.safetensors" >"$T/k2.log" 2>&1
then ok; else fail "resume on 2 ranks: $(tail -5 "$T/k2.log")"; fi
# Another number of ranks: refused unless the global batch stays (2 x 8);
# simulated ranks are ranks (the same sums as mpirun -np 2, so the end is
# the uninterrupted run's), and 1 x 16 goes on saying so.
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/k3" --resume "$T/k1.safetensors" 2>&1)
[ $? -eq 1 ] && grep -q "k1.safetensors was trained with a global batch of 16 (2 ranks x 8 images); this run has 1 x 8 = 8" \
    <<<"$out" && [ ! -e "$T/k3/last.safetensors" ] && ok || fail "resume on 1 rank of 8: $(tail -2 <<<"$out")"
if "$usi" train "$T/run.cfg" --set output_dir="$T/k4" --set dist.simulate_ranks=2 --resume "$T/k1.safetensors" \
       >"$T/k4.log" 2>&1 && out=$("$st_compare" "$T/a/last.safetensors" "$T/k4/last.safetensors" 1e-5); then ok
else fail "resume of 2 processes on 2 simulated ranks: ${out:-$(tail -3 "$T/k4.log")}"; fi
if "$usi" train "$T/run.cfg" --set output_dir="$T/k5" --set data.batch_size=16 --resume "$T/k1.safetensors" \
       >"$T/k5.log" 2>&1 && grep -q "resuming a run of 2 ranks x 8 images on 1 x 16: the same global batch" "$T/k5.log" &&
   ! grep "other than it was trained with" "$T/k5.log" | grep -q batch_size; then ok
else fail "resume of 2 x 8 on 1 x 16: $(grep -E 'resum|error' "$T/k5.log")"; fi
if out=$("$st_compare" "$T/a/last.safetensors" "$T/k/last.safetensors" 1e-5); then ok; echo "killed and resumed: $out"
else fail "killed and resumed on 2 ranks differs from the uninterrupted run: $out"; fi

# --- a failing rank, ranks that disagree ---
start=$(date +%s%N)
out=$(mpi -np 1 "$usi" train "$T/run.cfg" --set output_dir="$T/f" : \
      -np 1 "$usi" train "$T/run.cfg" --set output_dir="$T/f" --set data.train="$T/none" 2>&1)
rc=$?
took=$((($(date +%s%N) - start) / 1000000))
[ $rc -ne 0 ] && grep -q "usi\[rank 1/2\]: error: data.train: dataset folder $T/none" <<<"$out" &&
    grep -q "rank 1 failed: stopping all 2 processes" <<<"$out" && ok || fail "failing rank: status $rc: $out"
[ $took -lt 20000 ] && ok || fail "the job took $took ms to stop after rank 1 failed"
# Other settings on one rank: refused before anything runs, naming them
# (without the check, other EMA settings hang at the first evaluation and
# another learning rate trains two models apart).
out=$(timeout 120 "$mpirun" --oversubscribe --bind-to none -np 1 "$usi" train "$T/run.cfg" --set output_dir="$T/m" : \
      -np 1 "$usi" train "$T/run.cfg" --set output_dir="$T/m2" --set data.batch_size=4 --set ema.enabled=false \
      --set optimizer.lr=0.5 2>&1)
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] &&
    grep -q "rank 1 runs 3 settings other than rank 0's: .*data.batch_size = 4 (rank 0: 8)" <<<"$out" &&
    grep -q "optimizer.lr = 0.5 (rank 0: " <<<"$out" && grep -q "ema.enabled = false (rank 0: true)" <<<"$out" && ok \
    || fail "ranks with other settings: status $rc: $(grep -i error <<<"$out")"
# The same settings but other data contents (the paths may differ by host).
cp -r "$T/data" "$T/fewer"
find "$T/fewer/train" -type f | LC_ALL=C sort | head -16 | xargs rm -f
out=$(mpi -np 1 "$usi" train "$T/run.cfg" --set output_dir="$T/m" : \
      -np 1 "$usi" train "$T/run.cfg" --set output_dir="$T/m" --set data.train="$T/fewer/train" 2>&1)
[ $? -ne 0 ] && grep -q "rank 1 has 384 training images where rank 0 has 400" <<<"$out" && ok \
    || fail "ranks with other data: $(grep -i error <<<"$out")"
out=$("$usi" train "$T/run.cfg" --set output_dir="$T/b" --set dist.backend=mpi 2>&1)
[ $? -eq 1 ] && grep -q 'dist.backend = "mpi" needs a run started by mpirun' <<<"$out" && ok || fail "backend mpi alone: $out"

echo "$checks checks, $fails failed"
[ "$fails" -eq 0 ]
