#!/usr/bin/env bash
# MPI training (issue 4, check 4), through tests/mpi/mpi_train_check (a tiny MQA Gemma, 20 AdamW steps on a
# fixed token stream with a fixed global batch of 8 sequences):
#  - np 1, np 2 (data), np 2 --tp 2 (model), np 4 = data 2 x model 2, np 2 without ZeRO, and a GQA config
#    at np 1 / np 2 --tp 2 / np 4 --tp 2: the same losses and gradient norms within 1e-5 relative;
#  - the alignment hooks (log-probs, hidden state, their backward passes) agree the same way;
#  - ZeRO halves the optimizer state per rank at 2 data ranks (model ranks 1 and 2);
#  - the full parameters gathered after 20 steps of a model-parallel run equal the np 1 run's (max |Δ| at
#    most 1e-4 of max |w|), and every rank assembles bitwise the same ones;
#  - gathering the parameters and moments to the full layout and rebuilding the model and optimizer from
#    them at step 10 changes no loss at all (np 4, ZeRO and model-parallel; np 1);
#  - `gemma train` under mpirun -np 2 (data, then --tp 2) logs the np 1 run's losses within 1e-5.
# Without mpirun it fails saying what to install; in a build configured with -DGM_MPI=OFF it only checks
# that `gemma train --tp 2` is refused with a clear message.
# Usage: test_mpi.sh BUILD_DIR
set -u
BUILD=${1:-build}
if ! command -v mpirun >/dev/null; then
  echo "OpenMPI missing: run make test as root or apt-get install openmpi-bin libopenmpi-dev"
  exit 1
fi
DRV=$BUILD/mpi_train_check
if [ ! -x "$DRV" ]; then
  if grep -q '^GM_MPI:BOOL=OFF' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    # built without MPI on purpose: model parallelism must be refused clearly, the rest is skipped
    out=$("$BUILD/gemma" train --tp 2 --preset tiny --data . --out . 2>&1); rc=$?
    if [ $rc = 1 ] && echo "$out" | grep -q "needs a build with MPI"; then
      echo "MPI checks skipped: $BUILD was configured with -DGM_MPI=OFF (and gemma train --tp 2 says so)"; exit 0
    fi
    echo "FAIL: a build without MPI accepted --tp 2 or failed unclearly (exit $rc): $out"; exit 1
  fi
  echo "$DRV is missing: CMake found no MPI library when $BUILD was configured;" \
       "apt-get install openmpi-bin libopenmpi-dev and configure again"
  exit 1
fi

# root is how the test machines run; the CMA single-copy path needs ptrace rights containers often lack
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# sanitizer builds: what OpenMPI's own threads keep past MPI_Finalize is not ours (tests/mpi/lsan.supp); the
# slow unwinder is what makes their stacks reach OpenMPI's libraries
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/mpi/lsan.supp:print_suppressions=0}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
# 2 cores run 4 ranks; the sanitizer settings go to every rank
MPIRUN="mpirun --oversubscribe -x LSAN_OPTIONS -x ASAN_OPTIONS"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0

run() { # name np driver-args...
  local name=$1 np=$2; shift 2
  if ! timeout 300 $MPIRUN -np "$np" "$DRV" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"; then
    echo "FAIL: mpirun -np $np mpi_train_check $* exited non-zero:"; tail -n 20 "$TMP/$name.err" "$TMP/$name.out"
    fail=1; return 1
  fi
  if ! grep -q "^params_consistent 1$" "$TMP/$name.out"; then
    echo "FAIL: $name: the ranks assembled different full parameters"; fail=1
  fi
  if [ "$(grep -c '^step ' "$TMP/$name.out")" != 20 ]; then
    echo "FAIL: $name: expected 20 steps"; cat "$TMP/$name.out"; fail=1
  fi
}

