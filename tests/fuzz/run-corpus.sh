#!/usr/bin/env bash
# The smoke run of the -Dfuzz_engine=afl build: run-corpus.sh BINARY SECONDS SEED_CORPUS_DIR [libFuzzer args]
# Replays every seed of the corpus through the target's own main() (tests/fuzz/afl_driver.c);
# SECONDS and libFuzzer flags are ignored. Exits non-zero when an input crashes the target.
set -euo pipefail
bin=$1 seeds=$3
shopt -s nullglob
files=("$seeds"/*)
if (( ${#files[@]} == 0 )); then echo "no seeds in $seeds"; exit 1; fi
"$bin" "${files[@]}"
