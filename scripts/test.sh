#!/bin/sh
# The whole test suite: installs missing packages, builds (warnings are
# errors; also Release, Debug and clang, compile only), runs every test with
# ctest, then the unit tests again under AddressSanitizer + UndefinedBehavior-
# Sanitizer, then each libFuzzer target for a short while (scripts/fuzz.sh).
# Run as root: the end-to-end tests create their own network namespaces and
# TUN devices.
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
# Every build type compiles warning-free (-Werror), with GCC and with clang:
# compile only, the tests run on build/ and build-asan/.
scripts/build.sh build-release -DCMAKE_BUILD_TYPE=Release
scripts/build.sh build-debug -DCMAKE_BUILD_TYPE=Debug
scripts/build.sh build-clang -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang
(cd build && ctest --output-on-failure --timeout 900)
scripts/build.sh build-asan -DANIC_SANITIZE=ON
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -L unit)
scripts/fuzz.sh 15
