#!/bin/sh
# Runs every measure of issue 9 on this machine, the way bench/RESULTS.md reports them:
# synthetic SmolLM2-135M and Llama-3.2-1B files (Q8_0, Q4_0), engine prefill / decode /
# 16- and 64-stream decode (128-token prompts, as llama.cpp's batched figures), then through
# the daemon bench_serve (1, 4, 16, 64 clients) and bench_prefix. Takes about 10 minutes on
# 2 cores; run it on a quiet machine (other jobs change every figure).
#
# usage: bench/issue9.sh [BUILD_DIR [OUT_DIR]]   (defaults: build/release, /tmp/llamad-issue9)
#        SHARED=/path/to/shared  (the test data; default ../shared beside the repository)
set -eu
B=${1:-build/release}
OUT=${2:-/tmp/llamad-issue9}
here=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$here/../shared} "$here/bench/synth_models.sh" "$B" "$OUT"

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$here" rev-parse --short HEAD)," \
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
# figures from different CPUs do not compare; THP must not be "never" for 2 MiB pages
echo "# host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "model $(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "$(nproc) CPUs, THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)"
for t in Q8_0 Q4_0; do
    m="$OUT/smollm2-135m-$t.gguf"
    for s in 16 64; do
        "$B/bench/bench_engine" "$m" -t 2 -p 128 -n 128 -s "$s" -P 128 -r 3 -b 512 \
            -o "$OUT/engine-smollm2-$t-s$s.json" | sed -n 's/^\(prefill\|decode\)/  smollm2 '"$t"' &/p'
    done
    m="$OUT/llama3.2-1b-$t.gguf"
    "$B/bench/bench_engine" "$m" -t 2 -p 128 -n 16 -s 1 -r 3 -b 512 \
        -o "$OUT/engine-llama1b-$t.json" | sed -n 's/^\(prefill\|decode (1 stream)\)/  llama1b '"$t"' &/p'
done
for t in Q8_0 Q4_0; do
    echo "## bench_serve smollm2-135m $t"
    "$B/bench/bench_serve" "$OUT/smollm2-135m-$t.gguf" --json "$OUT/serve-smollm2-$t.json" | tail -6
done
echo "## bench_prefix smollm2-135m Q8_0"
"$B/bench/bench_prefix" "$OUT/smollm2-135m-Q8_0.gguf" --json "$OUT/prefix-smollm2-Q8_0.json" | tail -8
echo "JSON in $OUT; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
