# Shared by the integration scripts (sourced): a temporary folder $T removed
# on exit, ok/fail counters, and `finish`, which prints "N checks, M failed"
# and gives the script's status.
T=$(mktemp -d "/tmp/usi-$(basename "$0" .sh)-XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0
checks=0
ok() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }
finish() {
    echo "$checks checks, $fails failed"
    [ "$fails" -eq 0 ]
}
