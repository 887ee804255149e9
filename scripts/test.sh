#!/usr/bin/env bash
# Installs what is needed, builds and runs llamad's whole test suite.
#   release build (gcc)                         always
#   portable build (-Dnative=false: no AVX)     unless LLAMAD_TEST_PORTABLE=0
#   ASan+UBSan build of the whole suite         unless LLAMAD_TEST_ASAN=0
#   libFuzzer smoke runs (clang, -Dfuzz=true)   when clang is present, unless LLAMAD_TEST_FUZZ=0
# The last line is "N passed, N failed" summed over every build; the exit status is non-zero
# on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }

jobs=$(nproc 2>/dev/null || echo 2)
logs=()
setup_failed=0

run_build() { # name, env..., -- meson args...
  local name=$1; shift
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  local dir="$root/build/$name"
  echo "=== $name build ($dir)"
  if [[ ! -f "$dir/build.ninja" ]]; then
    if ! env "${envs[@]}" meson setup "$dir" "$@"; then
      echo "=== $name: meson setup failed"; setup_failed=$((setup_failed + 1)); return
    fi
  fi
  if ! meson compile -C "$dir" -j "$jobs"; then
    echo "=== $name: build failed"; setup_failed=$((setup_failed + 1)); return
  fi
  rm -f "$dir/meson-logs/testlog.json"
  meson test -C "$dir" --num-processes "$jobs" --print-errorlogs "${test_args[@]}" || true
  if [[ -f "$dir/meson-logs/testlog.json" ]]; then
    logs+=("$dir/meson-logs/testlog.json")
  elif [[ $(meson test -C "$dir" --list "${test_args[@]}" 2>/dev/null) == *"No suitable tests defined"* ]]; then
    echo "=== $name: no tests defined in this build"
  else
    echo "=== $name: no test log"; setup_failed=$((setup_failed + 1))
  fi
}

test_args=()
run_build release -- --buildtype=release

if [[ ${LLAMAD_TEST_PORTABLE:-1} != 0 ]]; then
  # The build a distribution package would ship: baseline x86-64 (or the host's generic
  # target), so the kernels' and attention's portable paths run the whole suite too.
  run_build portable -- --buildtype=release -Dnative=false
fi

if [[ ${LLAMAD_TEST_ASAN:-1} != 0 ]]; then
  # Timeouts are longer under the sanitizers. Every UBSan report is fatal
  # (-fno-sanitize-recover), whatever environment a test gets; ASan's always are.
  test_args=(--timeout-multiplier 4)
  run_build asan -- --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=undefined
  test_args=()
fi

if [[ ${LLAMAD_TEST_FUZZ:-1} != 0 ]] && command -v clang >/dev/null; then
  test_args=(--suite fuzz)
  run_build fuzz CC=clang -- --buildtype=debugoptimized -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=undefined
  test_args=()
fi

python3 - "$setup_failed" "${logs[@]}" <<'PY'
import json, sys
failed = int(sys.argv[1])
passed = skipped = 0
for path in sys.argv[2:]:
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line).get("result")
            if r in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif r == "SKIP":
                skipped += 1
            else:
                failed += 1
                print("failed:", json.loads(line).get("name"), r, "(" + path + ")")
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
PY
