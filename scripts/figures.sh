#!/bin/bash
# The evaluation of Pismenny et al., "Autonomous NIC Offloads" (ASPLOS'21),
# redone on anic from one command: runs every experiment with `anic bench`,
# writes one CSV per figure, renders each with gnuplot (SVG + PNG) and writes
# DIR/report.md (captions, median/min/max tables, the paper's numbers, the
# machine, versions, seeds, command line).
#
# Usage: scripts/figures.sh [--out DIR] [--quick] [--repeat N] [--seed S]
#                           [--size BYTES] [--anic PATH]
#        scripts/figures.sh --replot [--out DIR]
#   --out DIR     output directory (default ./figures-out; created); its fig*,
#                 report.md, readme.png, gnuplot.log and raw/ are replaced
#   --quick       4M transfers, N=1: under 5 minutes (run by ctest test_figures)
#   --repeat N    runs per point (default 5; --quick: 1), seeds S..S+N-1
#   --seed S      first fault seed (default 1)
#   --size BYTES  bytes per transfer (default 32M; --quick 4M), as anic bench
#   --anic PATH   the anic binary (default build/anic)
#   --replot      measure nothing: aggregate DIR/raw again, plot, rewrite the
#                 report (its set-up section from DIR/raw/meta.env)
#
# Every point is measured in a fresh runtime (namespace, TUN, NIC, host):
# one `anic bench` sweep per (figure, series, run), and a sweep starts a new
# runtime per value. A point that fails is a gap in its plot, and the report
# names the run and the reason anic bench gave. Needs root (anic bench makes
# its own network namespaces), gnuplot (scripts/deps.sh) and a built anic.
# Exit status: 0 all points measured and every plot rendered without a
# gnuplot warning; 1 some point failed or gnuplot warned (outputs still
# written); 2 usage or set-up error.
set -u
export LC_ALL=C

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=figures-out
QUICK=0
REPLOT=0
REPEAT=
SEED=1
SIZE=
ANIC=$REPO/build/anic
CMDLINE="scripts/figures.sh $*"

die() { echo "figures: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; OUT=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --replot) REPLOT=1; shift ;;
    --repeat) [ $# -ge 2 ] || die "--repeat needs N"; REPEAT=$2; shift 2 ;;
    --seed) [ $# -ge 2 ] || die "--seed needs S"; SEED=$2; shift 2 ;;
    --size) [ $# -ge 2 ] || die "--size needs BYTES"; SIZE=$2; shift 2 ;;
    --anic) [ $# -ge 2 ] || die "--anic needs a path"; ANIC=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
if [ $QUICK = 1 ]; then
    : "${REPEAT:=1}" "${SIZE:=4M}"
else
    : "${REPEAT:=5}" "${SIZE:=32M}"
fi
case $REPEAT in ''|*[!0-9]*) die "--repeat: expected 1..20, got '$REPEAT'" ;; esac
[ "$REPEAT" -ge 1 ] && [ "$REPEAT" -le 20 ] || die "--repeat: expected 1..20, got '$REPEAT'"
case $SIZE in [1-9]*) ;; *) die "--size: expected BYTES with an optional K, M or G, got '$SIZE'" ;; esac
case ${SIZE%[KMG]} in *[!0-9]*) die "--size: expected BYTES with an optional K, M or G, got '$SIZE'" ;; esac
case $SEED in ''|*[!0-9]*) die "--seed: expected a number, got '$SEED'" ;; esac
[ ${#SEED} -le 9 ] || die "--seed: at most 9 digits"
if [ $REPLOT = 0 ]; then
    [ "$(id -u)" = 0 ] || die "needs root (anic bench creates network namespaces)"
    [ -x "$ANIC" ] || die "no anic binary at $ANIC (scripts/build.sh build)"
fi
command -v gnuplot >/dev/null || die "gnuplot missing (scripts/deps.sh installs it)"

# The experiments (percent; KiB).
TX_LOSSES="0,0.5,1,2,5"
RX_REORDERS="0,0.5,1,2,3,5"
RX_LOSSES="0,0.5,1,2,5"
CPU_LOSSES="0,2"
REC_KIB="1 2 4 8 16"
TX_MODES="plain sw nic nic-tagcache mbedtls"
CPU_MODES="plain mbedtls sw nic nic-tagcache"
BENCH_TIMEOUT=900 # s per anic bench call (each bounds its own transfers too)

if [ $REPLOT = 1 ]; then
    [ -f "$OUT/raw/meta.env" ] && [ -f "$OUT/raw/all.csv" ] || die "no $OUT/raw/meta.env or all.csv"
fi
mkdir -p "$OUT/raw" || die "cannot create $OUT/raw"
OUT=$(cd "$OUT" && pwd)
RAW=$OUT/raw
rm -f "$OUT"/fig*.csv "$OUT"/fig*.png "$OUT"/fig*.svg "$OUT"/fig*.gp "$OUT"/fig*.dat \
    "$OUT"/gnuplot.log "$OUT"/report.md "$OUT"/readme.png
if [ $REPLOT = 1 ]; then
    # shellcheck disable=SC1091
    . "$RAW/meta.env" # written below by the measuring run (printf %q)
else
: >"$RAW/all.csv"      # fig,series,run,seed, then anic bench's CSV row
: >"$RAW/failures.csv" # fig,series,run,seed,what
: >"$RAW/calls.log"
rm -f "$RAW"/*.csv "$RAW"/*.log "$RAW"/meta.env
START=$(date -u +%s)
STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ANIC_COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(
    git -C "$REPO" diff --quiet HEAD -- . ':!docs/figures' 2>/dev/null ||
        echo ' (uncommitted changes)')"

# One anic bench call: fig series run seed -- bench args. Rows go to
# all.csv, FAILED lines and abnormal exits to failures.csv.
bench() {
    local fig=$1 series=$2 run=$3 seed=$4
    shift 5
    local tag="$fig-$series-r$run" rc
    echo "$(date -u +%T) $tag: anic bench $* --seed $seed --size $SIZE" | tee -a "$RAW/calls.log"
    # --offloads none: the paper's per-packet set-up (no TSO, GSO or LRO), so
    # that resync costs are per 1448-byte segment as in the paper.
    timeout --signal=TERM --kill-after=30 $BENCH_TIMEOUT "$ANIC" bench "$@" --seed "$seed" \
        --size "$SIZE" --offloads none --csv "$RAW/$tag.csv" >"$RAW/$tag.log" 2>&1
    rc=$?
    if [ -f "$RAW/$tag.csv" ]; then
        tail -n +2 "$RAW/$tag.csv" | sed "s/^/$fig,$series,$run,$seed,/" >>"$RAW/all.csv"
    fi
    grep -F ': FAILED after' "$RAW/$tag.log" | sed 's/^ *//; s/,/;/g' |
        sed "s/^/$fig,$series,$run,$seed,/" >>"$RAW/failures.csv"
    case $rc in
    0|1) ;;
    124) echo "$fig,$series,$run,$seed,anic bench timed out after ${BENCH_TIMEOUT} s" >>"$RAW/failures.csv" ;;
    *) echo "$fig,$series,$run,$seed,anic bench exit status $rc: $(tail -n 1 "$RAW/$tag.log" | tr ',' ';')" \
           >>"$RAW/failures.csv" ;;
    esac
    [ $rc -ge 128 ] && [ $rc -ne 124 ] && { echo "figures: interrupted" >&2; exit 130; }
    return 0
}

