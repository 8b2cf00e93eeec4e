#!/usr/bin/env bash
# The `usi` command end to end: install with --destdir, build the out-of-tree
# sample with plain cc and the installed SDK, drop it into a folder, list and
# select it; then the refusal messages and exit statuses.
set -u
build=${1:?usage: test_cli.sh BUILD_ROOT SOURCE_ROOT}
src=${2:?usage: test_cli.sh BUILD_ROOT SOURCE_ROOT}
T=$(mktemp -d /tmp/usi-cli-XXXXXX)
chmod 755 "$T"
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
fails=0
checks=0
ok() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }
# expect NAME WANT_RC PATTERN -- command...: status and a pattern in stdout+stderr
expect() {
    local name=$1 want=$2 pattern=$3
    shift 4
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ]; then fail "$name: exit $rc, wanted $want; output: $out"; return; fi
    if ! grep -qE -- "$pattern" <<<"$out"; then fail "$name: no /$pattern/ in: $out"; return; fi
    ok
}

usi_build="$build/core/cli/usi"
expect "version" 0 "plugin ABI 1\.2" -- "$usi_build" version
expect "unknown command" 2 "unknown command 'trian'" -- "$usi_build" trian
expect "unknown option" 2 "unknown option '--jsn'" -- "$usi_build" plugins --jsn
expect "--version" 0 "^usi [0-9.]+ \(plugin ABI 1\.2\)$" -- "$usi_build" --version
expect "-q --version" 0 "plugin ABI 1\.2" -- "$usi_build" -q --version
# -q and -v after the command: said where they go.
expect "train CONFIG -q" 2 "usi train: unknown option '-q': it goes before the command, as in .usi -q train" -- \
    "$usi_build" train "$T/none.cfg" -q
expect "predict -v" 2 "usi predict: unknown option '-v': it goes before the command" -- \
    "$usi_build" predict --weights "$T/none.st" x.png -v
expect "version with an argument" 2 "usi version: unexpected argument 'now'" -- "$usi_build" version now
# --set without '=' is a usage error (2) in every command that takes --set,
# before any file is read.
for cmd in "config show" train eval bench; do
    expect "$cmd --set without =" 2 "usi $cmd: --set 'data.batch_size' needs key=value" -- \
        "$usi_build" $cmd "$T/none.cfg" --set data.batch_size
done
expect "predict --set without =" 2 "usi predict: --set 'seed' needs key=value" -- \
    "$usi_build" predict --weights "$T/none.st" --set seed x.png
expect "preview --set without =" 2 "usi preview: --set 'seed' needs key=value" -- \
    "$usi_build" preview "$T/none.cfg" --out "$T/g.png" --set seed
# preview: what is missing or wrong is said, and --out is checked first.
expect "preview without --out" 2 "usi preview: --out FILE.png is required" -- "$usi_build" preview "$T/none.cfg"
expect "preview without CONFIG" 2 "usi preview: give the CONFIG" -- "$usi_build" preview --out "$T/g.png"
expect "preview --out without a value" 2 "usi preview: option '--out' needs a value" -- \
    "$usi_build" preview "$T/none.cfg" --out
expect "preview --n 0" 2 "usi preview: --n needs a whole number from 1 to 1024, not '0'" -- \
    "$usi_build" preview "$T/none.cfg" --out "$T/g.png" --n 0
expect "preview --n=x" 2 "usi preview: --n needs a whole number from 1 to 1024, not 'x'" -- \
    "$usi_build" preview "$T/none.cfg" --out="$T/g.png" --n=x
expect "preview --out into a missing folder, before the config" 1 \
    "--out $T/no/g\.png: the folder $T/no: No such file or directory; create it" -- \
    "$usi_build" preview "$T/none.cfg" --out "$T/no/g.png"
expect "preview --out a folder" 1 "--out $T is a folder" -- "$usi_build" preview "$T/none.cfg" --out "$T"
expect "import-idx --out without a value" 2 "usi data import-idx: option '--out' needs a value" -- \
    "$usi_build" data import-idx --out
expect "import-idx --src=DIR" 1 "usi data import-idx: $T/none: No such file or directory" -- \
    "$usi_build" data import-idx --src="$T/none" --out="$T/fm"
# predict takes --opt=value as the other commands do.
expect "predict --topk=0" 2 "usi predict: --topk needs a whole number >= 1" -- \
    "$usi_build" predict --weights="$T/none.st" --topk=0 x.png