# compare REF NAME: every step's loss and gradient norm, and the hook sums, within 1e-5 relative
compare() {
  local ref=$1 name=$2
  if ! awk -v tol=1e-5 '
      FNR == NR && /^step / { loss[$2] = $4; norm[$2] = $6; next }
      FNR == NR && /^logp_sum / { for (i = 1; i < NF; i += 2) hook[$i] = $(i + 1); next }
      FNR == NR { next }
      function bad(what, a, b) { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a; return d > tol * m }
      /^step / { n++; if (!($2 in loss)) { print "step " $2 " missing"; err = 1 }
                 if (bad("loss", loss[$2], $4)) { print "step " $2 ": loss " $4 " vs " loss[$2]; err = 1 }
                 if (bad("norm", norm[$2], $6)) { print "step " $2 ": grad norm " $6 " vs " norm[$2]; err = 1 }
                 d = $4 - loss[$2]; if (d < 0) d = -d; if (d / loss[$2] > worst) worst = d / loss[$2] }
      /^logp_sum / { for (i = 1; i < NF; i += 2) if (bad($i, hook[$i], $(i + 1))) {
                       print $i " " $(i + 1) " vs " hook[$i]; err = 1 } }
      END { if (n != 20) { print "expected 20 steps, got " n; err = 1 }
            printf "worst loss difference %.2g relative\n", worst > "/dev/stderr"; exit err }' \
      "$TMP/$ref.out" "$TMP/$name.out" >"$TMP/$name.diff" 2>"$TMP/$name.cmp"; then
    echo "FAIL: $name differs from $ref:"; head -n 20 "$TMP/$name.diff"; fail=1
  else
    echo "ok: $name = $ref ($(cat "$TMP/$name.cmp"))"
  fi
}

bytes() { # name rank -> opt_bytes of that rank
  awk -v r="$2" '$1 == "rank" && $2 == r { print $8 }' "$TMP/$1.out"
}

# max |Δ| of the gathered parameters at most 1e-4 of max |w|
params_match() {
  local name=$1
  if ! awk '/^params_max_diff/ { found = 1; ok = $2 <= 1e-4 * $4; printf "max |dw| %s of max |w| %s\n", $2, $4 }
            END { exit !(found && ok) }' "$TMP/$name.out" >"$TMP/$name.pm"; then
    echo "FAIL: $name: parameters after 20 steps differ from np 1's: $(cat "$TMP/$name.pm")"; fail=1
  else
    echo "ok: $name parameters = np 1's ($(cat "$TMP/$name.pm"))"
  fi
}

run np1 1 --hooks --out "$TMP/np1.f32" || exit 1
run dp2 2 --hooks --ref "$TMP/np1.f32"
run tp2 2 --hooks --tp 2 --ref "$TMP/np1.f32"
run dp2tp2 4 --hooks --tp 2 --ref "$TMP/np1.f32"
run dp2_nozero 2 --zero 0 --accum 2
run gqa1 1 --kv 2
run gqa_tp2 2 --kv 2 --tp 2
run gqa_dp2tp2 4 --kv 2 --tp 2 --accum 2
run reload 4 --tp 2 --reload-at 10
run reload_np1 1 --reload-at 7
[ $fail = 0 ] || exit 1

compare np1 dp2
compare np1 tp2
compare np1 dp2tp2
compare np1 dp2_nozero
compare gqa1 gqa_tp2
compare gqa1 gqa_dp2tp2
params_match tp2
params_match dp2tp2
params_match dp2

# a rebuild from the full layout mid-run: bitwise the same losses
for pair in "dp2tp2 reload" "np1 reload_np1"; do
  set -- $pair
  if ! cmp -s <(grep '^step ' "$TMP/$1.out") <(grep '^step ' "$TMP/$2.out"); then
    echo "FAIL: $2: the losses changed after the optimizer state went through the full layout"
    diff <(grep '^step ' "$TMP/$1.out") <(grep '^step ' "$TMP/$2.out") | head; fail=1
  else
    echo "ok: $2 = $1 bitwise"
  fi
done

# ZeRO: optimizer bytes per rank halve at 2 data ranks (up to one 64-float block of padding per slice)
half_ok() { # full half1 half2
  [ -n "$1" ] && [ -n "$2" ] && [ -n "$3" ] && [ $(($2 + $3)) -eq "$1" ] && [ $((2 * $2 - $1)) -le 1024 ] &&
    [ $(($1 - 2 * $2)) -le 1024 ]
}
b1=$(bytes np1 0); b2a=$(bytes dp2 0); b2b=$(bytes dp2 1)
t1=$(bytes tp2 0); t2a=$(bytes dp2tp2 0); t2b=$(bytes dp2tp2 2)
nz=$(bytes dp2_nozero 0)
echo "optimizer bytes per rank: np 1 $b1; np 2 ZeRO $b2a + $b2b; np 2 without ZeRO $nz;" \
     "tp 2: $t1 per rank, with 2 data ranks $t2a + $t2b"
