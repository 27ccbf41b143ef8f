#!/usr/bin/env bash
# tests/packaging/check.sh [BUILD_DIR] - checks that an installed corehub is usable.
#
# Installs BUILD_DIR (default: build) into a temporary prefix, then checks what a user
# of the package relies on: the shared library's SONAME, that it exports only ch_
# symbols, that the static library exposes no more than those, that the old names kept as
# aliases name exported functions, that a program builds against it through CMake
# (find_package, both the shared and the static target) and through pkg-config, and that
# those programs run.
# Called by .ci/run, not by ctest: it needs a finished, non-sanitized build.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-build}" 2>/dev/null && pwd) || {
    echo "packaging: no build directory '${1:-build}' (run tools/test.sh first)" >&2
    exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail=0

ok() { echo "packaging: ok   $*"; }
bad() {
    echo "packaging: FAIL $*" >&2
    fail=1
}

# Quiet when all is well; the whole output when the build or the install fails.
if ! { cmake --build "$build" -j2 && cmake --install "$build" --prefix "$prefix"; } \
    >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log" >&2
    echo "packaging: FAIL cannot build or install $build" >&2
    exit 1
fi
lib=$(find "$prefix" -name 'libcorehub.so.*.*' -type f | head -1)
[ -n "$lib" ] || {
    echo "packaging: FAIL no libcorehub.so.* installed under $prefix" >&2
    exit 1
}
libdir=$(dirname "$lib")
ok "installed to $prefix (${lib#"$prefix"/})"

check_soname() {
    local soname
    soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    if [ "$soname" = libcorehub.so.0 ]; then ok "SONAME $soname"; else bad "SONAME '$soname'"; fi
    [ -L "$libdir/libcorehub.so.0" ] && [ -L "$libdir/libcorehub.so" ] ||
        bad "missing libcorehub.so / libcorehub.so.0 links"
}

check_exports() {
    local all foreign
    all=$(nm -D --defined-only "$lib" | awk '{print $NF}')
    foreign=$(grep -v '^ch_' <<<"$all" || true)
    if [ -n "$foreign" ]; then
        bad "exports non-ch_ symbols: $(tr '\n' ' ' <<<"$foreign")"
    elif ! grep -qx ch_strerror <<<"$all"; then
        bad "ch_strerror is not exported"
    else
        ok "exports $(wc -l <<<"$all") symbols, all ch_*"
    fi
}

# The static library's global symbols are the shared library's exports, no more: its
# internals were made local (CMakeLists.txt), so a program that links it cannot collide
# with them (`nm -g --defined-only libcorehub.a`).
check_static_exports() {
    local shared static extra
    shared=$(nm -D --defined-only "$lib" | awk '{print $NF}' | sort)
    static=$(nm -g --defined-only "$libdir/libcorehub.a" | awk 'NF == 3 {print $3}' | sort)
    extra=$(comm -13 <(echo "$shared") <(echo "$static"))
    if [ -z "$static" ]; then
        bad "libcorehub.a defines no global symbol"
    elif [ -n "$extra" ]; then
        bad "libcorehub.a exposes $(wc -l <<<"$extra") internal symbols: $(head -5 <<<"$extra" | tr '\n' ' ')"
    else
        ok "libcorehub.a exposes $(wc -l <<<"$static") symbols, the shared library's"
    fi
}

# corehub/common.h keeps the names functions had before the naming rule as macros for the
# new ones (its "aliases (old names)" block): each must name an exported function, and no
# old name may be exported itself, so that every function has one symbol.
check_aliases() {
    local exports aliases wrong=""
    exports=$(nm -D --defined-only "$lib" | awk '{print $NF}')
    aliases=$(awk '/aliases \(old names\)/ {f = 1} f && $1 == "#define" && $2 ~ /^ch_/ {print $2, $3}' \
        "$prefix/include/corehub/common.h")
    if [ -z "$aliases" ]; then
        bad "no aliases (old names) block in corehub/common.h"
        return
    fi
    while read -r old new; do
        grep -qx "$new" <<<"$exports" || wrong="$wrong $old->$new (not exported)"
        if grep -qx "$old" <<<"$exports"; then wrong="$wrong $old (exported)"; fi
    done <<<"$aliases"
    if [ -n "$wrong" ]; then bad "aliases:$wrong"; else
        ok "$(wc -l <<<"$aliases") old names alias exported functions"
    fi
}

