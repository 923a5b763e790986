#!/bin/bash
# test_figures.sh - ctest test_figures (label e2e): runs `scripts/figures.sh
# --quick` (needs root, TUN, gnuplot; bounded to 300 s) and checks what it
# wrote: every figure as a PNG of the right dimensions and a sane size and as
# an SVG, no gnuplot message at all, every expected point measured (n = 1 in
# each figure's CSV), the report with all figures, and that --record-size
# really changed the records sent (tx_records of every record-size download
# = ceil(size / record size) + the response header's record).
# Usage: tests/test_figures.sh ANIC_BINARY   (exit 77 = skipped)
set -u
export LC_ALL=C
REPO=$(cd "$(dirname "$0")/.." && pwd)
ANIC=${1:-$REPO/build/anic}
fail=0
bad() { echo "FAIL: $*"; fail=1; }

if [ "$(id -u)" != 0 ] || [ ! -c /dev/net/tun ]; then
    echo "SKIP: needs root and /dev/net/tun"; exit 77
fi
command -v gnuplot >/dev/null || { echo "SKIP: gnuplot missing (scripts/deps.sh)"; exit 77; }

OUT=$(mktemp -d /tmp/anic-figures-test.XXXXXX) || exit 1
trap 'rm -rf "$OUT"' EXIT
start=$(date +%s)
timeout --signal=TERM --kill-after=20 300 "$REPO/scripts/figures.sh" --quick --out "$OUT" \
    --anic "$ANIC" >"$OUT/figures.out" 2>&1
rc=$?
took=$(($(date +%s) - start))
echo "scripts/figures.sh --quick: exit $rc in ${took} s"
tail -n 3 "$OUT/figures.out"
[ $rc = 0 ] || bad "figures.sh exited $rc (1 = failed point or gnuplot message, 124 = over 300 s)"

# PNG: signature, then IHDR width/height as big-endian 32-bit at offset 16.
png_dims() {
    local sig
    sig=$(od -An -tx1 -N8 "$1" | tr -d ' \n')
    [ "$sig" = 89504e470d0a1a0a ] || { echo "notpng"; return; }
    od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%d %d\n", $1*16777216 + $2*65536 + $3*256 + $4,
                                              $5*16777216 + $6*65536 + $7*256 + $8 }'
}
check_png() { # file width height
    local f=$1 size dims
    [ -f "$f" ] || { bad "$f missing"; return; }
    size=$(stat -c %s "$f")
    [ "$size" -ge 8000 ] && [ "$size" -le 2000000 ] || bad "$f: $size bytes, expected 8 kB..2 MB"
    dims=$(png_dims "$f")
    [ "$dims" = "$2 $3" ] || bad "$f: dimensions '$dims', expected '$2 $3'"
}
figs="fig1-tx-throughput fig1-tx-relative fig2-tx-dump fig2-tx-pcie fig3-rx-reorder fig4-rx-loss
      fig5-cpu fig6-record-size"
for f in $figs; do
    case $f in fig3-* | fig4-*) check_png "$OUT/$f.png" 1500 560 ;; *) check_png "$OUT/$f.png" 960 600 ;; esac
    grep -q '<svg' "$OUT/$f.svg" 2>/dev/null || bad "$f.svg missing or not SVG"
    [ -f "$OUT/$f.csv" ] || bad "$f.csv missing"
done
check_png "$OUT/readme.png" 640 400

[ -f "$OUT/gnuplot.log" ] || bad "gnuplot.log missing"
if [ -s "$OUT/gnuplot.log" ]; then
    bad "gnuplot printed messages:"; head -n 10 "$OUT/gnuplot.log"
fi

# Every expected point measured once: rows per figure CSV and n = 1.
want_rows() { # csv rows
    local got
    got=$(tail -n +2 "$1" | wc -l)
    [ "$got" = "$2" ] || bad "$1: $got points, expected $2"
    tail -n +2 "$1" | awk -F, -v f="$1" '$4 != 1 { print "FAIL: " f ": " $0 " (n != 1)"; bad = 1 }
        $4 == 1 && $5 == "" { print "FAIL: " f ": " $0 " (no value)"; bad = 1 } END { exit bad }' ||
        fail=1
}
want_rows "$OUT/fig1-tx-throughput.csv" 25 # 5 modes x 5 losses
want_rows "$OUT/fig1-tx-relative.csv" 30   # 4 x /plain + 2 x /sw, x 5 losses
want_rows "$OUT/fig2-tx-dump.csv" 8        # 2 policies x 4 losses > 0
want_rows "$OUT/fig2-tx-pcie.csv" 10
want_rows "$OUT/fig3-rx-reorder.csv" 54    # 3 shares x 3 NICs x 6 values
want_rows "$OUT/fig4-rx-loss.csv" 45       # 3 shares x 3 NICs x 5 values
want_rows "$OUT/fig5-cpu.csv" 60           # 3 metrics x 5 modes x 4 groups
want_rows "$OUT/fig6-record-size.csv" 25   # 5 modes x 5 sizes

# Outcomes that must hold whatever the machine: no loss -> every record fully
# offloaded; the tag cache replays no dump bytes; the dump policy does.
awk -F, '$1 == "full" && $3 == 0 && $5 != 100 { print "FAIL: fig3 at 0%: " $0; bad = 1 }
    END { exit bad }' "$OUT/fig3-rx-reorder.csv" || fail=1
awk -F, '$2 == "nic-tagcache" && $5 != 0 { print "FAIL: tag cache dumped: " $0; bad = 1 }
    $2 == "nic" && !($5 > 1) { print "FAIL: dump policy replayed <= 1 B/B: " $0; bad = 1 }
    END { exit bad }' "$OUT/fig2-tx-dump.csv" || fail=1

# --record-size: records sent = ceil(size / record size) + the header's.
awk -F, '$1 == "rec" && $5 != "plain" {
        n++; want = int(($7 + $25 - 1) / $25)
        if ($30 == "" || $30 < want + 1 || $30 > want + 2) {
            print "FAIL: " $5 " record size " $25 ": " $30 " records for " $7 " bytes, want " want "+1"
            bad = 1
        }
    }
    END { if (n != 20) { print "FAIL: " n " record-size downloads of TLS modes, want 20"; bad = 1 }
          exit bad }' "$OUT/raw/all.csv" || fail=1

r=$OUT/report.md
[ -f "$r" ] || bad "report.md missing"
for n in 1 2 3 4 5 6; do
    grep -q "^## Figure $n:" "$r" || bad "report.md: no Figure $n"
done
grep -q 'None: every point of every run was measured.' "$r" || bad "report.md lists failed points"
grep -q 'scripts/figures.sh --quick' "$r" || bad "report.md: no command line"
grep -q 'fault seeds 1\.\.1' "$r" || bad "report.md: no seeds"
for f in $figs; do
    grep -q "($f.png)" "$r" || bad "report.md does not show $f.png"
done

[ $fail = 0 ] && echo "test_figures: ok"
exit $fail