expect "predict --plugin-dir without a value" 2 "usi predict: --plugin-dir needs a value" -- \
    "$usi_build" predict --weights "$T/none.st" x.png --plugin-dir

# --- install, SDK, out-of-tree plugin ---
dest="$T/dest"
if ! meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$T/install.log" 2>&1; then
    fail "meson install --destdir: $(cat "$T/install.log")"
fi
usi=$(find "$dest" -path '*/bin/usi' -type f | head -n 1)
pc_dir=$(dirname "$(find "$dest" -name usi-sdk.pc | head -n 1)")
[ -x "$usi" ] && ok || fail "no installed usi under $dest"
[ -f "$pc_dir/usi-sdk.pc" ] && ok || fail "no installed usi-sdk.pc"
[ -f "$(find "$dest" -path '*/include/usi/plugin.h' | head -n 1)" ] && ok || fail "no installed plugin.h"

# The installed usi finds the installed plugins with no environment variable.
installed_plugins=$(find "$dest" -path '*/usi/plugins/*.so' | wc -l)
if [ "$installed_plugins" -gt 0 ]; then
    expect "installed usi lists installed plugins" 0 "file $dest/.*/usi/plugins/" -- \
        env -u USI_PLUGIN_PATH "$usi" plugins
else
    fail "no plugins were installed under $dest"
fi

cflags=$(PKG_CONFIG_PATH="$pc_dir" PKG_CONFIG_SYSROOT_DIR="$dest" pkg-config --cflags usi-sdk)
case "$cflags" in *"$dest"*include*) ok ;; *) fail "pkg-config --cflags usi-sdk gave '$cflags'" ;; esac
mkdir -p "$T/plugins"
chmod 755 "$T/plugins"
# The sample is built from its installed copy with the installed SDK alone.
sample=$(find "$dest" -path '*/usi/samples/third_party_backbone/acme_tinynet.c' | head -n 1)
[ -n "$sample" ] && cmp -s "$sample" "$src/samples/third_party_backbone/acme_tinynet.c" && ok \
    || fail "the out-of-tree sample is not installed under $dest"
if cc -shared -fPIC -O2 -Wall -Wextra -Werror $cflags -o "$T/plugins/acme_tinynet.so" \
    "${sample:-$src/samples/third_party_backbone/acme_tinynet.c}" 2>"$T/cc.log"; then ok; else fail "cc sample: $(cat "$T/cc.log")"; fi
# The installed quickstart config is what the installed usi runs.
fm_cfg=$(find "$dest" -path '*/usi/samples/fashion_mnist.cfg' | head -n 1)
expect "installed samples/fashion_mnist.cfg" 0 'name = "mobilenetv3_small_100";' -- "$usi" config show "${fm_cfg:-$T/none.cfg}"
syms=$(nm -D --defined-only "$T/plugins/acme_tinynet.so" | awk '{print $3}')
[ "$syms" = "usi_plugin_entry" ] && ok || fail "sample exports: $syms"

expect "sample listed" 0 "acme_tinynet 1\.2\.0" -- "$usi" plugins --plugin-dir "$T/plugins"
expect "sample vendor" 0 "vendor Acme Vision Ltd\., license Proprietary, ABI 1\.2" -- "$usi" plugins --plugin-dir "$T/plugins"
expect "sample options" 0 "width +int +32 +channels of the first stage" -- "$usi" plugins --plugin-dir "$T/plugins"
expect "found through USI_PLUGIN_PATH" 0 "acme_tinynet" -- env USI_PLUGIN_PATH="$T/plugins" "$usi" plugins
"$usi" plugins --plugin-dir "$T/plugins" --json >"$T/plugins.json" 2>/dev/null
if python3 - "$T/plugins.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
c = [x for x in doc["components"] if x["name"] == "acme_tinynet"][0]
assert c["kind"] == "backbone" and c["abi"] == "1.2" and c["license"] == "Proprietary", c
p = {x["name"]: x for x in c["params"]}
assert p["width"]["default"] == 32 and p["width"]["type"] == "int" and p["width"]["max"] == 1024, p
assert p["drop_path_rate"]["type"] == "float", p
PY
then ok; else fail "plugins --json content"; fi

