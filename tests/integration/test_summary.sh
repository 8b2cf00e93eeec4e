#!/usr/bin/env bash
# `usi summary` from the build tree: ResNet-50's parameter count and output
# shape must equal timm's (25,557,032; [1, 1000]), its MACs fvcore's count,
# and bad arguments must give usage errors.
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
out=$("$usi" summary no_such_net 2>&1)
[ $? -eq 1 ] && grep -q "no backbone named 'no_such_net'" <<<"$out" || fail "unknown backbone: $out"
"$usi" summary --help | grep -q '^usage: usi summary BACKBONE' || fail "usi summary --help"

[ "$fails" -eq 0 ] && echo "summary: all checks passed"
exit $((fails > 0))
