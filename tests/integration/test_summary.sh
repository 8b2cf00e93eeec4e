#!/usr/bin/env bash
# `usi summary` from the build tree: ResNet-50's parameter count and output
# shape must equal timm's (25,557,032; [1, 1000]), its MACs fvcore's count,
# and bad arguments must give usage errors. The memory figures are planned,
# never allocated: consistent with each other, growing with --batch, and
# ResNet-50 at batch 256 (tens of GiB) fits under a small ulimit -v. The
# --verbose table has one row per node counted and its MACs add up.
set -u
build=${1:?usage: test_summary.sh BUILD_ROOT}
usi="$build/core/cli/usi"
fails=0
fail() { fails=$((fails + 1)); echo "FAIL: $*"; }

out=$("$usi" summary resnet50 --json 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "usi summary resnet50 --json: exit $rc: $out"
grep -qE '"params":[[:space:]]*25557032,' <<<"$out" || fail "parameter count is not 25557032: $out"
grep -qE '"output_shape":[[:space:]]*\[1,[[:space:]]*1000\]' <<<"$out" || fail "output shape is not [1, 1000]: $out"
# fvcore's conv + linear count for resnet50 at 224 (timm: 4.09 GMACs).
grep -qE '"macs":[[:space:]]*4089184256,' <<<"$out" || fail "MACs are not 4089184256: $out"

out=$("$usi" summary resnet18 --img-size 64 --num-classes 10 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "usi summary resnet18 --img-size 64 --num-classes 10: exit $rc: $out"
grep -qF 'output       [1, 10]' <<<"$out" || fail "resnet18 with 10 classes: $out"

"$usi" summary resnet50 --img-size x >/dev/null 2>&1
[ $? -eq 2 ] || fail "a bad --img-size is not a usage error"
# A backbone whose output is not [batch, num_classes] logits (the test
# fixture returns its input) is refused, as training refuses it.
T=$(mktemp -d /tmp/usi-summary-XXXXXX)
trap 'rm -rf "$T"' EXIT
chmod 755 "$T" && cp "$build/tests/abi/fixture_v1_0.so" "$T/" && chmod 644 "$T/fixture_v1_0.so"
out=$("$usi" summary fixture_net --plugin-dir "$T" 2>&1)
[ $? -eq 1 ] && grep -q "backbone 'fixture_net': its output is \[1, 3, 224, 224\] for a batch of 1, not \[1, 1000\]" \
    <<<"$out" || fail "a backbone with a wrong output shape: $out"
# A token network's own build error reaches the user (not "no output").
out=$("$usi" summary vit_small_patch16_224 --img-size 8 --set backbone.stem=timm 2>&1)
[ $? -eq 1 ] && grep -q "img_size 8 is smaller than a 16 px patch" <<<"$out" && ! grep -q "returned no output" <<<"$out" \
    || fail "vit at 8 px with the timm patch: $out"
out=$("$usi" summary no_such_net 2>&1)
[ $? -eq 1 ] && grep -q "no backbone named 'no_such_net'" <<<"$out" || fail "unknown backbone: $out"
"$usi" summary --help | grep -q '^usage: usi summary BACKBONE' || fail "usi summary --help"

# A number field of a JSON reply.
field() { grep -oE "\"$1\":[[:space:]]*[0-9]+" <<<"$2" | head -1 | grep -oE '[0-9]+$'; }

out=$("$usi" summary resnet18 --json 2>&1)
p=$(field params "$out"); train=$(field train_memory_bytes "$out"); infer=$(field infer_memory_bytes "$out")
parts=$(($(field param_bytes "$out") + $(field grad_bytes "$out") + $(field optimizer_bytes "$out") + $(field ema_bytes "$out")))
[ -n "$train" ] && [ -n "$infer" ] && [ "$train" -gt "$infer" ] || fail "resnet18: training memory $train not above inference $infer"
[ "$parts" -eq $((4 * p * 5)) ] || fail "resnet18: params + grads + AdamW + EMA = $parts bytes, not 20 * $p"
buf=$(field buffer_bytes "$out")
[ "$train" -eq $((parts + 2 * buf + $(field arena_train_bytes "$out"))) ] || fail "resnet18: training memory is not the sum of its parts: $out"
[ "$infer" -eq $((4 * p + buf + $(field arena_infer_bytes "$out"))) ] || fail "resnet18: inference memory is not the sum of its parts: $out"
[ "$(field batch "$out")" -eq 32 ] || fail "the default batch is not 32: $out"
a8=$(field arena_train_bytes "$("$usi" summary resnet18 --img-size 64 --batch 8 --json 2>&1)")
a16=$(field arena_train_bytes "$("$usi" summary resnet18 --img-size 64 --batch 16 --json 2>&1)")
[ -n "$a8" ] && [ -n "$a16" ] && [ "$a16" -gt "$a8" ] || fail "the training arena does not grow with --batch: $a8 at 8, $a16 at 16"

# Planned only: 256 x ResNet-50 needs ~21 GiB of arena; 3 GiB of address space must do.
# AddressSanitizer reserves terabytes of address space for its shadow, so a
# sanitizer build skips this check.
if [ -n "${ASAN_OPTIONS:-}" ] || ldd "$usi" 2>/dev/null | grep -q libasan; then
    echo "summary: sanitizer build, the ulimit -v check is skipped"
else
    out=$( (ulimit -v 3145728 && "$usi" summary resnet50 --batch 256 --json) 2>&1)
    rc=$?
    a=$(field arena_train_bytes "$out")
    [ "$rc" -eq 0 ] && [ -n "$a" ] && [ "$a" -gt 4294967296 ] || fail "resnet50 --batch 256 under ulimit -v 3 GiB: exit $rc: $out"
fi

out=$("$usi" summary resnet18 --img-size 64 --verbose 2>&1)
nodes=$(grep -oE '^  nodes +[0-9]+' <<<"$out" | grep -oE '[0-9]+$')
rows=$(awk '/^layer /{t=1; next} t && NF' <<<"$out" | wc -l)
[ -n "$nodes" ] && [ "$rows" -eq "$nodes" ] || fail "--verbose: $rows rows for $nodes nodes"
macs=$(grep -oE '^  MACs +[0-9,]+' <<<"$out" | grep -oE '[0-9,]+$' | tr -d ,)
sum=$(awk '/^layer /{t=1; next} t && NF {gsub(",", "", $NF); s += $NF} END {printf "%.0f", s}' <<<"$out")
[ -n "$macs" ] && [ "$sum" -eq "$macs" ] || fail "--verbose: layer MACs add up to $sum, not $macs"
out=$("$usi" summary resnet18 --img-size 64 --verbose --json 2>&1)
[ "$(grep -c '"op":' <<<"$out")" -eq "$(field nodes "$out")" ] || fail "--verbose --json: layers are not the node count"
"$usi" summary resnet18 --batch 0 >/dev/null 2>&1
[ $? -eq 2 ] || fail "--batch 0 is not a usage error"

# --device and --precision: said in the output, refused when unknown; a
# device the build or machine lacks is a one-line error naming it.
out=$("$usi" summary resnet18 --img-size 64 --device cpu-guarded --precision fp32 2>&1)
grep -qE '^  device +cpu-guarded, precision fp32$' <<<"$out" || fail "--device cpu-guarded: $out"
out=$("$usi" summary resnet18 --img-size 64 --json 2>&1)
grep -qE '"device":[[:space:]]*"cpu"' <<<"$out" && grep -qE '"precision":[[:space:]]*"fp32"' <<<"$out" ||
    fail "--json has no device cpu, precision fp32: $out"
out=$("$usi" summary resnet18 --img-size 64 2>&1)
grep -qE '^  device +cpu, precision fp32$' <<<"$out" || fail "cpu has no bf16 path, yet: $out"
out=$("$usi" summary resnet18 --device gpu 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "use one of cpu, cpu-guarded, cuda" <<<"$out" || fail "--device gpu: exit $rc: $out"
out=$("$usi" summary resnet18 --precision fp16 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "fp32 or mixed" <<<"$out" || fail "--precision fp16: exit $rc: $out"
if ! nvidia-smi -L >/dev/null 2>&1; then
    out=$("$usi" summary resnet18 --device cuda 2>&1)
    rc=$?
    [ $rc -ne 0 ] && [ "$(wc -l <<<"$out")" -eq 1 ] && grep -q "cuda" <<<"$out" ||
        fail "--device cuda without a GPU: exit $rc: $out"
fi

[ "$fails" -eq 0 ] && echo "summary: all checks passed"
exit $((fails > 0))
