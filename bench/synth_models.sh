#!/bin/sh
# Writes the four synthetic files issue 9 is measured on (SmolLM2-135M and Llama-3.2-1B
# shapes, Q8_0 and Q4_0; bench/README.md, gen_model) into OUT_DIR, each unless it is there.
#
# usage: bench/synth_models.sh [BUILD_DIR [OUT_DIR]]   (defaults: build/release, /tmp/llamad-issue9)
#        SHARED=/path/to/shared  (the vocabularies; default ../shared beside the repository)
set -eu
B=${1:-build/release}
OUT=${2:-/tmp/llamad-issue9}
here=$(cd "$(dirname "$0")/.." && pwd)
V=${SHARED:-$here/../shared}/models/llama.cpp-vocab
for f in "$V/ggml-vocab-gpt-2.gguf" "$V/llama3-vocab.gguf"; do
    [ -f "$f" ] || { echo "synth_models.sh: missing $f (set SHARED)" >&2; exit 1; }
done
[ -x "$B/bench/gen_model" ] || { echo "synth_models.sh: missing $B/bench/gen_model (build first)" >&2; exit 1; }
mkdir -p "$OUT"

gen() { # preset type vocab
    f="$OUT/$1-$2.gguf"
    [ -f "$f" ] || "$B/bench/gen_model" "$1" "$2" "$3" "$f" >/dev/null
}
gen smollm2-135m Q8_0 "$V/ggml-vocab-gpt-2.gguf"
gen smollm2-135m Q4_0 "$V/ggml-vocab-gpt-2.gguf"
gen llama3.2-1b Q8_0 "$V/llama3-vocab.gguf"
gen llama3.2-1b Q4_0 "$V/llama3-vocab.gguf"
