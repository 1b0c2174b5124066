#!/usr/bin/env bash
# `make test`: the whole suite, as CI runs it. Three builds, each through ctest:
#   1. release build: unit, golden, CLI and conformance tests;
#   2. the same suite under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. libFuzzer targets (clang), each run briefly over its seed corpus.
# Test-time tools (python3 for stdlib scripts, node/npm to fetch the real Gemma vocabulary, clang for the
# fuzzers) are installed from Debian when missing and running as root; otherwise it says what to install.
set -u
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)

need=()
command -v python3 >/dev/null || need+=(python3)
command -v npm >/dev/null || need+=(npm)
command -v clang >/dev/null || need+=(clang)
command -v cmake >/dev/null || need+=(cmake)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "make test: installing ${need[*]} from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || {
      echo "make test: apt-get install ${need[*]} failed"; exit 1; }
  else
    echo "make test: missing ${need[*]}; install them (as root: apt-get install ${need[*]}) and rerun"; exit 1
  fi
fi

total_pass=0; total_fail=0; status=0
run_suite() { # name build-dir ctest-args... ; configure flags come from $CFG
  local name=$1 dir=$2; shift 2
  echo "=== $name ==="
  if ! cmake -S . -B "$dir" $CFG >/dev/null || ! cmake --build "$dir" -j "$JOBS" >"$dir/build-output.log" 2>&1; then
    tail -n 40 "$dir/build-output.log" 2>/dev/null; echo "make test: $name build failed"; status=1; total_fail=$((total_fail+1)); return
  fi
  local out
  out=$(cd "$dir" && ctest --output-on-failure -j "$JOBS" "$@" 2>&1); local rc=$?
  echo "$out" | grep -E "Test +#|tests passed|tests failed|\*\*\*|CHECK failed|error" | grep -v "^\s*$" | head -n 200
  local n_total n_fail
  n_total=$(echo "$out" | sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' | tail -n1)
  n_fail=$(echo "$out" | sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' | tail -n1)
  n_total=${n_total:-0}; n_fail=${n_fail:-0}
  if [ "$rc" != 0 ] || [ "$n_total" = 0 ]; then status=1; [ "$n_fail" = 0 ] && n_fail=1; fi
  total_pass=$((total_pass + n_total - n_fail)); total_fail=$((total_fail + n_fail))
}

CFG="-DCMAKE_BUILD_TYPE=Release" run_suite "release build" build
CFG="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DGM_SANITIZE=ON" run_suite "ASan + UBSan build" build-asan -E '^fuzz\.'
CFG="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DGM_FUZZ=ON -DCMAKE_C_COMPILER=clang" run_suite "fuzz targets (clang, libFuzzer)" build-fuzz -R '^fuzz\.'

echo "total: $total_pass passed, $total_fail failed"
exit $status
