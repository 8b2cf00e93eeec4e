#!/usr/bin/env bash
# `usi bench`: bench.csv's columns and the values that can be checked
# (params and MACs equal `usi summary --json` at the same size, speeds > 0,
# top-1 from the accuracy table or the shipped USI table), the table on
# stdout, the PNG and an SVG naming every plotted backbone; a backbone that
# cannot be built is a row with its reason; bad input fails early with one
# line naming the option or file:line.
set -u
build=${1:?usage: test_bench.sh BUILD_ROOT}
usi="$build/core/cli/usi"
. "$(dirname "$0")/lib.sh"

# check_csv CSV OUT_LOG NAME=TOP1...: the rows and what they must hold
# (TOP1 empty: not known); --train was given.
check_csv() {
    python3 - "$usi" "$@" <<'PY'
import csv, json, subprocess, sys
usi, path, log = sys.argv[1], sys.argv[2], sys.argv[3]
want = dict(a.split('=', 1) for a in sys.argv[4:])
rows = list(csv.DictReader(open(path)))
header = open(path).readline().strip()
bad = []
if header != 'backbone,params,macs,img_size,batch,device,infer_img_s,train_img_s,top1,error':
    bad.append('header: ' + header)
if [r['backbone'] for r in rows] != list(want):
    bad.append('backbones: %s' % [r['backbone'] for r in rows])
table = open(log).read()
for r in rows:
    name = r['backbone']
    s = json.loads(subprocess.run([usi, 'summary', name, '--img-size', '32', '--json'],
                                  capture_output=True, text=True, check=True).stdout)
    if int(r['params']) != s['params'] or int(r['macs']) != s['macs']:
        bad.append('%s: params %s macs %s, summary %s %s' % (name, r['params'], r['macs'], s['params'], s['macs']))
    if (r['img_size'], r['batch'], r['device'], r['error']) != ('32', '2', 'cpu', ''):
        bad.append('%s: size %s batch %s device %s error %r' % (name, r['img_size'], r['batch'], r['device'], r['error']))
    if not (float(r['infer_img_s']) > 0 and float(r['train_img_s']) > 0):
        bad.append('%s: img/s %s %s' % (name, r['infer_img_s'], r['train_img_s']))
    top = want.get(name, '')
    if (r['top1'] and float(r['top1'])) != (top and float(top)):
        bad.append('%s: top1 %r, want %r' % (name, r['top1'], top))
    if not any(line.split()[:1] == [name] for line in table.splitlines()):
        bad.append('%s is not in the printed table' % name)
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
PY
}

# check_svg SVG NAME...: a well-formed SVG whose description names exactly these backbones
check_svg() {
    python3 - "$@" <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
desc = [e.text for e in root if e.tag.endswith('desc')]
assert root.tag.endswith('svg') and desc, 'no <desc> in the SVG'
named = sorted(line.split(':')[0] for line in desc[0].splitlines()[1:] if line)
assert named == sorted(sys.argv[2:]), named
PY
}

