#!/bin/sh
# The AVX-512 and the AVX2 builds of the kernels give the same bits for every weight type
# (quant_q8.c: exact integer sums, the same float operations in the same order). Compares
# the per-matrix digests that test_quant_kernels prints, over all results of all matrices.
# usage: same_bits.sh TEST_NATIVE TEST_NOAVX512 [MIN_DIGESTS (20)]
# (tests/forward runs it on test_fwd_attn too, whose lines have the same form)
set -eu
min=${3:-20}
a=$("$1" | sed -n 's/^ok \(.*\) bits \([0-9a-f]*\) .*/\1 \2/p')
b=$("$2" | sed -n 's/^ok \(.*\) bits \([0-9a-f]*\) .*/\1 \2/p')
n=$(printf '%s\n' "$a" | grep -c . || true)
if [ "$n" -lt "$min" ]; then
    echo "FAIL: only $n digests from $1" >&2
    exit 1
fi
if [ "$a" != "$b" ]; then
    echo "FAIL: the builds differ:" >&2
    printf '%s\n' "$a" > "${TMPDIR:-/tmp}/same_bits.a.$$"
    printf '%s\n' "$b" | diff "${TMPDIR:-/tmp}/same_bits.a.$$" - >&2 || true
    rm -f "${TMPDIR:-/tmp}/same_bits.a.$$"
    exit 1
fi
echo "ok: $n digests, the same bits in both builds"
