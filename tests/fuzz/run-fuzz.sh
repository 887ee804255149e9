#!/usr/bin/env bash
# Smoke run of one libFuzzer target: run-fuzz.sh BINARY SECONDS SEED_CORPUS_DIR [extra libFuzzer args]
# New inputs go to a scratch corpus; the seed corpus in the source tree is only read.
# Exits 1 if the target crashes, leaks or times out (libFuzzer's own 77 would read as a skip).
set -euo pipefail
bin=$1 secs=$2 seeds=$3
shift 3
# The sanitizers' reports must fail the run even when meson passes no environment.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
work=$(mktemp -d "${TMPDIR:-/tmp}/llamad-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
"$bin" -max_total_time="$secs" -timeout=10 -error_exitcode=1 -timeout_exitcode=1 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/" "$@" "$work/corpus" "$seeds"