# Selected by name in a config file; plugin_path is relative to the file.
cat >"$T/tinynet.cfg" <<'CFG'
plugin_path = ["plugins"];
backbone = { name = "acme_tinynet"; num_classes = 10; width = 16; };
augment = ();
CFG
expect "config selects the sample" 0 "name = \"acme_tinynet\";" -- "$usi" config show "$T/tinynet.cfg"
"$usi" config show "$T/tinynet.cfg" --set optimizer.lr=0.001 >"$T/effective.cfg" 2>&1
grep -q "width = 16;" "$T/effective.cfg" && grep -q "lr = 0.001;" "$T/effective.cfg" && ok || fail "effective config: $(cat "$T/effective.cfg")"
"$usi" config show "$T/effective.cfg" >"$T/effective2.cfg" 2>&1
cmp -s "$T/effective.cfg" "$T/effective2.cfg" && ok || fail "config show does not load back to the same values"

# What config show prints is what runs: each augmentation's size is
# data.img_size, the backbone's img_size too, and num_classes is the number
# of class folders in data.train.
mkdir -p "$T/data/a" "$T/data/b" "$T/data/c"
"$usi_build" config show --set data.img_size=28 --set "data.train=$T/data" --set backbone.name=resnet18 \
    >"$T/filled.cfg" 2>"$T/filled.err" || fail "config show with data: $(cat "$T/filled.err")"
awk '/name = "random_resized_crop"/ { f = 1 } f && /size =/ { print; exit }' "$T/filled.cfg" | grep -q "size = 28;" &&
    ok || fail "random_resized_crop size is not data.img_size: $(cat "$T/filled.cfg")"
sed -n '/^backbone = {/,/^};/p' "$T/filled.cfg" >"$T/backbone.cfg"
grep -q "num_classes = 3;" "$T/backbone.cfg" && grep -q "img_size = 28;" "$T/backbone.cfg" && ok ||
    fail "backbone options are not what a run fills in: $(cat "$T/backbone.cfg")"
expect "augment size overridden, said so" 0 "size = 64 is replaced by data.img_size = 28" -- \
    "$usi_build" config show --set data.img_size=28 --set augment.random_resized_crop.size=64
expect "num_classes contradicting the data" 1 "num_classes = 7 but the data needs 3" -- \
    "$usi_build" config show --set "data.train=$T/data" --set backbone.name=resnet18 --set backbone.num_classes=7

# --- refusals ---
expect "a distillation weight without a teacher" 0 "'loss.kd_alpha' = 2 does nothing in this run: there is no teacher" \
    -- "$usi_build" config show --set backbone.name=resnet18 --set loss.kd_alpha=2
out=$("$usi_build" config show --set backbone.name=resnet18 --set loss.kd_alpha=5 2>&1 >/dev/null)
[ -z "$out" ] && ok || fail "the recipe's own kd_alpha without a teacher is warned of: $out"
expect "a mean of two channels" 1 "'data.mean' has 2 values; give 3, one per channel" -- \
    "$usi_build" config show --set 'data.mean=[0.5, 0.5]'
expect "a std of four channels" 1 "'data.std' has 4 values; give 3" -- \
    "$usi_build" config show --set 'data.std=[0.5, 0.5, 0.5, 0.5]'
expect "a seed past 32 bits" 1 "'seed' of the top level is 4294967296, outside its range \\[0, 4294967295\\]" -- \
    "$usi_build" config show --set seed=4294967296
printf 'seed = 5000000000; # 7\noutput_dir = "runs/9999999999";\n' >"$T/bigseed.cfg"
expect "a seed past 32 bits in a file" 1 "bigseed.cfg:1: option 'seed' of the top level is 5000000000" -- \
    "$usi_build" config show "$T/bigseed.cfg"
expect "the top of the seed's range" 0 "^seed = 4294967295;" -- "$usi_build" config show --set seed=4294967295
expect "an empty output_dir" 1 "'output_dir' is empty: name the folder" -- \
    "$usi_build" config show --set 'output_dir=""'
expect "kd_only without a teacher" 1 "'loss.kd_only' = true .* no teacher is set" -- \
    "$usi_build" config show --set loss.kd_only=true
expect "plugin option typo" 1 "acme_tinynet' has no option 'widht'.*width" -- \
    "$usi" config show "$T/tinynet.cfg" --set backbone.widht=8
