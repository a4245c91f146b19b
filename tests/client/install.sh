#!/bin/sh
# Install the project into a temporary prefix, then build a small program
# against the installed libtelemetry three ways: with pkg-config (shared),
# with pkg-config --static, and from a CMake project with
# find_package(telemetry) (telemetry::telemetry and telemetry_static).
# Each program must run: queue one event for an absent agent and exit 0.
# Usage: install.sh BUILD_DIR [EXTRA_CFLAGS]   (EXTRA_CFLAGS: sanitizer flags)
set -eu
build=$1
extra=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" > "$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; echo "0 passed, 1 failed"; exit 1; }
pc=$(find "$prefix" -name telemetry.pc)
[ -n "$pc" ] || { echo "telemetry.pc was not installed"; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
test -f "$prefix/include/telemetry.h"
test -f "$libdir/libtelemetry.a"
test -f "$libdir/cmake/telemetry/telemetryConfig.cmake"

cat > "$tmp/app.c" <<'C'
#include <telemetry.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    tlm_client *c;
    tlm_event *ev;
    tlm_stats st;
    if (tlm_open(&c, argc > 1 ? argv[1] : NULL, NULL) != TLM_OK)
        return 1;
    if (tlm_event_new(&ev, "debug-ping") != TLM_OK)
        return 2;
    tlm_event_add_str(ev, "how", "installed");
    int rc = tlm_send(c, ev) == TLM_OK ? 0 : 3;
    tlm_event_free(ev);
    tlm_get_stats(c, &st);
    if (st.attempted != 1 || st.queued + st.sent != 1)
        rc = 4;
    tlm_close(c);
    printf("libtelemetry %s: %s\n", tlm_version(), rc == 0 ? "ok" : "failed");
    return rc;
}
C
absent=$tmp/no-agent.sock
passed=0 failed=0
check() { # name command...
    name=$1; shift
    if "$@" > "$tmp/$name.log" 2>&1; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name"; cat "$tmp/$name.log"
    fi
}

export PKG_CONFIG_PATH="$libdir/pkgconfig"
check pkg-config-shared sh -c "cc $extra '$tmp/app.c' -o '$tmp/app-shared' \$(pkg-config --cflags --libs telemetry) &&
    LD_LIBRARY_PATH='$libdir' '$tmp/app-shared' '$absent'"
check pkg-config-static sh -c "cc $extra '$tmp/app.c' -o '$tmp/app-static' \$(pkg-config --cflags telemetry) \
    '$libdir/libtelemetry.a' \$(pkg-config --static --libs-only-other telemetry) &&
    '$tmp/app-static' '$absent'"

mkdir -p "$tmp/proj"
cp "$tmp/app.c" "$tmp/proj/app.c"
cat > "$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(app C)
find_package(telemetry 0.1 REQUIRED)
add_executable(app-cmake app.c)
target_link_libraries(app-cmake PRIVATE telemetry::telemetry)
add_executable(app-cmake-static app.c)
target_link_libraries(app-cmake-static PRIVATE telemetry::telemetry_static)
CM
check find-package sh -c "cmake -S '$tmp/proj' -B '$tmp/proj/build' -DCMAKE_PREFIX_PATH='$prefix' \
    -DCMAKE_C_FLAGS='$extra' -DCMAKE_EXE_LINKER_FLAGS='$extra' &&
    cmake --build '$tmp/proj/build' && '$tmp/proj/build/app-cmake' '$absent' &&
    '$tmp/proj/build/app-cmake-static' '$absent'"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