png_ok() { [ "$(head -c 8 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }

# 1. the two mobile-sized nets with a hand-made accuracy table; one is left
#    unknown on purpose
printf '# hand-made\nbackbone,top1\nresnet18,71.5\nmobilenetv3_small_100,\n' >"$T/acc.csv"
"$usi" bench --backbones resnet18,mobilenetv3_small_100 --img-size 32 --batch 2 --steps 1 --train \
    --accuracy "$T/acc.csv" --out "$T/a" >"$T/a.log" 2>"$T/a.err"
rc=$?
[ "$rc" -eq 0 ] && ok || fail "usi bench exits $rc: $(cat "$T/a.err")"
check_csv "$T/a/bench.csv" "$T/a.log" resnet18=71.5 mobilenetv3_small_100= && ok || fail "bench.csv (run 1)"
grep -q "^usi bench: \[1/2\] resnet18: " "$T/a.err" && grep -q "^usi bench: \[2/2\] mobilenetv3_small_100: " "$T/a.err" &&
    ok || fail "no progress line naming each model: $(cat "$T/a.err")"
grep -q "not plotted, no top-1 in $T/acc.csv: mobilenetv3_small_100" "$T/a.log" && ok ||
    fail "the unplotted backbone is not named: $(cat "$T/a.log")"
png_ok "$T/a/pareto.png" && ok || fail "no PNG at $T/a/pareto.png"
check_svg "$T/a/pareto.svg" resnet18 && ok || fail "pareto.svg (run 1)"

# 2. the default table is the USI paper's: mobilenetv3_large_100 has 77.3
"$usi" bench --backbones mobilenetv3_large_100,resnet18,mobilenetv3_small_100 --img-size 32 --batch 2 --steps 1 \
    --train --out "$T/b" >"$T/b.log" 2>"$T/b.err" && ok || fail "usi bench (default table): $(cat "$T/b.err")"
check_csv "$T/b/bench.csv" "$T/b.log" mobilenetv3_large_100=77.3 resnet18= mobilenetv3_small_100= && ok ||
    fail "bench.csv (run 2)"
check_svg "$T/b/pareto.svg" mobilenetv3_large_100 && ok || fail "pareto.svg (run 2)"

# 3. a backbone that cannot be built at the size is a row with the reason
"$usi" bench --backbones convnext_atto,resnet18 --img-size 8 --batch 1 --steps 1 --out "$T/c" >"$T/c.log" 2>&1 &&
    ok || fail "one failing backbone stops the run: $(cat "$T/c.log")"
python3 - "$T/c/bench.csv" <<'PY' && ok || fail "the failed row: $(cat "$T/c/bench.csv")"
import csv, sys
rows = {r['backbone']: r for r in csv.DictReader(open(sys.argv[1]))}
c, r = rows['convnext_atto'], rows['resnet18']
assert 'px input' in c['error'] and c['params'] == '' and c['infer_img_s'] == '', c
assert r['error'] == '' and float(r['infer_img_s']) > 0 and r['train_img_s'] == '', r
PY
grep -q "failed: .*px input" "$T/c.log" && ok || fail "the table does not give the reason: $(cat "$T/c.log")"

# 3b. on cpu-guarded, whose memory host code cannot touch: the bench only
#     reaches tensors through the device's calls
"$usi" bench --backbones resnet18 --device cpu-guarded --img-size 16 --batch 1 --steps 1 --train --out "$T/g" \
    >"$T/g.log" 2>&1 && grep -q "^resnet18,[0-9]*,[0-9]*,16,1,cpu-guarded,[0-9.]*,[0-9.]*,," "$T/g/bench.csv" && ok ||
    fail "cpu-guarded: $(cat "$T/g.log" "$T/g/bench.csv")"

# 4. errors: one line, exit 1, before anything is measured
out=$("$usi" bench --backbones resnet18,no_such_net --out "$T/d" 2>&1)
[ $? -eq 1 ] && grep -q "no backbone named 'no_such_net'" <<<"$out" && grep -q "valid backbones:.*resnet50" <<<"$out" &&
    ! grep -q "\[1/" <<<"$out" && ok || fail "unknown backbone: $out"
touch "$T/file"
out=$("$usi" bench --backbones resnet18 --out "$T/file/sub" 2>&1)
[ $? -eq 1 ] && grep -q -- "--out: cannot create folder $T/file" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ] && ok ||
    fail "unwritable --out: $out"
printf 'backbone,top1\nresnet18,71.5\nresnet50,high\n' >"$T/bad.csv"
out=$("$usi" bench --backbones resnet18 --accuracy "$T/bad.csv" --out "$T/e" 2>&1)
[ $? -eq 1 ] && grep -q "$T/bad.csv:3: top1 'high'" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ] && ok ||
    fail "malformed accuracy table: $out"
out=$("$usi" bench --backbones resnet18 --accuracy "$T/none.csv" --out "$T/e" 2>&1)
[ $? -eq 1 ] && grep -q "$T/none.csv" <<<"$out" && ok || fail "missing accuracy table: $out"
"$usi" bench --steps 0 >/dev/null 2>&1
[ $? -eq 2 ] && ok || fail "--steps 0 is not a usage error"
"$usi" bench --bogus >/dev/null 2>&1
[ $? -eq 2 ] && ok || fail "an unknown option is not a usage error"
"$usi" bench --help | grep -q '^usage: usi bench' && ok || fail "usi bench --help"

finish
