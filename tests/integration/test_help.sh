#!/usr/bin/env bash
# Every command and subcommand takes --help and -h: exit 0, its usage on
# stdout, nothing on stderr. The commands come from `usi --help`, and a
# command whose summary starts with "COMMAND WORD:" (config show, data
# import-idx, weights merge) is checked as "usi COMMAND WORD" too, so a new
# one is covered without editing this file.
set -u
build=${1:?usage: test_help.sh BUILD_ROOT}
usi="$build/core/cli/usi"
T=$(mktemp -d /tmp/usi-help-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
checks=0
fail() { fails=$((fails + 1)); echo "FAIL: $*"; }

# check "WORDS..." FLAG: usi WORDS FLAG gives usage and status 0
check() {
    local flag=$1
    shift
    checks=$((checks + 1))
    "$usi" "$@" "$flag" >"$T/out" 2>"$T/err"
    local rc=$?
    [ "$rc" -eq 0 ] || { fail "usi $* $flag: exit $rc: $(head -c 300 "$T/err")"; return; }
    [ -s "$T/err" ] && { fail "usi $* $flag wrote to stderr: $(head -c 300 "$T/err")"; return; }
    grep -q "^usage: usi $*" "$T/out" || fail "usi $* $flag: stdout does not start with 'usage: usi $*': $(head -n 2 "$T/out")"
}

top=$("$usi" --help) || fail "usi --help exits $?"
grep -q '^usage: usi' <<<"$top" || fail "usi --help prints no usage"
"$usi" -h >/dev/null || fail "usi -h exits $?"
commands=$(sed -n '/^commands:/,/^$/p' <<<"$top" | awk 'NR > 1 && NF >= 2 { print $1 }')
[ "$(wc -w <<<"$commands")" -ge 9 ] || fail "usi --help lists only: $commands"
for c in $commands; do
    for flag in --help -h; do
        check "$flag" "$c"
        sub=$(sed -n '/^commands:/,/^$/p' <<<"$top" | awk -v c="$c" '$1 == c && $2 == c { print $3 }' |
              sed -n 's/^\([a-z-]*\):$/\1/p')
        [ -n "$sub" ] && check "$flag" "$c" "$sub"
    done
done
# --help wins wherever it stands among other arguments
checks=$((checks + 1))
"$usi" preview some.cfg --out x.png --help >"$T/out" 2>&1 && grep -q '^usage: usi preview' "$T/out" ||
    fail "usi preview CONFIG --out FILE --help: $(cat "$T/out")"

[ "$fails" -eq 0 ] && echo "help: all $checks checks passed"
exit $((fails > 0))