check_headers() {
    [ -f "$prefix/include/corehub/corehub.h" ] || bad "corehub/corehub.h not installed"
    [ -f "$libdir/libcorehub.a" ] || bad "libcorehub.a not installed"
    [ -f "$libdir/pkgconfig/corehub.pc" ] || bad "corehub.pc not installed"
    [ -f "$libdir/cmake/corehub/corehubConfig.cmake" ] || bad "corehubConfig.cmake not installed"
}

check_cmake_consumer() {
    local out=$tmp/cmake-consumer
    if ! cmake -S "$root/tests/packaging" -B "$out" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_BUILD_TYPE=Release >"$tmp/cmake.log" 2>&1 ||
        ! cmake --build "$out" -j2 >>"$tmp/cmake.log" 2>&1; then
        cat "$tmp/cmake.log" >&2
        bad "CMake consumer (find_package(corehub)) does not build"
        return
    fi
    run_consumer "find_package, corehub::corehub" "$out/consumer"
    run_consumer "find_package, corehub::corehub_static" "$out/consumer_static"
}

check_pkgconfig_consumer() {
    local flags
    export PKG_CONFIG_PATH=$libdir/pkgconfig
    if ! flags=$(pkg-config --cflags --libs corehub); then
        bad "pkg-config --cflags --libs corehub failed"
        return
    fi
    # shellcheck disable=SC2086 # the flags are a word list by design
    if ! cc -std=c17 -Wall -Wextra -Werror -o "$tmp/consumer_pc" \
        "$root/tests/packaging/consumer.c" $flags; then
        bad "pkg-config consumer does not build with: $flags"
        return
    fi
    LD_LIBRARY_PATH=$libdir run_consumer "pkg-config ($flags)" "$tmp/consumer_pc"
}

# Runs a consumer and checks it used the installed library, not one elsewhere.
run_consumer() {
    local what=$1 exe=$2 out deps
    if ! out=$("$exe" 2>&1); then
        bad "$what: consumer failed: $out"
        return
    fi
    # No `ldd | grep -q`: grep quitting early kills ldd with SIGPIPE, and pipefail fails.
    deps=$(ldd "$exe")
    if [[ $deps == *libcorehub.so* && $deps != *"$libdir/libcorehub.so"* ]]; then
        bad "$what: linked to a libcorehub outside the prefix: $(grep corehub <<<"$deps")"
        return
    fi
    ok "$what: $out"
}

# The README's embedding example, as a user would paste it: it must build against the
# installed library with warnings as errors, and run.
check_readme_example() {
    local src=$tmp/readme_example.c flags
    awk '/^## Embedding corehub/{f=1} f&&/^```c/{p=1;next} p&&/^```/{exit} p' \
        "$root/README.md" >"$src"
    if [ ! -s "$src" ]; then
        bad "no C example under 'Embedding corehub' in README.md"
        return
    fi
    export PKG_CONFIG_PATH=$libdir/pkgconfig
    flags=$(pkg-config --cflags --libs corehub) || {
        bad "pkg-config failed for the README example"
        return
    }
    # shellcheck disable=SC2086 # the flags are a word list by design
    if ! cc -std=c17 -Wall -Wextra -Werror -o "$tmp/readme_example" "$src" $flags; then
        bad "the README's embedding example does not build"
        return
    fi
    LD_LIBRARY_PATH=$libdir run_consumer "README embedding example" "$tmp/readme_example"
}

check_program() {
    local out
    if out=$("$prefix/bin/corehub" version 2>&1); then ok "bin/corehub: $out"; else
        bad "installed corehub program: $out"
    fi
}

check_soname
check_exports
check_static_exports
check_aliases
check_headers
check_cmake_consumer
check_pkgconfig_consumer
check_readme_example
check_program

if [ $fail -ne 0 ]; then
    echo "packaging: FAILED" >&2
    exit 1
fi
echo "packaging: all checks passed"
