#!/bin/sh
# Issue 9's measures, llama.cpp and llamad side by side on the same synthetic GGUF files, on
# this machine, with 2 threads, one right after the other (the host's speed moves by up to 2x
# within minutes: only figures taken back to back compare). Per round and model:
#   single-stream prefill (128-token prompt) and decode: llama.cpp's llama-bench pp128 / tgN
#     against bench_engine -p 128 -n N -s 1;
#   aggregate decode of 16 and 64 streams, 128-token prompts, 128 generated (SmolLM2 only):
#     llama.cpp's llama-batched-bench S_TG against bench_engine -s S -P 128 "decode (S
#     streams, total)".
# It prints one table per round (llama.cpp, llamad, llamad / llama.cpp, the issue's target
# ratio) and writes every figure as JSON lines.
#
# usage: bench/vs_llamacpp.sh LLAMACPP_BIN_DIR [BUILD_DIR [OUT_DIR]]
#   LLAMACPP_BIN_DIR holds llama-bench and llama-batched-bench (a CPU build of llama.cpp);
#   BUILD_DIR defaults to build/release, OUT_DIR to /tmp/llamad-issue9 (the synthetic files
#   are written there by bench/synth_models.sh when missing).
#   ROUNDS=N (default 2), MODELS="smollm2-135m-Q8_0 ..." (default: the four files),
#   SHARED=/path/to/shared (the test data; default ../shared beside the repository).
set -eu
[ $# -ge 1 ] || { sed -n '13,18p' "$0" >&2; exit 2; }
LB=$1
B=${2:-build/release}
OUT=${3:-/tmp/llamad-issue9}
ROUNDS=${ROUNDS:-2}
MODELS=${MODELS:-smollm2-135m-Q8_0 smollm2-135m-Q4_0 llama3.2-1b-Q8_0 llama3.2-1b-Q4_0}
here=$(cd "$(dirname "$0")/.." && pwd)
for x in "$LB/llama-bench" "$LB/llama-batched-bench" "$B/bench/bench_engine"; do
    [ -x "$x" ] || { echo "vs_llamacpp.sh: missing $x" >&2; exit 1; }
done
SHARED=${SHARED:-$here/../shared} "$here/bench/synth_models.sh" "$B" "$OUT"
J="$OUT/vs_llamacpp.jsonl"
rev=$(git -C "$here" rev-parse --short HEAD)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# llama-bench's markdown table: the t/s mean of test $2 ("pp128", "tg32") in file $1
lb_get() { awk -F'|' -v t="$2" '$0 ~ "^\\|" && $(NF-2) ~ " " t " " {split($(NF-1), a, " "); print a[1]}' "$1"; }
# llama-batched-bench's table: S_TG t/s of the row with B = $2
bb_get() { awk -F'|' -v b="$2" '$0 ~ "^\\|" && $4 + 0 == b && $2 + 0 > 0 {print $9 + 0}' "$1"; }
# bench_engine's table: the tok/s of the line that starts with $2
be_get() { awk -v k="$2" 'index($0, k) == 1 {print $NF}' "$1"; }
run() { # out_file command...: runs it, output in out_file; on failure shows its stderr and stops
    o=$1
    shift
    if ! "$@" >"$o" 2>"$tmp/err"; then
        echo "vs_llamacpp.sh: failed: $*" >&2
        tail -20 "$tmp/err" >&2
        exit 1
    fi
}
row() { # measure llama.cpp llamad target model round
    [ -n "$2" ] && [ -n "$3" ] || echo "vs_llamacpp.sh: $1: a figure is missing from the programs' output (their table format?)" >&2
    r=$(awk -v a="$2" -v b="$3" 'BEGIN {if (a > 0 && b > 0) printf "%.2f", b / a; else print "?"}')
    printf '  %-34s %10s %10s %8s %8s\n' "$1" "$2" "$3" "$r" "$4"
    printf '{"round":%s,"model":"%s","measure":"%s","llama_cpp":%s,"llamad":%s,"ratio":"%s","target":"%s","time":"%s","commit":"%s"}\n' \
        "$6" "$5" "$1" "${2:-null}" "${3:-null}" "$r" "$4" "$(date -u +%FT%TZ)" "$rev" >>"$J"
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), llamad $rev," \
     "llama.cpp $("$LB/llama-bench" --version 2>&1 | grep -m1 -o 'version: .*' || echo '?')," \
     "load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
for round in $(seq 1 "$ROUNDS"); do
    echo "## round $round   (llama.cpp tok/s, llamad tok/s, llamad / llama.cpp, target)"
    for name in $MODELS; do
        m="$OUT/$name.gguf"
        case $name in llama3.2-1b*) n=32 ;; *) n=128 ;; esac
        run "$tmp/lb" "$LB/llama-bench" -m "$m" -t 2 -p 128 -n "$n" -r 3
        run "$tmp/be" "$B/bench/bench_engine" "$m" -t 2 -p 128 -n "$n" -s 1 -r 3 -b 512 -o "$tmp/be.json"
        row "$name prefill 128" "$(lb_get "$tmp/lb" pp128)" "$(be_get "$tmp/be" 'prefill (1 stream)')" ">= 1" "$name" "$round"
        row "$name decode 1 stream" "$(lb_get "$tmp/lb" "tg$n")" "$(be_get "$tmp/be" 'decode (1 stream)')" ">= 1" "$name" "$round"
        case $name in smollm2*) ;; *) continue ;; esac
        run "$tmp/bb" "$LB/llama-batched-bench" -m "$m" -t 2 -c 16896 -b 2048 -ub 512 -npp 128 \
            -ntg 128 -npl 16,64
        for s in 16 64; do
            run "$tmp/be" "$B/bench/bench_engine" "$m" -t 2 -p 128 -n 128 -s "$s" -P 128 -r 3 \
                -b 512 -o "$tmp/be.json"
            tgt=">= 3"; [ "$s" = 64 ] && tgt=">= 6"
            row "$name decode $s streams" "$(bb_get "$tmp/bb" "$s")" \
                "$(be_get "$tmp/be" "decode ($s streams, total)")" "$tgt" "$name" "$round"
        done
    done
done
echo "JSON lines appended to $J; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
