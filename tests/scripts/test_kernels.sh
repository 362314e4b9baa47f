#!/bin/sh
# make test-kernels: the float-sensitive tests under each OpenBLAS kernel this CPU can run, then
# one table of every "measured" difference (tests/testutil.h's tu_assert_measured) per kernel.
# Usage: tests/scripts/test_kernels.sh BUILD_DIR TEST_PROGRAM...
#
# OpenBLAS's DYNAMIC_ARCH build picks one kernel for the CPU; OPENBLAS_CORETYPE picks another.
# Each kernel sums a product in its own order, so a test that compares two summation orders
# (ranks against one process, chunks against one shot) sees another rounding under each: a bound
# must hold on all of them (docs/testing.md).
build=$1
shift
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    # Such a machine sets it because another kernel computes wrong results there: don't try one.
    echo "test-kernels: skipped: this machine sets OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE, so" \
         "OpenBLAS's other kernels may miscompute here; run it where the variable is unset"
    exit 0
fi

flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { for f in "$@"; do case " $flags " in *" $f "*) ;; *) return 1 ;; esac; done; }

# The x86-64 kernels of Debian's OpenBLAS, each kept where the CPU has the instructions it uses.
kernels=""
has pni && kernels="$kernels Prescott" # pni: the kernel's SSE3
has sse4_2 && kernels="$kernels Nehalem"
has avx && kernels="$kernels Sandybridge"
has avx2 fma && kernels="$kernels Haswell Zen"
has avx512f avx512cd avx512bw avx512dq avx512vl && kernels="$kernels SkylakeX"
has avx512f avx512bw avx512vl avx512_bf16 && kernels="$kernels Cooperlake"
if [ -z "$kernels" ]; then
    echo "test-kernels: skipped: no x86-64 OpenBLAS kernel matches this CPU's flags"
    exit 0
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=""
for k in $kernels; do
    # What OpenBLAS really runs: an unknown name falls back to the CPU's own kernel.
    ran=$(OPENBLAS_CORETYPE=$k "$build/tests/openblas_core")
    if [ "$ran" != "$k" ]; then
        echo "test-kernels: $k: OpenBLAS runs $ran instead; left out"
        continue
    fi
    echo "test-kernels: OPENBLAS_CORETYPE=$k"
    if ! OPENBLAS_CORETYPE=$k sh tests/run.sh "$@" >"$logs/$k.log" 2>&1; then
        failed="$failed $k"
    fi
    tail -n 2 "$logs/$k.log" | sed 's/^/    /'
    sed -n 's/^  measured \(.*\): \([^ ]*\) (bound \([^)]*\))$/\1\t\2\t\3/p' "$logs/$k.log" \
        >"$logs/$k.tsv"
done

# One row per measurement, one column per kernel, in the order the tests print them.
echo
awk -F '\t' -v kernels="$(echo $kernels)" -v dir="$logs" '
BEGIN {
    nk = split(kernels, ks, " ")
    for (i = 1; i <= nk; i++) {
        file = dir "/" ks[i] ".tsv"
        while ((getline line < file) > 0) {
            split(line, f, "\t")
            if (!(f[1] in seen)) { seen[f[1]] = 1; order[++n] = f[1]; bound[f[1]] = f[3] }
            v[f[1], ks[i]] = f[2]
        }
    }
    printf "%-58s %8s", "measured difference", "bound"
    for (i = 1; i <= nk; i++) printf " %11s", ks[i]
    printf "\n"
    for (r = 1; r <= n; r++) {
        printf "%-58s %8s", substr(order[r], 1, 58), bound[order[r]]
        for (i = 1; i <= nk; i++) printf " %11s", ((order[r], ks[i]) in v) ? v[order[r], ks[i]] : "-"
        printf "\n"
    }
}'
if [ -n "$failed" ]; then
    echo "test-kernels: failed under:$failed"
    exit 1
fi
echo "test-kernels: every kernel passed"
