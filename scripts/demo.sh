#!/usr/bin/env bash
# Installs what is needed, builds llamad, starts the daemon on a shipped test model and
# prints a story with `llamactl generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
model="${LLAMAD_DEMO_MODEL:-$root/../shared/models/TinyStories-656K-Q8_0.gguf}"
prompt="${1:-Once upon a time}"

bash scripts/deps.sh
[[ -f build/release/build.ninja ]] || meson setup build/release --buildtype=release
meson compile -C build/release

llamad=build/release/daemon/llamad
llamactl=build/release/client/llamactl
for b in "$llamad" "$llamactl"; do
  [[ -x $b ]] || { echo "demo: $b is not built yet (see the open issues)" >&2; exit 1; }
done
[[ -f $model ]] || { echo "demo: model not found: $model" >&2; exit 1; }

rundir=$(mktemp -d /tmp/llamad-demo.XXXXXX)
sock="$rundir/llamad.sock"
"$llamad" --socket "$sock" --model "tinystories=$model" --log-level warn &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$rundir"' EXIT
for _ in $(seq 1 100); do
  [[ -S $sock ]] && break
  kill -0 "$pid" 2>/dev/null || { echo "demo: llamad exited early" >&2; exit 1; }
  sleep 0.1
done
# The prompt, then the story as it streams. This model sometimes spells its end marker out of
# ordinary tokens, so the marker is also a stop string.
printf '%s' "$prompt"
"$llamactl" --socket "$sock" generate -n 256 --temperature 0.8 --seed 42 \
  --stop '<|end_story|>' "$prompt"
echo
