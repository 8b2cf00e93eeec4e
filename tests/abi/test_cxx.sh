#!/usr/bin/env bash
# A plugin written in C++: usi/plugin.h must compile as C++11 and later, with
# its shorthands (USI_DECLARE_HOST before the functions, USI_PARAM_*,
# USI_DEFINE_PLUGIN), and the entry it defines must keep its C name. Each
# standard the compiler knows builds fixtures/fixture_cxx.cpp with warnings as
# errors; the plugin must export only usi_plugin_entry, list in `usi plugins`
# and build in `usi summary`. A C++ entry built against the 1.0 header (which
# did not declare it) has a mangled name: usi must say so.
# Skipped (77) when there is no C++ compiler.
set -u
build=${1:?usage: test_cxx.sh BUILD_ROOT SOURCE_ROOT USI}
src=${2:?usage: test_cxx.sh BUILD_ROOT SOURCE_ROOT USI}
usi=${3:?usage: test_cxx.sh BUILD_ROOT SOURCE_ROOT USI}
cxx=${CXX:-}
if [ -z "$cxx" ]; then
    for c in c++ g++ clang++; do
        if command -v "$c" >/dev/null 2>&1; then cxx=$c; break; fi
    done
fi
if [ -z "$cxx" ]; then
    echo "no C++ compiler: skipped"
    exit 77
fi
. "$src/tests/integration/lib.sh"
chmod 755 "$T"

flags=(-shared -fPIC -fvisibility=hidden -Wall -Wextra -Wpedantic -Werror -Wl,--no-undefined -Wl,-z,defs)
built=0
for std in c++11 c++14 c++17 c++20; do
    if ! echo 'int main() {}' | "$cxx" -std=$std -x c++ -fsyntax-only - 2>/dev/null; then
        echo "$cxx does not know -std=$std: not tried"
        continue
    fi
    dir="$T/$std"
    mkdir -p "$dir" && chmod 755 "$dir"
    if ! "$cxx" -std=$std "${flags[@]}" -I"$src/sdk/include" -o "$dir/cxx_net.so" \
        "$src/tests/abi/fixtures/fixture_cxx.cpp" 2>"$T/cxx.log"; then
        fail "$std: $cxx cannot build a plugin with usi/plugin.h: $(cat "$T/cxx.log")"
        continue
    fi
    built=$((built + 1))
    syms=$(nm -D --defined-only "$dir/cxx_net.so" | awk '{print $3}')
    [ "$syms" = "usi_plugin_entry" ] && ok || fail "$std: the plugin exports '$syms', not usi_plugin_entry alone"
    "$usi" plugins --plugin-dir "$dir" --json >"$T/plugins.json" 2>"$T/plugins.err"
    if python3 - "$T/plugins.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
c = [x for x in doc["components"] if x["name"] == "cxx_net"][0]
assert c["kind"] == "backbone" and c["abi"] == "1.2" and c["plugin"] == "usi_cxx_fixture", c
p = {x["name"]: x for x in c["params"]}
assert p["num_classes"]["default"] == 7 and p["scale"]["default"] == 0.5, p
assert p["act"]["choices"] == "relu|gelu" and p["act"]["default"] == "relu", p
PY
    then ok; else fail "$std: cxx_net not listed as expected: $(cat "$T/plugins.err")"; fi
    out=$("$usi" summary cxx_net --plugin-dir "$dir" --set backbone.num_classes=5 --json 2>"$T/summary.err")
    if python3 -c 'import json,sys; d = json.loads(sys.argv[1]); assert d["output_shape"] == [1, 5] and d["params"] == 20, d' "$out"
    then ok; else fail "$std: usi summary cxx_net: $out $(cat "$T/summary.err")"; fi
done
[ "$built" -gt 0 ] && ok || fail "no C++ standard could be tried"

# Built against the 1.0 header, the entry of a .cpp file is mangled.
dir="$T/mangled"
mkdir -p "$dir" && chmod 755 "$dir"
if "$cxx" -std=c++11 "${flags[@]}" -I"$src/tests/abi/v1.0" -o "$dir/mangled.so" \
    "$src/tests/abi/fixtures/fixture_cxx_mangled.cpp" 2>"$T/cxx.log"; then
    out=$("$usi" plugins --plugin-dir "$dir" 2>&1)
    rc=$?
    if [ "$rc" -eq 3 ] && grep -q "mangled\.so: no 'usi_plugin_entry' symbol, but a C++ one, '_Z16usi_plugin_entry.*compiled as C++ without extern \"C\"" <<<"$out"
    then ok; else fail "a mangled entry: exit $rc: $out"; fi
else
    fail "cannot build the 1.0-header C++ fixture: $(cat "$T/cxx.log")"
fi
finish