expect "plugin option range" 1 "option 'width' of backbone 'acme_tinynet' is 2, outside its range" -- \
    "$usi" config show "$T/tinynet.cfg" --set backbone.width=2
expect "backbone not found" 1 "no backbone named 'acme_tinynt' was found; did you mean 'acme_tinynet'" -- \
    "$usi" config show "$T/tinynet.cfg" --set backbone.name=acme_tinynt
printf 'seed = 1;\nschedule = {\n  epochs = 10;\n  warmup = 2;\n};\n' >"$T/typo.cfg"
expect "unknown key names file and line" 1 "typo\.cfg:4: unknown key 'schedule\.warmup'.*warmup_epochs" -- \
    "$usi" config show "$T/typo.cfg"
expect "wrong type" 1 "option 'epochs' of section 'schedule' takes an int, not a string" -- \
    "$usi" config show --set 'schedule.epochs="ten"'
expect "missing config" 1 "cannot read config file $T/none\.cfg: No such file" -- "$usi" config show "$T/none.cfg"

# A broken file never stops the others; the status says something was refused.
printf 'not a plugin' >"$T/plugins/broken.so"
expect "broken plugin reported" 3 "broken\.so: not a shared object" -- "$usi" plugins --plugin-dir "$T/plugins"
expect "others still listed" 3 "acme_tinynet 1\.2\.0" -- "$usi" plugins --plugin-dir "$T/plugins"
rm -f "$T/plugins/broken.so"
cp "$T/plugins/acme_tinynet.so" "$T/plugins/acme_copy.so"
expect "two files, one name" 1 "defined by both .*acme_copy\.so and .*acme_tinynet\.so|defined by both .*acme_tinynet\.so and .*acme_copy\.so" -- \
    "$usi" config show "$T/tinynet.cfg"
# `usi plugins` says on stderr which files and why, and counts files, not models.
out=$("$usi" plugins --plugin-dir "$T/plugins" 2>&1 >/dev/null)
if grep -q "component 'acme_tinynet' is defined by both .*acme_copy\.so and .*acme_tinynet\.so" <<<"$out" &&
    grep -q "usi: 2 plugin files or folders had problems (reasons above): .*acme_copy\.so, .*acme_tinynet\.so" <<<"$out"
then ok; else fail "two files, one name, in usi plugins: $out"; fi
rm -f "$T/plugins/acme_copy.so"

# One policy for folders others can write, however they are named.
chmod 777 "$T/plugins"
expect "unsafe folder (--plugin-dir)" 1 "--plugin-dir .*refusing plugin folder writable by other users.*chmod go-w" -- \
    "$usi" plugins --plugin-dir "$T/plugins"
expect "unsafe folder (USI_PLUGIN_PATH)" 1 "USI_PLUGIN_PATH .*refusing plugin folder writable by other users.*chmod go-w '$T/plugins'" -- \
    env USI_PLUGIN_PATH="$T/plugins" "$usi" plugins
expect "unsafe folder (plugin_path)" 1 "plugin_path .*refusing plugin folder writable by other users.*chmod go-w" -- \
    "$usi" config show "$T/tinynet.cfg"
chmod 755 "$T/plugins"

# A plugin cut short never takes usi down: each length is refused, by name.
mkdir -p "$T/cut" && chmod 755 "$T/cut"
size=$(stat -c %s "$T/plugins/acme_tinynet.so")
for cut in 3 40 64 700 2000 4097 $((size / 2)) $((size - 64)) $((size - 1)); do
    head -c "$cut" "$T/plugins/acme_tinynet.so" >"$T/cut/acme_cut.so"
    expect "plugin cut at $cut bytes" 3 "acme_cut\.so: (truncated|not a shared object)" -- "$usi" plugins --plugin-dir "$T/cut"
done
rm -f "$T/cut/acme_cut.so"
ln -s "$T/cut/gone.so" "$T/cut/link.so"
expect "dangling link" 3 "link\.so: dangling symbolic link: it points to '$T/cut/gone\.so', which does not exist" -- \
    "$usi" plugins --plugin-dir "$T/cut"
rm -f "$T/cut/link.so"
# Whole headers, a dynamic section overwritten: the loader itself would
# crash on it; the file is refused by name and usi goes on.
cp "$T/plugins/acme_tinynet.so" "$T/cut/acme_dyn.so"
read -r off len < <(readelf -SW "$T/cut/acme_dyn.so" | awk '$2 == ".dynamic" { print $5, $6 }')
python3 -c "import sys; f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2], 16)); f.write(b'A' * int(sys.argv[3], 16))" \
    "$T/cut/acme_dyn.so" "$off" "$len"
