#!/bin/sh
# Install the Debian 12 packages anic needs, only those missing.
# Usage: scripts/deps.sh   (as root; non-interactive)
set -eu

# clang + libclang-rt-14-dev: libFuzzer and the sanitizer runtimes for scripts/fuzz.sh.
# gnuplot-nox: the plots of scripts/figures.sh. valgrind: anic bench --host-instr.
PKGS="gcc make cmake pkg-config liblwip-dev libmbedtls-dev libssl-dev libpcap-dev check gnuplot-nox
      curl openssl tshark iproute2 procps clang libclang-rt-14-dev wrk nginx-light valgrind"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages:$missing; run as root to install them" >&2
    exit 1
fi
echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
# nginx-light is for 'anic bench --load', which starts its own nginx inside its
# namespace: keep the package from starting a system-wide service.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
