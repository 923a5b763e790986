#!/bin/sh
# The whole test suite: installs missing packages, builds (warnings are
# errors), runs every test with ctest, then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then each libFuzzer target
# for a short while (scripts/fuzz.sh). Run as root: the end-to-end tests
# create their own network namespaces and TUN devices.
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
(cd build && ctest --output-on-failure --timeout 900)
scripts/build.sh build-asan -DANIC_SANITIZE=ON
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -L unit)
scripts/fuzz.sh 15
