#!/bin/sh
# Configure and build into $1 (default build/), extra cmake args after it.
set -eu
cd "$(dirname "$0")/.."
dir=${1:-build}
[ $# -gt 0 ] && shift
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DANIC_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
