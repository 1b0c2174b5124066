#!/usr/bin/env bash
# `make test`: the whole suite, as CI runs it. Four builds, each through ctest:
#   1. release build: unit, golden, CLI and conformance tests;
#   2. the same suite under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. libFuzzer targets (clang), each run briefly over its seed corpus;
#   4. aarch64 cross build (Debian's gcc-aarch64-linux-gnu) whose kernel and numerics tests run under
#      qemu-user, so the NEON kernels run too (the dot product variant and the one without, and both
#      must give the same logits bits). `tests/run_all.sh arm` runs this stage alone.
# Test-time tools (python3 for stdlib scripts, node/npm to fetch the real Gemma vocabulary, clang for the
# fuzzers, OpenMPI for the distributed trainer) are installed from Debian when missing and running as root; otherwise it says what to install.
set -u
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
ONLY=${1:-}
case "$ONLY" in ""|arm) ;; *) echo "usage: tests/run_all.sh [arm]"; exit 2 ;; esac

need=()
if [ -z "$ONLY" ]; then
  command -v python3 >/dev/null || need+=(python3)
  command -v npm >/dev/null || need+=(npm)
  command -v clang >/dev/null || need+=(clang)
  # distributed training (cli.mpi): MPI is found when CMake configures, so it must be here before that
  { command -v mpirun >/dev/null && command -v mpicc >/dev/null; } || need+=(openmpi-bin libopenmpi-dev)