for run in $(seq 1 "$REPEAT"); do
    seed=$((SEED + run - 1))
    # Figures 1, 2 and the downloads of 5: downloads under TX loss.
    for m in $TX_MODES; do
        bench tx "$m" "$run" "$seed" -- --tx-loss-sweep "$TX_LOSSES" --modes "$m"
    done
    # Figure 3: uploads under RX reordering; 4: under RX loss; three NICs.
    for cfg in paper ours hint; do
        case $cfg in
        paper) extra="--rx-reorder-buf 0" ;;
        ours) extra="" ;;
        hint) extra="--rx-resync hint" ;;
        esac
        # shellcheck disable=SC2086
        bench rxreorder "$cfg" "$run" "$seed" -- --rx-reorder-sweep "$RX_REORDERS" --modes nic $extra
        # shellcheck disable=SC2086
        bench rxloss "$cfg" "$run" "$seed" -- --rx-loss-sweep "$RX_LOSSES" --modes nic $extra
    done
    # Figure 5: uploads of every mode at 0 and 2 % RX loss.
    for m in $CPU_MODES; do
        bench up "$m" "$run" "$seed" -- --rx-loss-sweep "$CPU_LOSSES" --modes "$m"
    done
    # Figure 6: downloads by record size, no loss.
    for k in $REC_KIB; do
        for m in $TX_MODES; do
            bench rec "$m" "$run" "$seed" -- --tx-loss-sweep 0 --modes "$m" --record-size "${k}K"
        done
    done
done
ELAPSED=$(($(date -u +%s) - START))
for v in CMDLINE STARTED ELAPSED LOAD_START REPEAT SEED SIZE ANIC ANIC_COMMIT; do
    printf '%s=%q\n' "$v" "${!v}"
done >"$RAW/meta.env"
fi # measuring

# ---- aggregation: one CSV per figure (series,x,n,failed,median,min,max) ----
# Every expected point is listed, so a failed one is a row with n=0: a gap.
awk -f "$REPO/scripts/figures_agg.awk" -v out="$OUT" -v repeat="$REPEAT" -v seed0="$SEED" \
    -v tx_losses="$TX_LOSSES" -v rx_reorders="$RX_REORDERS" -v rx_losses="$RX_LOSSES" \
    -v cpu_losses="$CPU_LOSSES" -v rec_kib="$REC_KIB" -v tx_modes="$TX_MODES" \
    -v cpu_modes="$CPU_MODES" -v size="$SIZE" "$RAW/failures.csv" "$RAW/all.csv" ||
    die "aggregation failed"

