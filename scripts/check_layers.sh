#!/bin/sh
# Layering check: tls/ reaches the NIC only through the offload operations
# table (docs/design.md §4). No file in tls/ includes a nic/ header (the
# descriptor ABI, nic/nic_abi.h, above all) or names a descriptor type or
# descriptor constant (nic_tx_desc, nic_rx_desc, nic_cqe, nic_tls_static_ctx,
# nic_ring_idx, NIC_TX_*, NIC_RX_*, NIC_TXF_*, NIC_RXF_*, NIC_CTX_*,
# NIC_CTXF_*, NIC_CIPHER_*, NIC_CQE_*), comments included.
# Usage: scripts/check_layers.sh [DIR...]   check DIRs (default: tls)
#        scripts/check_layers.sh --self-test  prove every rule catches a planted
#                                             violation and passes a clean file
# Run by ctest (tests "check_layers", "check_layers_self_test"). Needs sh, grep.
set -eu
cd "$(dirname "$0")/.."
export LC_ALL=C

INCLUDE_RE='^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]nic_[A-Za-z0-9_]*\.h[>"]'
NAME_RE='(^|[^A-Za-z0-9_])(nic_tx_desc|nic_rx_desc|nic_cqe|nic_tls_static_ctx|nic_ring_idx|NIC_(TX|RX|TXF|RXF|CTX|CTXF|CIPHER|CQE)_[A-Z0-9_]+)([^A-Za-z0-9_]|$)'

# Prints every violation in the .c/.h files under the given folders; exit 1
# if there is one.
check() {
    found=0
    for dir in "$@"; do
        [ -d "$dir" ] || {
            echo "check_layers: no such folder: $dir" >&2
            return 2
        }
        files=$(find "$dir" -type f \( -name '*.c' -o -name '*.h' \) | sort)
        [ -n "$files" ] || continue
        # shellcheck disable=SC2086
        if grep -nE "$INCLUDE_RE" $files /dev/null >"${TMPDIR:-/tmp}/check_layers.$$"; then
            sed 's/^/check_layers: includes a NIC header: /' "${TMPDIR:-/tmp}/check_layers.$$"
            found=1
        fi
        # shellcheck disable=SC2086
        if grep -nE "$NAME_RE" $files /dev/null >"${TMPDIR:-/tmp}/check_layers.$$"; then
            sed 's/^/check_layers: names a descriptor type: /' "${TMPDIR:-/tmp}/check_layers.$$"
            found=1
        fi
        rm -f "${TMPDIR:-/tmp}/check_layers.$$"
    done
    return $found
}

self_test() {
    t=$(mktemp -d)
    trap 'rm -rf "$t"' EXIT INT TERM
    mkdir "$t/clean"
    # Near misses that must pass: a counter named like a descriptor, a
    # stack/ header, words that merely contain "nic".
    cat >"$t/clean/ok.c" <<'EOC'
#include "stack_tls_offload.h"
static int tx_nic_failed; /* the NIC refused; NIC_TXT is no constant */
EOC
    check "$t/clean" >/dev/null || {
        echo "check_layers: self-test: a clean folder was refused" >&2
        return 1
    }
    n=0
    for bad in '#include "nic_abi.h"' '# include <nic_dev.h>' 'struct nic_tx_desc d;' \
        'const struct nic_cqe *e;' 'struct nic_tls_static_ctx st;' 'int k = NIC_TX_DUMP;' \
        'int f = NIC_RXF_DECRYPTED;' 'int g = NIC_TXF_OFFLOAD;' 'int c = NIC_CTXF_RX_HINT;' \
        'int r = NIC_RX_RESYNC_RESP;' '/* posts a NIC_TX_PROGRESS */' 'int a = NIC_CIPHER_AES_128_GCM;'; do
        n=$((n + 1))
        mkdir "$t/bad$n"
        printf '%s\n' "$bad" >"$t/bad$n/x.h"
        if check "$t/bad$n" >/dev/null; then
            echo "check_layers: self-test: not caught: $bad" >&2
            return 1
        fi
    done
    echo "check_layers: self-test: $n planted violations caught, clean file passed"
}

if [ "${1:-}" = "--self-test" ]; then
    self_test
    exit $?
fi
[ $# -gt 0 ] || set -- tls
if check "$@"; then
    echo "check_layers: $* free of descriptor names and NIC headers"
    exit 0
fi
exit 1