fi
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
count_ctest() { # ctest-output rc: prints the per-test lines and adds the counts to the totals
  local out=$1 rc=$2 n_total n_fail
  echo "$out" | grep -E "Test +#|tests passed|tests failed|\*\*\*|CHECK failed|error" | grep -v "^\s*$" | head -n 200
  n_total=$(echo "$out" | sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' | tail -n1)
  n_fail=$(echo "$out" | sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' | tail -n1)
  n_total=${n_total:-0}; n_fail=${n_fail:-0}
  if [ "$rc" != 0 ] || [ "$n_total" = 0 ]; then status=1; [ "$n_fail" = 0 ] && n_fail=1; fi
  total_pass=$((total_pass + n_total - n_fail)); total_fail=$((total_fail + n_fail))
}

run_suite() { # name build-dir ctest-args... ; configure flags come from $CFG
  local name=$1 dir=$2; shift 2
  echo "=== $name ==="
  if ! cmake -S . -B "$dir" $CFG >/dev/null || ! cmake --build "$dir" -j "$JOBS" >"$dir/build-output.log" 2>&1; then
    tail -n 40 "$dir/build-output.log" 2>/dev/null; echo "make test: $name build failed"; status=1; total_fail=$((total_fail+1)); return
  fi
  local out
  out=$(cd "$dir" && ctest --output-on-failure -j "$JOBS" "$@" 2>&1); local rc=$?
  count_ctest "$out" "$rc"
}

# Stage 4: the NEON kernels, cross-built for aarch64 and run under qemu-user. qemu's default CPU ("max")
# has the dot product instructions, cortex-a53 has not: the quantized kernels run both variants and
# their run-time choice, and a Q4_0 GGUF of the demo model must give the same logits bits on both
# (and with 1 and 2 threads). Builds only the targets it runs. Not run (and said so, never counted as
# passing) where the cross tools are missing and cannot be installed.
ARM_TESTS="dtype vec matmul quant golden gguf threads train_grad"
arm_stage() {
  local dir=build-arm
  echo "=== aarch64 cross build, tests under qemu-user (NEON) ==="
  case "$(uname -m)" in aarch64|arm64)
    echo "make test: this machine is aarch64: the release build above ran the NEON kernels natively"; return ;;
  esac
  local qemu arm_need=()
  arm_have() {
    qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
    arm_need=()
    command -v aarch64-linux-gnu-gcc >/dev/null || arm_need+=(gcc-aarch64-linux-gnu)
    [ -e /usr/aarch64-linux-gnu/lib/crt1.o ] || arm_need+=(libc6-dev-arm64-cross)
    [ -n "$qemu" ] || arm_need+=(qemu-user)
  }
  arm_have
  if [ ${#arm_need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "make test: installing ${arm_need[*]} from Debian"
    apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${arm_need[@]}" >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${arm_need[@]/qemu-user/qemu-user-static}" >/dev/null; }
    arm_have
  fi
  if [ ${#arm_need[@]} -gt 0 ]; then
    arm_skipped="missing ${arm_need[*]} (as root: apt-get install ${arm_need[*]})"
    echo "make test: ARM stage NOT run: $arm_skipped"; return
  fi
  local targets=(gemma) t
  for t in $ARM_TESTS; do targets+=("test_$t"); done
  mkdir -p "$dir"
  if ! cmake -S . -B "$dir" -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
         >"$dir/configure-output.log" 2>&1 ||
     ! cmake --build "$dir" -j "$JOBS" --target "${targets[@]}" >"$dir/build-output.log" 2>&1; then
    tail -n 40 "$dir/configure-output.log" "$dir/build-output.log" 2>/dev/null
    echo "make test: aarch64 build failed"; status=1; total_fail=$((total_fail+1)); return
  fi
  local re out rc
  re="^unit\.($(echo $ARM_TESTS | tr ' ' '|'))\$"
  out=$(cd "$dir" && ctest --output-on-failure -j "$JOBS" -R "$re" 2>&1); rc=$?
  count_ctest "$out" "$rc"
  echo "--- again on a CPU without the dot product instructions (QEMU_CPU=cortex-a53) ---"
  out=$(cd "$dir" && QEMU_CPU=cortex-a53 ctest --output-on-failure -R '^unit\.quant$' 2>&1); rc=$?
  count_ctest "$out" "$rc"
  # Same logits bits from both quantized-kernel variants and from 1 and 2 threads.
  local tmp q run ids ok=1 f
  tmp=$(mktemp -d); ids=$(seq -s, 2 41); q="$qemu -L /usr/aarch64-linux-gnu"
  if $q "$dir/gemma" convert models/tiny-gemma "$tmp/q4.gguf" --dtype q4_0 >"$tmp/log" 2>&1; then
    for run in "max 1" "max 2" "cortex-a53 1" "cortex-a53 2"; do
      set -- $run
      QEMU_CPU=$1 $q "$dir/gemma" logits -m "$tmp/q4.gguf" --ids "$ids" -t "$2" --out "$tmp/$1-$2.f32" \
        >>"$tmp/log" 2>&1 || ok=0
    done
    for f in max-2 cortex-a53-1 cortex-a53-2; do cmp -s "$tmp/max-1.f32" "$tmp/$f.f32" || ok=0; done
  else
    ok=0
  fi
  if [ $ok = 1 ]; then
    echo "    neon.q4_0_logits_sdot_vs_mull ....... Passed (identical bits: SDOT / no SDOT, 1 / 2 threads)"
    total_pass=$((total_pass+1))
  else
    tail -n 20 "$tmp/log"; echo "    neon.q4_0_logits_sdot_vs_mull ....... ***Failed (logits differ or a run failed)"
    status=1; total_fail=$((total_fail+1))
  fi
  rm -rf "$tmp"
}

arm_skipped=""
if [ -z "$ONLY" ]; then
  CFG="-DCMAKE_BUILD_TYPE=Release" run_suite "release build" build
  CFG="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DGM_SANITIZE=ON" run_suite "ASan + UBSan build" build-asan -E '^fuzz\.'
  CFG="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DGM_FUZZ=ON -DCMAKE_C_COMPILER=clang" run_suite "fuzz targets (clang, libFuzzer)" build-fuzz -R '^fuzz\.'
fi
arm_stage

if [ -n "$arm_skipped" ]; then
  echo "make test: ARM stage NOT run (NEON kernels untested): $arm_skipped"
  [ -n "$ONLY" ] && status=1 # asked for that stage alone: nothing was tested
fi
echo "total: $total_pass passed, $total_fail failed"
exit $status
