#!/usr/bin/env bash
# Build and run the libFuzzer targets with clang (Debian: clang, libclang-rt-14-dev).
#   tests/fuzz/run.sh [SECONDS]     default 60 s per target
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=build-fuzz
mkdir -p "$out"
cc=$(command -v clang || command -v clang-14)
flags=(-g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icore -Isdk/include)
"$cc" "${flags[@]}" tests/fuzz/fuzz_safetensors.c core/train/safetensors.c core/util/error.c \
    -lcjson -lm -o "$out/fuzz_safetensors"
work=$(mktemp -d)
cp tests/fuzz/corpus/safetensors/* "$work/" 2>/dev/null || true
"$out/fuzz_safetensors" -max_total_time="$secs" -max_len=4096 "$work"
rm -rf "$work"