if ! half_ok "$b1" "$b2a" "$b2b" || ! half_ok "$t1" "$t2a" "$t2b" || [ "$nz" != "$b1" ]; then
  echo "FAIL: ZeRO does not halve the optimizer state per rank"; fail=1
fi

# `gemma train` itself: np 1 (4 sequences a step), np 2 data ranks (2 each), np 2 --tp 2 (4 each); the
# same 20 losses and gradient norms (train_log.csv) within 1e-5 relative
G=$BUILD/gemma
if "$G" train --help 2>&1 | grep -q -- "--tp"; then
  awk 'BEGIN { s = 7; split("ROMEO JULIET KING QUEEN LORD", who, " ");
    split("my lord the king is dead|I pray you hear me speak|what light through yonder window breaks|" \
          "the night is long and cold|give me thy hand good friend|we shall meet again tomorrow", ph, "|");
    for (d = 0; d < 40; d++) { for (l = 0; l < 12; l++) {
        s = (s * 75 + 74) % 65537; w = who[s % 5 + 1]; s = (s * 75 + 74) % 65537; p = ph[s % 6 + 1];
        print w ": " p "." }
      print "<|endoftext|>" } }' >"$TMP/text.txt"
  cat >"$TMP/cfg.json" <<'EOF'
{"model_type": "gemma", "vocab_size": 1024, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 1, "head_dim": 16, "intermediate_size": 128, "max_position_embeddings": 128,
 "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
 "torch_dtype": "float32"}
EOF
  if ! "$G" data tokenize -q --tokenizer models/tiny-gemma/tokenizer.model "$TMP/text.txt" --out "$TMP/shards" \
       2>"$TMP/tok.err"; then
    echo "FAIL: gemma data tokenize: $(tail -c 400 "$TMP/tok.err")"; fail=1
  else
    TA=(--config "$TMP/cfg.json" --data "$TMP/shards" --seq 32 --steps 20 --lr 3e-3 --warmup 4 --eval-every 0
        --save-every 0 --threads 1 --seed 3 -q)
    for r in "g1 1 --batch 4" "g2 2 --batch 2" "gt2 2 --batch 4 --tp 2"; do
      set -- $r
      name=$1 np=$2; shift 2
      if ! timeout 300 $MPIRUN -np "$np" "$G" train "${TA[@]}" "$@" --out "$TMP/$name" \
           >"$TMP/$name.out" 2>"$TMP/$name.err" || [ ! -s "$TMP/$name/train_log.csv" ]; then
        echo "FAIL: mpirun -np $np gemma train $*: $(tail -c 600 "$TMP/$name.err")"; fail=1
      fi
    done
    for name in g2 gt2; do
      if awk -F, -v tol=1e-5 'FNR == 1 { next }
            FNR == NR { loss[$1] = $2; norm[$1] = $4; next }
            { n++; for (k = 2; k <= 4; k += 2) { a = k == 2 ? loss[$1] : norm[$1]; d = $k - a; d = d < 0 ? -d : d
                if (!($1 in loss) || d > tol * (a < 0 ? -a : a)) { print "step " $1 ": " $k " vs " a; err = 1 } } }
            END { if (n != 20) { print "expected 20 steps, got " n; err = 1 } exit err }' \
            "$TMP/g1/train_log.csv" "$TMP/$name/train_log.csv" >"$TMP/$name.diff"; then
        echo "ok: gemma train $name = np 1 (20 losses and gradient norms)"
      else
        echo "FAIL: gemma train $name differs from np 1:"; head -n 10 "$TMP/$name.diff"; fail=1
      fi
    done
  fi
else
  echo "FAIL: $G has no train --tp (the MPI trainer)"; fail=1
fi

[ $fail = 0 ] && echo "MPI training: all checks passed"
exit $fail
