#!/bin/bash
# test_bench_instr.sh - ctest bench_host_instr (label e2e): `anic bench
# --host-instr --size 8M` (needs root, TUN and valgrind; every run makes and
# deletes its own network namespace). Checks the exit status, that all four
# rows (plain and nic, download and upload) measured, that the data path
# of a download did at least 0.5 instructions per byte (lwIP copies every
# byte it sends), that nic's upload took more than plain's (tls/ parses
# every record), that only nic ran TLS handshakes, that the NIC engine did the
# crypto (nic's NIC instructions per byte over 3x plain's), and that the
# target line gives a ratio.
# Usage: tests/test_bench_instr.sh ANIC_BINARY   (exit 77 = skipped)
set -u
export LC_ALL=C
ANIC=${1:?usage: test_bench_instr.sh ANIC_BINARY}
fail=0
bad() { echo "FAIL: $*"; fail=1; }

if [ "$(id -u)" != 0 ] || [ ! -c /dev/net/tun ]; then
    echo "SKIP: needs root and /dev/net/tun"; exit 77
fi
if ! command -v valgrind >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: valgrind missing (scripts/deps.sh installs it)"; exit 1
    fi
    echo "SKIP: needs valgrind (scripts/deps.sh installs it)"; exit 77
fi

OUT=$(mktemp /tmp/anic-bench-instr-test.XXXXXX) || exit 1
trap 'rm -f "$OUT"' EXIT
timeout --signal=TERM --kill-after=20 400 "$ANIC" bench --host-instr --size 8M >"$OUT" 2>&1
rc=$?
cat "$OUT"
[ $rc = 0 ] || bad "anic bench --host-instr exited $rc"
size=$((8 << 20))
# mode dir data-path instr/B vs-plain timers handshake NIC-i/B
row() { awk -v m="$1" -v d="$2" '$1 == m && $2 == d && $3 ~ /^[0-9]+$/' "$OUT"; }
for mode in plain nic; do
    for dir in download upload; do
        r=$(row $mode $dir)
        [ -n "$r" ] || { bad "no measured row for $mode $dir"; continue; }
        set -- $r
        if [ $dir = download ]; then
            [ "$3" -ge $((size / 2)) ] || bad "$mode $dir: data path $3 instructions for $size bytes"
        fi
        if [ $mode = plain ]; then
            [ "$7" = 0 ] || bad "plain $dir: handshake instructions $7, want 0"
        else
            [ "$7" -gt 0 ] || bad "nic $dir: no handshake instructions"
        fi
    done
done
pn=$(row plain download | awk '{print $8}')
nn=$(row nic download | awk '{print $8}')
if [ -n "$pn" ] && [ -n "$nn" ]; then
    awk -v p="$pn" -v n="$nn" 'BEGIN { exit !(n > 3 * p) }' ||
        bad "NIC instructions per byte: nic $nn, plain $pn (want nic > 3x plain)"
fi
pu=$(row plain upload | awk '{print $3}')
nu=$(row nic upload | awk '{print $3}')
if [ -n "$pu" ] && [ -n "$nu" ]; then
    [ "$nu" -gt "$pu" ] || bad "upload data path: nic $nu instructions, plain $pu (tls/ parses every record)"
fi
grep -Eq "^target: host data-path instructions per byte, download, nic / plain [0-9]+\.[0-9]+x \(target <= 1\.05x\) -> (met|NOT met)$" "$OUT" ||
    bad "no target line with a ratio"
[ $fail = 0 ] && echo "PASS"
exit $fail
