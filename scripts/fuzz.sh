#!/bin/sh
# Build the libFuzzer targets (fuzz/fuzz_*.c) with clang into build-fuzz/ and
# run each for SECONDS (default 60) on a scratch copy of its seed corpus
# fuzz/corpus/<name>/, so that no new input is written into the repository.
# SECONDS = 0 only replays the seed corpora. Optional NAMEs pick targets.
#
# Exits non-zero if a target crashed, leaked, timed out, ran out of memory,
# tripped ASan/UBSan or violated a property; it prints the target and the
# reproducer, kept in build-fuzz/artifacts/<name>/. Replay one with
#   build-fuzz/fuzz/fuzz_<name> build-fuzz/artifacts/<name>/crash-...
#
# Per target, fuzz/fuzz_<name>.dict is passed as -dict and the line in
# fuzz/fuzz_<name>.options (if present) as extra libFuzzer flags.
#
# Usage: scripts/fuzz.sh [SECONDS] [NAME...]
set -eu
cd "$(dirname "$0")/.."

secs=${1:-60}
[ $# -gt 0 ] && shift
case $secs in
'' | *[!0-9]*)
    echo "fuzz: SECONDS must be a whole number, got '$secs'" >&2
    exit 2
    ;;
esac

if [ $# -gt 0 ]; then
    names="$*"
else
    names=$(for f in fuzz/fuzz_*.c; do basename "$f" .c; done | sed 's/^fuzz_//')
fi
for n in $names; do
    if [ ! -f "fuzz/fuzz_$n.c" ]; then
        echo "fuzz: no target fuzz/fuzz_$n.c" >&2
        exit 2
    fi
    if [ ! -d "fuzz/corpus/$n" ]; then
        echo "fuzz: target $n has no seed corpus fuzz/corpus/$n/" >&2
        exit 2
    fi
done

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: clang not found; scripts/deps.sh installs it" >&2
    exit 2
fi

build="build-fuzz"
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DANIC_WERROR=ON -DANIC_FUZZ=ON >/dev/null
targets=$(for n in $names; do printf 'fuzz_%s ' "$n"; done)
# shellcheck disable=SC2086
if ! cmake --build "$build" -j "$(nproc)" --target $targets; then
    echo "fuzz: build failed (is every fuzz/fuzz_<name>.c listed in fuzz/CMakeLists.txt?)" >&2
    exit 2
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/anic-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM
mkdir -p "$build/logs"

# Every finding aborts; leaks are findings too.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=print_suppressions=0

summary="$scratch/summary"
printf '%-12s %10s %9s %6s %7s %8s %7s  %s\n' target runs exec/s cov feat corpus rss_mb result \
    >"$summary"
failed=0
for n in $names; do
    corpus="$scratch/$n"
    art="$build/artifacts/$n"
    log="$build/logs/$n.log"
    mkdir -p "$corpus"
    cp -R "fuzz/corpus/$n/." "$corpus/"
    rm -rf "$art"
    mkdir -p "$art"

    set -- -timeout=10 -rss_limit_mb=2048 -detect_leaks=1 -print_final_stats=1 \
        -artifact_prefix="$art/"
    if [ "$secs" -eq 0 ]; then
        set -- "$@" -runs=0
    else
        set -- "$@" -max_total_time="$secs"
    fi
    [ -f "fuzz/fuzz_$n.dict" ] && set -- "$@" -dict="fuzz/fuzz_$n.dict"
    if [ -f "fuzz/fuzz_$n.options" ]; then
        # shellcheck disable=SC2046
        set -- "$@" $(grep -v '^#' "fuzz/fuzz_$n.options")
    fi

    echo "fuzz: $n for ${secs}s (log $log)"
    rc=0
    "$build/fuzz/fuzz_$n" "$@" "$corpus" >"$log" 2>&1 || rc=$?

    # The last status line, e.g. "#285015 DONE cov: 460 ft: 1823 corp: 513/281Kb ...".
    status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    field() { echo "$status" | sed -n "s/.* $1: \([^ ]*\).*/\1/p"; }
    final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
    runs=$(final_stat number_of_executed_units)
    eps=$(final_stat average_exec_per_sec)
    rss=$(final_stat peak_rss_mb)
    corp=$(field corp | cut -d/ -f1)

    finding=$(grep -E -m 1 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|property violated|^SUMMARY:' "$log" || true)
    if [ "$rc" -ne 0 ] || [ -n "$finding" ]; then
        failed=$((failed + 1))
        result=FAIL
        repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        [ -n "$repro" ] || repro=$(find "$art" -type f | head -n 1)
        echo "fuzz: FAIL $n (exit $rc): ${finding:-see the log}" >&2
        echo "fuzz:   reproducer: ${repro:-none written}" >&2
        echo "fuzz:   log: $log" >&2
        [ -z "$repro" ] || echo "fuzz:   replay: $build/fuzz/fuzz_$n $repro" >&2
        tail -n 40 "$log" >&2
    else
        result=ok
    fi
    printf '%-12s %10s %9s %6s %7s %8s %7s  %s\n' "$n" "${runs:--}" "${eps:--}" \
        "$(field cov)" "$(field ft)" "${corp:--}" "${rss:--}" "$result" >>"$summary"
done

echo
cat "$summary"
count=$(echo "$names" | wc -w)
echo "fuzz: $((count - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
