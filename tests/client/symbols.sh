#!/bin/sh
# The library exports only the tlm_* calls that telemetry.h declares: every
# dynamic symbol the shared library defines is one of them (names the
# sanitizers add are set aside), every call the header declares is exported,
# and the static library defines no global name outside tlm_.
# Usage: symbols.sh LIBTELEMETRY.so LIBTELEMETRY.a telemetry.h
set -eu
so=$1 a=$2 header=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

sanitizer='^(__asan|__odr_asan|__ubsan|__sanitizer|__lsan|___asan)'
nm -D --defined-only "$so" | awk '{print $3}' | grep -Ev "$sanitizer" | sort > "$tmp/exported"
sed -n 's/^TLM_API [^(]*[ *]\(tlm_[a-z_0-9]*\)(.*/\1/p' "$header" | sort > "$tmp/declared"
if [ ! -s "$tmp/declared" ]; then
    echo "no TLM_API declarations found in $header"
    exit 1
fi
extra=$(comm -23 "$tmp/exported" "$tmp/declared")
missing=$(comm -13 "$tmp/exported" "$tmp/declared")
if [ -n "$extra" ]; then
    echo "exported but not declared in telemetry.h:"; echo "$extra"; fail=1
fi
if [ -n "$missing" ]; then
    echo "declared in telemetry.h but not exported:"; echo "$missing"; fail=1
fi
static_bad=$(nm -g --defined-only "$a" | awk 'NF == 3 {print $3}' | grep -Ev "$sanitizer" |
    grep -v '^tlm_' || true)
if [ -n "$static_bad" ]; then
    echo "global names outside tlm_ in the static library:"; echo "$static_bad"; fail=1
fi
n=$(wc -l < "$tmp/exported")
if [ "$fail" = 0 ]; then
    echo "1 passed, 0 failed ($n exported symbols, all tlm_ and declared)"
else
    echo "0 passed, 1 failed"
fi
exit "$fail"
