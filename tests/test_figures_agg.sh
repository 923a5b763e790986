#!/bin/bash
# test_figures_agg.sh - ctest test_figures_agg (label unit): the aggregation,
# plotting and report of scripts/figures.sh on recorded data, no measurement
# (`--replot` over a copy of docs/figures/raw/all.csv). Checks that a median,
# min and max equal those computed independently (sort -n) from the raw rows,
# and that a point whose every run failed becomes a gap: n = 0 in its CSV, a
# blank line in the gnuplot data, its reason in the report, exit status 1.
# Usage: tests/test_figures_agg.sh   (exit 77 = skipped: no gnuplot)
set -u
export LC_ALL=C
REPO=$(cd "$(dirname "$0")/.." && pwd)
RAWIN=$REPO/docs/figures/raw
fail=0
bad() { echo "FAIL: $*"; fail=1; }
command -v gnuplot >/dev/null || { echo "SKIP: gnuplot missing (scripts/deps.sh)"; exit 77; }
[ -f "$RAWIN/all.csv" ] && [ -f "$RAWIN/meta.env" ] || { echo "FAIL: no $RAWIN/all.csv"; exit 1; }

OUT=$(mktemp -d /tmp/anic-figures-agg.XXXXXX) || exit 1
trap 'rm -rf "$OUT"' EXIT
mkdir "$OUT/raw"
cp "$RAWIN/meta.env" "$OUT/raw/"
# Drop every run of nic at 2 % TX loss, and say why, as a failed call would.
awk -F, '!($1 == "tx" && $2 == "nic" && $17 == 2)' "$RAWIN/all.csv" >"$OUT/raw/all.csv"
dropped=$(($(wc -l <"$RAWIN/all.csv") - $(wc -l <"$OUT/raw/all.csv")))
[ "$dropped" -ge 1 ] || bad "the recorded data has no nic download at 2% loss"
echo "tx,nic,1,1,nic download: FAILED after 60.000 s: test-made failure" >"$OUT/raw/failures.csv"

"$REPO/scripts/figures.sh" --replot --out "$OUT" >"$OUT/out.txt" 2>&1
rc=$?
[ $rc = 1 ] || { bad "--replot exited $rc, expected 1 (a failed point)"; cat "$OUT/out.txt"; }
[ -s "$OUT/gnuplot.log" ] && { bad "gnuplot printed messages:"; head "$OUT/gnuplot.log"; }
for f in fig1-tx-throughput fig3-rx-reorder fig5-cpu fig6-record-size; do
    [ -s "$OUT/$f.png" ] && [ -s "$OUT/$f.svg" ] || bad "$f.png/.svg missing"
done

csv=$OUT/fig1-tx-throughput.csv
grep -qx 'throughput,nic,2,0,,,,MB/s' "$csv" || bad "fig1: nic at 2% is not a gap: $(grep '^throughput,nic,2,' "$csv")"
# The gap breaks nic's line: its block has a blank line where x = 2 would be.
awk '/^# throughput nic \(/ { inb = 1; next } inb && /^#/ { inb = 0 }
     inb { rows++; if ($0 == "") blank++; if ($1 == 2) two++ }
     END { exit !(blank >= 1 && two == 0) }' "$OUT/fig1-tx-throughput.dat" ||
    bad "fig1-tx-throughput.dat: nic has a value at 2% or no break"
grep -q '| tx | nic | 1 | 1 | nic download: FAILED after 60.000 s: test-made failure |' "$OUT/report.md" ||
    bad "report.md does not list the failed point"
grep -q '| throughput (MB/s) | nic |.* failed |' "$OUT/report.md" || bad "report.md table shows no 'failed'"

# Median/min/max of plain at 1% TX loss, independently.
vals=$(awk -F, '$1 == "tx" && $2 == "plain" && $17 == 1 { print $9 + 0 }' "$OUT/raw/all.csv" | sort -g)
n=$(echo "$vals" | wc -l)
want=$(echo "$vals" | awk -v n="$n" '{ a[NR] = $1 }
    END { m = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
          printf "throughput,plain,1,%d,%.4g,%.4g,%.4g,MB/s\n", n, m, a[1], a[n] }')
got=$(grep '^throughput,plain,1,' "$csv")
[ "$got" = "$want" ] || bad "fig1 plain at 1%: got '$got', want '$want'"

[ $fail = 0 ] && echo "test_figures_agg: ok"
exit $fail
