#!/usr/bin/env bash
# tools/test.sh - configures, builds and runs the whole test suite; the README and CI both
# call this, so "the tests pass" means one thing.
#
#   tools/test.sh              build/       RelWithDebInfo, warnings are errors
#   tools/test.sh --sanitize   build-asan/  the same suite under ASan + UBSan
#
# Extra arguments after the options go to ctest (e.g. -R ring).
set -euo pipefail

cd "$(dirname "$0")/.."

build=build
cmake_args=(-DCH_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--sanitize" ]; then
    shift
    build=build-asan
    cmake_args+=(-DCH_SANITIZE=ON)
    # Leaks count as failures; the first report stops the test so that ctest sees it.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

cmake -S . -B "$build" "${cmake_args[@]}"
cmake --build "$build" -j2
ctest --test-dir "$build" --output-on-failure -j1 --no-tests=error "$@"