# ---- plots ----
: >"$OUT/gnuplot.log"
GP_WARN=0
plot() { # name: renders $OUT/name.gp to SVG and PNG
    local name=$1 term size=960,600
    case $name in fig3-* | fig4-*) size=1500,560 ;; esac # three panels
    for term in svg png; do
        {
            if [ $term = svg ]; then
                echo "set terminal svg size $size dynamic enhanced font \"DejaVu Sans,13\""
            else
                echo "set terminal pngcairo size $size enhanced font \"DejaVu Sans,11\""
            fi
            echo "set output '$OUT/$name.$term'"
            cat "$OUT/$name.gp"
        } | (cd "$OUT" && gnuplot) >>"$OUT/gnuplot.log" 2>&1 ||
            echo "figures: gnuplot failed on $name.$term" >>"$OUT/gnuplot.log"
    done
}
for gp in "$OUT"/fig*.gp; do
    plot "$(basename "$gp" .gp)"
done
# The README's figure: figure 1, small.
{
    echo 'set terminal pngcairo size 640,400 enhanced font "DejaVu Sans,9"'
    echo "set output '$OUT/readme.png'"
    cat "$OUT/fig1-tx-throughput.gp"
} | (cd "$OUT" && gnuplot) >>"$OUT/gnuplot.log" 2>&1
if [ -s "$OUT/gnuplot.log" ]; then
    GP_WARN=1
    echo "figures: gnuplot printed messages (see $OUT/gnuplot.log):" >&2
    head -n 20 "$OUT/gnuplot.log" >&2
fi

# ---- report ----
versions() {
    echo "  - anic: commit $ANIC_COMMIT, binary $ANIC"
    local p
    for p in liblwip-dev libmbedtls-dev libssl-dev curl gnuplot-nox gcc; do
        echo "  - $p $(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo 'not installed')"
    done
    echo "  - kernel: $(uname -srm)"
}
{
    echo "# anic: the evaluation of \"Autonomous NIC Offloads\", redone"
    echo
    echo "Generated by \`$CMDLINE\` on $STARTED, in $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
    echo "Do not edit: the command rewrites this file."
    echo
    echo "## Set-up"
    echo
    echo "- **Ours.** One process per point (\`anic bench\`): the simulated NIC (its own thread),"
    echo "  the lwIP host and the TLS server, attached to a TUN device in a private network"
    echo "  namespace; \`curl\` in that namespace is the client (kernel TCP). All of it shares"
    echo "  this machine's cores: the \"NIC\" is software, so its CPU time is real CPU time here."
    echo "  Faults come from anic's fault stage (netem vocabulary) on the simulated wire."
    echo "  Every point runs with \`--offloads none\` (no TSO, GSO or LRO): segments of one"
    echo "  wire MSS, as in the paper, so a retransmission costs what it costs per packet."
    echo "- **The paper's.** A hardware NIC with autonomous TLS offload, Linux kernel TLS"
    echo "  (software kTLS as the baseline), real links and single-core measurements; see the"
    echo "  paper's evaluation for its exact hardware. Its numbers below are only those we cite"
    echo "  with their source; everything else in it is not reproduced here."
    echo "- Machine: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs,"
    echo "  $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM; load average at start $LOAD_START."
    echo "- Runs per point: $REPEAT, fault seeds $SEED..$((SEED + REPEAT - 1)) (run r uses seed"
    echo "  $SEED + r - 1: fault-tx that seed, fault-rx one more); $SIZE per transfer (K, M = KiB, MiB); MB/s = 10^6 B/s."
    echo "  Points: median, with min..max over the runs as error bars; in line plots the series"
    echo "  are shifted a little along x so that their error bars stay apart."
    echo "- Versions:"
    versions
    echo "- Raw data: \`raw/all.csv\` (figure, series, run, seed, then \`anic bench\`'s CSV row),"
    echo "  every call in \`raw/calls.log\`, its output in \`raw/<figure>-<series>-r<run>.log\`."
    echo
    cat "$OUT/report-body.md"
    echo
    echo "## Failed points"
    echo
    if [ -s "$RAW/failures.csv" ]; then
        echo "Each is a gap in its figure (n < $REPEAT in the tables)."
        echo
        echo "| experiment | series | run | seed | what anic bench said |"
        echo "|---|---|---|---|---|"
        sed 's/|/\\|/g' "$RAW/failures.csv" | awk -F, '{ w = $5; for (i = 6; i <= NF; i++) w = w "," $i
            printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, w }'
    else
        echo "None: every point of every run was measured."
    fi
    if [ $GP_WARN = 1 ]; then
        echo
        echo "**gnuplot printed messages** (\`gnuplot.log\`); the plots may be incomplete."
    fi
} >"$OUT/report.md"
rm -f "$OUT/report-body.md"

echo "figures: $OUT/report.md, $(ls "$OUT"/fig*.png 2>/dev/null | wc -l) PNG figures," \
    "$(wc -l <"$RAW/failures.csv") failed points, ${ELAPSED} s"
[ -s "$RAW/failures.csv" ] || [ $GP_WARN = 1 ] && exit 1
exit 0