expect "plugin with its dynamic section overwritten" 3 "acme_dyn\.so: loading it crashed the dynamic loader" -- \
    "$usi" plugins --plugin-dir "$T/cut"
rm -f "$T/cut/acme_dyn.so"

# A plugin of a newer ABI minor loads, with one note.
cp "$build/tests/abi/v1_1_newer_minor.so" "$T/cut/"
out=$("$usi" plugins --plugin-dir "$T/cut" 2>&1)
rc=$?
notes=$(grep -c "built for USI ABI 1\.3, newer than this usi (1\.2): it loads, but the services added after 1\.2 are unavailable" <<<"$out")
[ "$rc" -eq 0 ] && [ "$notes" -eq 1 ] && grep -q "newer_net 1\.1\.0" <<<"$out" && ok ||
    fail "newer minor: exit $rc, $notes notes: $out"
rm -f "$T/cut/v1_1_newer_minor.so"

# A backbone without img_size loads, and the listing says what that costs.
cp "$build/tests/abi/v1_1_no_img_size.so" "$T/cut/"
out=$("$usi" plugins --plugin-dir "$T/cut" 2>&1)
rc=$?
[ "$rc" -eq 0 ] && grep -q "noimg_net 1\.1\.0" <<<"$out" &&
    grep -q "note: no int option 'img_size'; the host sets it (the model teacher, usi summary)" <<<"$out" && ok ||
    fail "a backbone without img_size: exit $rc: $out"
rm -f "$T/cut/v1_1_no_img_size.so"

# --json: no range for string options, nor for min = max = 0 ("no range").
cp "$build/tests/abi/fixture_v1_1.so" "$T/cut/"
"$usi" plugins --plugin-dir "$T/cut" --json >"$T/v11.json" 2>/dev/null
if python3 - "$T/v11.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
c = [x for x in doc["components"] if x["name"] == "v11_net"][0]
p = {x["name"]: x for x in c["params"]}
assert "min" not in p["act"] and "max" not in p["act"], p["act"]
assert "min" not in p["img_size"] and "max" not in p["img_size"], p["img_size"]
assert p["num_classes"]["min"] == 1 and p["num_classes"]["max"] == 1e6, p["num_classes"]
PY
then ok; else fail "plugins --json ranges"; fi
expect "min = max = 0 is no range" 0 "img_size = 100000;" -- \
    "$usi" config show --plugin-dir "$T/cut" --set backbone.name=v11_net --set backbone.img_size=100000
rm -f "$T/cut/fixture_v1_1.so"

# usi summary sets a plugin's own options.
s8=$("$usi" summary acme_tinynet --plugin-dir "$T/plugins" --set backbone.width=8 --json 2>&1)
grep -qE '"params":[[:space:]]*41424,' <<<"$s8" && ok || fail "summary --set backbone.width=8: $s8"
expect "summary --set checks the option" 1 "has no option 'widht'" -- \
    "$usi" summary acme_tinynet --plugin-dir "$T/plugins" --set backbone.widht=8
expect "summary --set only backbone options" 2 "--set takes backbone.OPTION=VALUE" -- \
    "$usi" summary acme_tinynet --plugin-dir "$T/plugins" --set data.batch_size=8

# The build tree's usi finds the build tree's plugins.
expect "build-tree usi" 0 "file $build/(augment|plugins|teachers)/" -- env -u USI_PLUGIN_PATH "$usi_build" plugins

# USI_PLUGIN_PATH is ignored by a setuid run (secure_getenv).
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1 && ! findmnt -no OPTIONS -T "$T" | grep -q nosuid; then
    cp "$usi" "$T/usi-setuid"
    chown nobody "$T/usi-setuid"
    chmod 4755 "$T/usi-setuid"
    out=$(USI_PLUGIN_PATH="$T/plugins" "$T/usi-setuid" plugins 2>&1)
    if grep -q acme_tinynet <<<"$out"; then fail "setuid run used USI_PLUGIN_PATH: $out"; else ok; fi
else
    echo "setuid check not possible here (needs root and a suid-capable /tmp)"
fi

echo "$checks checks, $fails failed"
[ "$fails" -eq 0 ]
