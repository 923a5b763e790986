#!/bin/bash
# test_bench_flows.sh - ctest bench_flows_turns (label e2e): a small
# `anic bench --load --flows 24 --flows-active 4 --rounds 2 --load-modes
# mbedtls,nic` (needs root and TUN; the bench makes and deletes its own
# network namespace). Checks the exit status, that both modes and directions
# measured bytes in both rounds, the turns (every one of the 24 connections
# completed a transfer in the window while at most 4 ran at once, and none
# failed), and the medians table with its column over the first mode.
# Then `--flows 16 --load-modes nic --send-slots 0,2,auto --cache-sizes
# 0,8`: every variant measured with both NIC caches; in the nic:2 cells'
# counters connections waited in line and were handed slots, none in
# nic:0's; nic:auto granted turns without a line while the 16 senders fit
# the NIC's contexts (cache 0: all 1024 resident), and with 8 resident the
# limit engaged (4 slots): connections waited and were handed slots.
# Last, `--flow-rate 200` with 4 flows measures 180..204 MB/s both ways.
# Usage: tests/test_bench_flows.sh ANIC_BINARY   (exit 77 = skipped)
set -u
export LC_ALL=C
ANIC=${1:?usage: test_bench_flows.sh ANIC_BINARY}
fail=0
bad() { echo "FAIL: $*"; fail=1; }

if [ "$(id -u)" != 0 ] || [ ! -c /dev/net/tun ]; then
    echo "SKIP: needs root and /dev/net/tun"; exit 77
fi

OUT=$(mktemp /tmp/anic-bench-flows.XXXXXX) || exit 1
CNT=$(mktemp /tmp/anic-bench-flows-cnt.XXXXXX) || exit 1
trap 'rm -f "$OUT" "$CNT"' EXIT
timeout --signal=TERM --kill-after=20 180 "$ANIC" bench --load --flows 24 --flows-active 4 \
    --flow-size 256K --load-seconds 2 --load-modes mbedtls,nic --cache-sizes 0 --flow-dirs down,up --rounds 2 \
    >"$OUT" 2>&1
rc=$?
cat "$OUT"
[ $rc = 0 ] || bad "anic bench exited $rc"
for mode in mbedtls nic; do
    for dir in down up; do
        rows=$(grep -Ec "^ +24 $mode +$dir +24 +0 \| +[0-9]+\.[0-9]+ +1\.00 " "$OUT")
        [ "$rows" = 2 ] || bad "$rows of 2 measured $mode $dir rows with 24 established and 0 failed"
        # flows mode dir | MB/s min max x-first x-mbedtls | host-s/GB x-mbedtls
        # (the ratios are 1.00 for mbedtls itself)
        x=$([ $mode = mbedtls ] && echo '1\.00' || echo '[0-9]+\.[0-9]{2}')
        grep -Eq "^ +24 $mode +$dir +\| +[0-9]+\.[0-9] +[0-9]+\.[0-9] +[0-9]+\.[0-9] +1\.00 +$x +\| +[0-9]+\.[0-9]{3} +$x$" "$OUT" ||
            bad "no median row for $mode $dir"
    done
done
grep -q "^medians of 2 rounds" "$OUT" || bad "no medians table"
turns=$(grep -Ec "by 24 of 24 connections in the window, at most 4 at once \(4 allowed\); 0 connections failed" "$OUT")
[ "$turns" = 8 ] || bad "expected every connection served in turns in both modes, directions and rounds ($turns of 8)"

timeout --signal=TERM --kill-after=20 120 "$ANIC" bench --load --flows 16 --flow-size 1M \
    --load-seconds 2 --load-modes nic --cache-sizes 0,8 --flow-dirs down --send-slots 0,2,auto \
    --flows-counters "$CNT" >"$OUT" 2>&1
rc=$?
cat "$OUT"
[ $rc = 0 ] || bad "anic bench --send-slots 0,2,auto exited $rc"
for v in nic:0 nic:2 nic:auto; do
    rows=$(grep -Ec "^ +16 $v +down +16 +0 \| +[0-9]+\.[0-9]+ " "$OUT")
    [ "$rows" = 2 ] || bad "$v: $rows measured rows (want one per cache size)"
done
# counters that moved in a cell's window, 'cell 16 nic:2 down cache C' then '  name delta'
cell_ctr() { awk -v c="cell 16 $1 down cache $2" -v n="$3" '/^cell /{on = ($0 == c)} on && $1 == n {print $2}' "$CNT"; }
for c in 0 8; do
    handed=$(cell_ctr nic:2 $c send_slots.handed)
    queued=$(cell_ctr nic:2 $c send_slots.queued)
    [ "${handed:-0}" -gt 0 ] && [ "${queued:-0}" -gt 0 ] ||
        bad "nic:2 cache $c: send_slots.queued '${queued}', handed '${handed}' (want both > 0)"
    [ -z "$(cell_ctr nic:0 $c send_slots.handed)$(cell_ctr nic:0 $c send_slots.granted)" ] ||
        bad "nic:0 cache $c: slots granted or handed"
done
granted=$(cell_ctr nic:auto 0 send_slots.granted)
queued=$(cell_ctr nic:auto 0 send_slots.queued)
[ "${granted:-0}" -gt 0 ] && [ -z "$queued" ] ||
    bad "nic:auto cache 0: send_slots.granted '${granted}', queued '${queued}' (want > 0 and none)"
handed=$(cell_ctr nic:auto 8 send_slots.handed)
queued=$(cell_ctr nic:auto 8 send_slots.queued)
[ "${handed:-0}" -gt 0 ] && [ "${queued:-0}" -gt 0 ] ||
    bad "nic:auto cache 8: send_slots.queued '${queued}', handed '${handed}' (want both > 0)"

# --flow-rate: the paced client moves what it was told, not more (4 flows,
# 200 MB/s: far below what any mode reaches here, so not less either).
timeout --signal=TERM --kill-after=20 120 "$ANIC" bench --load --flows 4 --flow-size 64M \
    --load-seconds 2 --load-modes nic --cache-sizes 0 --flow-dirs down,up --flow-rate 200 >"$OUT" 2>&1
rc=$?
cat "$OUT"
[ $rc = 0 ] || bad "anic bench --flow-rate 200 exited $rc"
for dir in down up; do
    mbs=$(awk -v d=$dir '$1 == 4 && $2 == "nic" && $3 == d && $6 == "|" {print $7}' "$OUT")
    awk -v m="${mbs:-0}" 'BEGIN {exit !(m >= 180 && m <= 204)}' ||
        bad "--flow-rate 200, $dir: measured '${mbs}' MB/s (want 180..204)"
done
[ $fail = 0 ] && echo "PASS"
exit $fail
