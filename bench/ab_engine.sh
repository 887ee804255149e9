#!/bin/sh
# Two builds of bench_engine (before and after a change) on one model, in alternating whole
# runs: A B, then B A, and so on, so that the host's drift (its speed moves by up to 2x within
# minutes) falls on both sides. Per pair and stream count it prints both figures; at the end,
# per stream count, the median of B/A over the pairs and how many pairs B won.
#
# Whole runs, not modes switched step by step inside one run: a decode step rereads most of
# the K/V the step before read, so one mode's cache state would carry into the other's step
# (bench/RESULTS.md, 2026-12-03: a prefetch hint looked 8-15% faster that way and was even
# in whole runs).
#
# usage: bench/ab_engine.sh BENCH_ENGINE_A BENCH_ENGINE_B MODEL.gguf [PAIRS [STREAMS...]]
#   PAIRS defaults to 3, STREAMS to "16 64" (1 = single-stream decode). Each run is
#   bench_engine -t 2 -p 8 -n 128 -s S -P 128 -r 1 -b 512 (THREADS=N changes -t).
#   Copy a build's build/release/bench/bench_engine aside before rebuilding: it links the
#   engine statically.
set -eu
[ $# -ge 3 ] || { sed -n '12,16p' "$0" >&2; exit 2; }
A=$1
B=$2
M=$3
PAIRS=${4:-3}
[ $# -ge 4 ] && shift 4 || shift 3
STREAMS=${*:-16 64}
THREADS=${THREADS:-2}
for x in "$A" "$B"; do [ -x "$x" ] || { echo "ab_engine.sh: $x is not executable" >&2; exit 1; }; done
[ -f "$M" ] || { echo "ab_engine.sh: no model $M" >&2; exit 1; }
case $PAIRS in '' | *[!0-9]* | 0) echo "ab_engine.sh: PAIRS must be a positive number" >&2; exit 2 ;; esac
for s in $STREAMS; do
    case $s in '' | *[!0-9]* | 0) echo "ab_engine.sh: stream count '$s' is not a positive number" >&2; exit 2 ;; esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# tok/s of one run: bench_engine's "decode (S streams, total)" line, or "decode (1 stream)"
run() { # binary streams
    if [ "$2" = 1 ]; then label='decode (1 stream)'; else label="decode ($2 streams, total)"; fi
    "$1" "$M" -t "$THREADS" -p 8 -n 128 -s "$2" -P 128 -r 1 -b 512 -o "$tmp/out.json" >"$tmp/run.txt" 2>&1 ||
        { echo "ab_engine.sh: $1 failed:" >&2; cat "$tmp/run.txt" >&2; exit 1; }
    v=$(awk -v l="$label" 'index($0, l) == 1 {print $NF}' "$tmp/run.txt")
    [ -n "$v" ] || { echo "ab_engine.sh: no '$label' line from $1" >&2; exit 1; }
    echo "$v"
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $M, $PAIRS pairs, $THREADS threads; A=$A B=$B"
printf '%-6s %8s %10s %10s %8s\n' pair streams A B B/A
i=1
while [ "$i" -le "$PAIRS" ]; do
    for s in $STREAMS; do
        if [ $((i % 2)) = 1 ]; then a=$(run "$A" "$s"); b=$(run "$B" "$s")
        else b=$(run "$B" "$s"); a=$(run "$A" "$s"); fi
        r=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.4f", b / a}')
        printf '%-6s %8s %10s %10s %8s\n' "$i" "$s" "$a" "$b" "$r"
        echo "$s $r" >>"$tmp/ratios"
    done
    i=$((i + 1))
done
for s in $STREAMS; do
    awk -v s="$s" '$1 == s {r[n++] = $2; if ($2 > 1) w++}
        END {
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (r[j] < r[i]) {t = r[i]; r[i] = r[j]; r[j] = t}
            m = n % 2 ? r[(n - 1) / 2] : (r[n / 2 - 1] + r[n / 2]) / 2
            printf "streams %s: median B/A %.4f, B higher in %d of %d pairs\n", s, m, w, n
        }' "$tmp/ratios"
done
