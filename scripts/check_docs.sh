#!/bin/sh
# Checks that README.md, docs/ and the sources cite only what exists:
#   - no reference to a folder above the repository (a parent "shared"
#     notes folder a fresh clone does not have);
#   - every repo-relative path (nic/..., docs/..., ...) and every file named
#     by itself (tls_conn.c, build.sh, README.md) exists;
#   - every "design.md §N" has a section "## N." in docs/design.md;
#   - the counter reference, docs/design.md §9, lists exactly the counters
#     apps/app_stats.c puts in /stats, and they fit APP_STATS_MAX.
# Usage: scripts/check_docs.sh            run the checks (exit 1 on a finding)
#        scripts/check_docs.sh --counters print "section name" per counter
# Needs only sh, grep, sed and awk. Run by ctest (test "check_docs").
set -eu
cd "$(dirname "$0")/.."
export LC_ALL=C

DESIGN=docs/design.md
COUNTER_SECTION=9

# "section name" for every counter of /stats: the sections are the SEC(...)
# lines of app_sections[] in apps/app_stats.c, each naming a `sec_` array
# built from counter lists, the X-macros `#define LIST(X)` next to each
# layer's counter struct (X(name) per counter).
counters_from_stats() {
    awk '
    FNR == 1 { in_list = ""; in_arr = "" }
    # a counter list in a header
    /^#define [A-Z_][A-Z0-9_]*\(X\)/ {
        in_list = $2; sub(/\(X\).*/, "", in_list)
        lists[in_list] = ""
    }
    in_list != "" {
        s = $0
        while (match(s, /X\([A-Za-z_][A-Za-z0-9_]*\)/)) {
            lists[in_list] = lists[in_list] " " substr(s, RSTART + 2, RLENGTH - 3)
            s = substr(s, RSTART + RLENGTH)
        }
        if ($0 !~ /\\[ \t]*$/) in_list = ""
        next
    }
    # a section array in apps/app_stats.c: the lists it concatenates
    /static const char \*const sec_[a-z_0-9]*\[\] *=/ {
        in_arr = $0; sub(/.*const char \*const /, "", in_arr); sub(/\[.*/, "", in_arr)
        arrs[in_arr] = ""
    }
    in_arr != "" {
        s = $0
        while (match(s, /[A-Z_][A-Z0-9_]*\(APP_NAME\)/)) {
            arrs[in_arr] = arrs[in_arr] " " substr(s, RSTART, RLENGTH - 10)
            s = substr(s, RSTART + RLENGTH)
        }
        if ($0 ~ /;/) in_arr = ""
        next
    }
    /^[ \t]*SEC\("/ {
        s = $0
        sub(/^[ \t]*SEC\("/, "", s)
        sec = s; sub(/".*/, "", sec)
        arr = s; sub(/^[^,]*, */, "", arr); sub(/[ ,].*/, "", arr)
        if (!(arr in arrs)) {
            print "apps/app_stats.c:" FNR ": section " sec ": no array " arr > "/dev/stderr"
            bad = 1
            next
        }
        nl = split(arrs[arr], ls, " ")
        for (j = 1; j <= nl; j++) {
            if (!(ls[j] in lists)) {
                print "apps/app_stats.c:" FNR ": no counter list " ls[j] > "/dev/stderr"
                bad = 1
                continue
            }
            nn = split(lists[ls[j]], names, " ")
            for (k = 1; k <= nn; k++) print sec, names[k]
        }
    }
    END { exit bad }
    ' nic/*.h stack/*.h tls/*.h apps/*.h apps/app_stats.c
}

# "section name" for every "- `name`" line under "### `sec`, `sec2`" in the
# counter reference section of docs/design.md.
counters_from_design() {
    awk -v want="$COUNTER_SECTION" '
    /^## / { inside = ($2 == want ".") ; next }
    !inside { next }
    /^### / {
        nsec = 0
        s = $0
        while (match(s, /`[^`]*`/)) {
            secs[++nsec] = substr(s, RSTART + 1, RLENGTH - 2)
            s = substr(s, RSTART + RLENGTH)
        }
        next
    }
    /^- `[^`]*`/ {
        name = $0
        sub(/^- `/, "", name); sub(/`.*/, "", name)
        for (i = 1; i <= nsec; i++) print secs[i], name
    }
    ' "$DESIGN"
}

if [ "${1:-}" = "--counters" ]; then
    counters_from_stats
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
# Findings collect in a file: checks run in pipelines (subshells).
: >"$tmp/findings"
err() {
    echo "check_docs: $*" >>"$tmp/findings"
}

# The files to check and the files that exist.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard >"$tmp/all"
else
    find . -path ./.git -prune -o -path './build*' -prune -o -type f -print |
        sed 's|^\./||' >"$tmp/all"
fi
grep -E '^(README\.md|docs/.*\.md|.*\.[ch]|.*\.sh|(.*/)?CMakeLists\.txt|\.ci/run)$' "$tmp/all" \
    >"$tmp/scan" || true
sed 's|.*/||' "$tmp/all" | sort -u >"$tmp/basenames"
[ -f "$DESIGN" ] || err "$DESIGN is missing"

# Every match of an extended regex as file:line:match, include lines of
# system headers left out. This script itself is not scanned: it names what
# it forbids.
matches() {
    # shellcheck disable=SC2046
    grep -noE "$1" $(grep -vxF scripts/check_docs.sh "$tmp/scan") /dev/null |
        grep -vE '^[^:]*:[0-9]+:[[:space:]]*#[[:space:]]*include[[:space:]]*<' || true
}
report() {
    sed 's/^/check_docs: /' >>"$tmp/findings"
}

# 1. Nothing outside the repository.
matches '\.\./s[h]ared[^ ]*|/work/s[h]ared[^ ]*' | awk -F: '{print $1 ":" $2 ": cites a file outside the repository: " $3}' | report

# 2. Repo-relative paths exist.
dirs='nic|stack|tls|apps|bench|tests|scripts|docs|\.ci'
matches "(^|[^A-Za-z0-9_./-])($dirs)/[A-Za-z0-9_./-]*" |
    sed -E 's/^([^:]*:[0-9]+:)[^A-Za-z0-9_.]?/\1/; s/[./]+$//' >"$tmp/paths"
while IFS=: read -r file line path; do
    [ -e "$path" ] || echo "$file:$line: no such file or folder: $path"
done <"$tmp/paths" | report

# 3. Files named by themselves exist somewhere in the repository.
matches '(^|[^A-Za-z0-9_./-])((nic|stack|tls|app|bench|test)_[a-z0-9_]+\.[ch]|[A-Z][A-Za-z0-9_-]*\.md|[a-z_]+\.sh)([^A-Za-z0-9_]|$)' |
    sed -E 's/^([^:]*:[0-9]+:)[^A-Za-z0-9_]?/\1/; s/[^A-Za-z0-9_]$//' |
    awk -F: 'NR == FNR { have[$0] = 1; next }
             !($3 in have) { print $1 ":" $2 ": no file named " $3 " here" }' "$tmp/basenames" - |
    report

# 4. Sections cited as "design.md §N" exist.
grep -E '^## [0-9]+\. ' "$DESIGN" | sed -E 's/^## ([0-9]+)\..*/\1/' >"$tmp/sections"
matches 'design\.md §[0-9]+((, | and | or )§[0-9]+)*' |
    awk -F: -v doc="$DESIGN" 'NR == FNR { have[$0] = 1; next }
        { s = $3
          while (match(s, /§[0-9]+/)) {
              n = substr(s, RSTART, RLENGTH); sub(/^§/, "", n)
              if (!(n in have)) print $1 ":" $2 ": " doc " has no section " n
              s = substr(s, RSTART + RLENGTH)
          } }' "$tmp/sections" - | report

# 5. The counter reference matches /stats.
counters_from_stats >"$tmp/stats.unsorted" || err "apps/app_stats.c: cannot list its counters"
sort "$tmp/stats.unsorted" >"$tmp/stats"
counters_from_design | sort >"$tmp/design"
[ -s "$tmp/stats" ] || err "apps/app_stats.c: no counters found"
comm -23 "$tmp/stats" "$tmp/design" | sed "s|^|$DESIGN §$COUNTER_SECTION: counter missing: |" | report
comm -13 "$tmp/stats" "$tmp/design" | sed "s|^|$DESIGN §$COUNTER_SECTION: not a /stats counter: |" |
    report
uniq -d "$tmp/stats" | sed 's|^|apps/app_stats.c: counter added twice: |' | report
max=$(sed -nE 's/^#define APP_STATS_MAX[[:space:]]+([0-9]+).*/\1/p' apps/app_stats.h)
n=$(wc -l <"$tmp/stats")
if [ -z "$max" ] || [ "$n" -gt "$max" ]; then
    err "apps/app_stats.c adds $n counters, APP_STATS_MAX is ${max:-unknown}: raise it"
fi

if [ -s "$tmp/findings" ]; then
    cat "$tmp/findings" >&2
    exit 1
fi
echo "check_docs: ok ($(wc -l <"$tmp/scan") files, $n counters)"
