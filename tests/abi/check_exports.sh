#!/usr/bin/env bash
# Every shipped plugin exports exactly one dynamic symbol, usi_plugin_entry,
# and imports no usi_ symbol (plugins link nothing of the core). Fixtures
# whose entry is wrong on purpose (none, a C++ name, a variable: a sanitizer
# build exports one more symbol for a variable) are left out.
set -u
build=${1:?usage: check_exports.sh BUILD_ROOT}
status=0
count=0
while IFS= read -r -d '' so; do
    count=$((count + 1))
    defined=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVWiu]$/ {print $3}' | sort -u)
    if [ "$defined" != "usi_plugin_entry" ]; then
        echo "FAIL $so exports: $(echo $defined | tr '\n' ' ')"
        status=1
    fi
    undefined=$(nm -D --undefined-only "$so" | awk '{print $NF}' | grep '^usi_' || true)
    if [ -n "$undefined" ]; then
        echo "FAIL $so imports core symbols: $undefined"
        status=1
    fi
done < <(find "$build/plugins" "$build/teachers" "$build/augment" "$build/tests/abi" \
              -name '*.so' ! -name 'no_entry.so' ! -name 'hostile_mangled_entry.so' \
              ! -name 'hostile_data_entry.so' -print0 2>/dev/null)
if [ "$count" -eq 0 ]; then
    echo "FAIL no plugin files found under $build"
    exit 1
fi
[ $status -eq 0 ] && echo "$count plugin files export only usi_plugin_entry"
exit $status
