#!/usr/bin/env bash
# `usi plot RUN_DIR`: writes RUN_DIR/curves.png (or --out), and a broken
# metrics line is an error naming the file and line.
set -u
build=${1:?usage: test_plot_cli.sh BUILD_ROOT}
usi="$build/core/cli/usi"
T=$(mktemp -d /tmp/usi-plot-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { fails=$((fails + 1)); echo "FAIL: $*"; }

cat >"$T/metrics.jsonl" <<'JSON'
{"epoch": 1, "step": 10, "loss": 2.85, "lr": 0.00036, "img_s": 86.2}
{"epoch": 1, "step": 31, "loss": 2.10, "lr": 0.00090, "img_s": 90.1}
{"epoch": 1, "step": 31, "top1": 28.0, "top5": 67.6, "ema_top1": 14.4, "ema_top5": 63.0}
{"epoch": 2, "step": 62, "loss": 1.70, "lr": 0.00080, "img_s": 91.0}
{"epoch": 2, "step": 62, "top1": 41.0, "top5": 80.1, "ema_top1": 39.2, "ema_top5": 79.0}
JSON
"$usi" plot "$T" >"$T/out.log" 2>&1 || fail "usi plot: $(cat "$T/out.log")"
[ "$(head -c 8 "$T/curves.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] ||
    fail "no PNG at $T/curves.png"
"$usi" plot "$T" --out "$T/other.png" >/dev/null 2>&1 && [ -s "$T/other.png" ] || fail "usi plot --out"
# SVG from the same drawing: an XML parser reads it, and the curves are paths
"$usi" plot "$T" --out "$T/curves.svg" >/dev/null 2>&1 || fail "usi plot --out curves.svg"
python3 - "$T/curves.svg" <<'PY' || fail "curves.svg is not an SVG with the curves as paths"
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag.endswith('svg'), root.tag
paths = [e for e in root.iter() if e.tag.endswith('path')]
assert len(paths) >= 12, len(paths)
PY

# null (a value that was not finite: JSON has no NaN) is left out, not an error
echo '{"epoch": 2, "step": 66, "top1": 0.0, "val_loss": null, "ema_val_loss": null}' >>"$T/metrics.jsonl"
"$usi" plot "$T" >"$T/null.log" 2>&1 || fail "usi plot with null values: $(cat "$T/null.log")"
echo '{"epoch": 2, "step": 70, "loss": oops}' >>"$T/metrics.jsonl"
out=$("$usi" plot "$T" 2>&1)
[ $? -eq 1 ] && grep -qF "$T/metrics.jsonl:7:" <<<"$out" || fail "broken line 7: $out"
"$usi" plot >/dev/null 2>&1
[ $? -eq 2 ] || fail "usi plot without RUN_DIR is not a usage error"
"$usi" plot --help | grep -q '^usage: usi plot RUN_DIR' || fail "usi plot --help"

[ "$fails" -eq 0 ] && echo "plot-cli: all checks passed"
exit $((fails > 0))
