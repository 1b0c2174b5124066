#!/usr/bin/env bash
# `gemma train` end to end on a tiny config (d 64, 2 layers, vocab 1024) and shards made by `gemma data
# tokenize` with the demo tokenizer: the loss falls; the CSV log and the SVG curve are well-formed; a run
# killed with SIGKILL (from outside after a checkpoint, and at a step by the test hook) and a run killed
# half-way through writing a checkpoint both resume to the exact losses of an uninterrupted run; a corrupt
# checkpoint is refused naming the file; a NaN step is skipped and too many in a row stop the run; the
# checkpoint loads in `gemma generate` and as --init; bad flags, config and data are exit 2 / exit 1
# naming the problem, never a signal.
# Usage: bash tests/cli/test_train.sh BUILD_DIR
set -u
B=${1:?usage: test_train.sh BUILD_DIR}
G=$B/gemma
[ -x "$G" ] || { echo "FAIL: $G not built"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 needed"; exit 1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=86"
unset GM_TEST_NAN_STEP GM_TEST_KILL_AT_STEP GM_TEST_KILL_IN_CHECKPOINT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d /tmp/gm_train.XXXXXX); trap 'rm -rf "$tmp"' EXIT

# expect_fail CODE NEEDLE CMD...: exit code CODE and NEEDLE in stderr
expect_fail() {
  local code=$1 needle=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc = "$code" ] && grep -qF -- "$needle" "$tmp/err"; then ok
  else bad "'$*' exited $rc (want $code), stderr: $(tail -c 400 "$tmp/err")"; fi
}
# the columns that must match between runs: all but tokens_per_s
losses() { cut -d, -f1-4,6 "$1"; }

# ---- data: 60 documents of play-like lines (a fixed LCG), tokenized with the demo tokenizer ----------
awk 'BEGIN { s = 7; split("ROMEO JULIET KING QUEEN LORD", who, " ");
  split("my lord the king is dead|I pray you hear me speak|what light through yonder window breaks|" \
        "the night is long and cold|give me thy hand good friend|we shall meet again tomorrow", ph, "|");
  for (d = 0; d < 60; d++) { for (l = 0; l < 12; l++) {
      s = (s * 75 + 74) % 65537; w = who[s % 5 + 1]; s = (s * 75 + 74) % 65537; p = ph[s % 6 + 1];
      print w ": " p "." }
    print "<|endoftext|>" } }' >"$tmp/text.txt"
"$G" data tokenize -q --tokenizer models/tiny-gemma/tokenizer.model "$tmp/text.txt" --out "$tmp/shards" \
  && ok || bad "gemma data tokenize failed"
cat >"$tmp/cfg.json" <<'EOF'
{"model_type": "gemma", "vocab_size": 1024, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 1, "head_dim": 16, "intermediate_size": 128, "max_position_embeddings": 128,
 "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
 "torch_dtype": "float32"}
EOF
ARGS=(--config "$tmp/cfg.json" --data "$tmp/shards" --seq 32 --batch 4 --accum 2 --steps 40 --lr 3e-3 --warmup 4
      --eval-every 10 --eval-batches 2 --save-every 10 --threads 2 --seed 3)

# ---- 1. an uninterrupted run: loss falls, log, curve, checkpoints ------------------------------------
"$G" train "${ARGS[@]}" --out "$tmp/a" 2>"$tmp/a.err" && ok || bad "reference run failed: $(tail -c 600 "$tmp/a.err")"
grep -q "^step 40/40 | loss" "$tmp/a.err" && grep -q "tok/s | ETA" "$tmp/a.err" && grep -q "| val " "$tmp/a.err" \
  && grep -q "parameters" "$tmp/a.err" && ok || bad "progress lines: $(head -c 600 "$tmp/a.err")"
python3 - "$tmp/a/train_log.csv" <<'PY' && ok || bad "train_log.csv"
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [int(r["step"]) for r in rows] == list(range(1, 41)), "steps 1..40"
loss = [float(r["loss"]) for r in rows]
assert all(math.isfinite(x) for x in loss)
first, last = loss[0], sum(loss[-5:]) / 5
assert first > 6.0 and last < first - 1.0, f"loss did not fall: {first} -> {last}"
val = {int(r["step"]): float(r["val_loss"]) for r in rows if r["val_loss"]}
assert sorted(val) == [10, 20, 30, 40], val
assert val[40] < val[10], val
assert all(float(r["lr"]) > 0 and float(r["grad_norm"]) > 0 and float(r["tokens_per_s"]) > 0 for r in rows)
print(f"loss {first:.3f} -> {last:.3f}, val {val[10]:.3f} -> {val[40]:.3f}")
PY
python3 - "$tmp/a/loss.svg" <<'PY' && ok || bad "loss.svg is not a well-formed SVG with two curves"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg"
lines = root.findall("{http://www.w3.org/2000/svg}polyline")
assert len(lines) == 2 and len(lines[0].get("points").split()) == 40 and len(lines[1].get("points").split()) == 4
PY
[ "$(readlink "$tmp/a/latest")" = checkpoint-40 ] && [ -d "$tmp/a/checkpoint-30" ] && [ ! -e "$tmp/a/checkpoint-20" ] \
  && ok || bad "checkpoints (keep 2, latest): $(ls "$tmp/a")"
for f in config.json model.safetensors tokenizer.model optimizer.safetensors trainer_state.json; do
  [ -s "$tmp/a/latest/$f" ] || bad "checkpoint lacks $f"
done
got=$("$G" generate -m "$tmp/a/latest" -p "ROMEO:" -n 8 --temp 0 --output-ids -q) \
  && python3 -c 'import json,sys; assert len(json.loads(sys.argv[1])) == 8' "$got" && ok \
  || bad "gemma generate on the checkpoint: '$got'"

# ---- 2. kill -9 from outside once a checkpoint exists, then --resume (flags from the checkpoint) ------
"$G" train "${ARGS[@]}" --out "$tmp/b" 2>"$tmp/b.err" & pid=$!
for _ in $(seq 1 3000); do [ -L "$tmp/b/latest" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.01; done
kill -9 $pid 2>/dev/null; { wait $pid; } 2>/dev/null; rc=$?
if [ $rc = 137 ]; then
  ok
  "$G" train --out "$tmp/b" --resume 2>"$tmp/b2.err" && ok || bad "resume after kill -9: $(tail -c 600 "$tmp/b2.err")"
  grep -q "resumed at step" "$tmp/b2.err" && ok || bad "no 'resumed at step' line"
  diff <(losses "$tmp/a/train_log.csv") <(losses "$tmp/b/train_log.csv") >/dev/null && ok \
    || bad "losses after kill -9 + resume differ from the uninterrupted run"
else
  echo "note: the run finished before kill -9 reached it (exit $rc); the hook below kills mid-run instead"
fi

# ---- 3. killed at step 27 (SIGKILL, test hook), resumed with the whole command line -------------------
{ GM_TEST_KILL_AT_STEP=27 "$G" train "${ARGS[@]}" --out "$tmp/c" 2>"$tmp/c.err"; } 2>/dev/null; rc=$?
[ $rc = 137 ] && [ "$(readlink "$tmp/c/latest")" = checkpoint-20 ] && ok \
  || bad "kill at step 27: exit $rc, $(ls "$tmp/c")"
[ "$(tail -n 1 "$tmp/c/train_log.csv" | cut -d, -f1)" = 26 ] && ok || bad "the killed run's log should end at step 26"
"$G" train "${ARGS[@]}" --out "$tmp/c" --resume 2>"$tmp/c2.err" && ok || bad "resume: $(tail -c 600 "$tmp/c2.err")"
diff <(losses "$tmp/a/train_log.csv") <(losses "$tmp/c/train_log.csv") >/dev/null && ok \
  || bad "losses after kill + resume differ: $(diff <(losses "$tmp/a/train_log.csv") \
                                                  <(losses "$tmp/c/train_log.csv") | head -5)"
cmp -s "$tmp/a/checkpoint-40/model.safetensors" "$tmp/c/checkpoint-40/model.safetensors" && ok \
  || bad "the resumed run's final weights differ from the uninterrupted run's"

# ---- 4. SIGKILL half-way through writing the second checkpoint: the first stays valid ----------------
{ GM_TEST_KILL_IN_CHECKPOINT=2 "$G" train "${ARGS[@]}" --out "$tmp/d" 2>"$tmp/d.err"; } 2>/dev/null; rc=$?
[ $rc = 137 ] && [ "$(readlink "$tmp/d/latest")" = checkpoint-10 ] && [ ! -e "$tmp/d/checkpoint-20" ] \
  && [ -d "$tmp/d/.checkpoint-20.tmp" ] && ok || bad "kill in checkpoint: exit $rc, $(ls -a "$tmp/d")"
"$G" generate -m "$tmp/d/latest" --ids 2,3 -n 2 --temp 0 -q >/dev/null && ok \
  || bad "checkpoint-10 unusable after the kill"
"$G" train "${ARGS[@]}" --out "$tmp/d" --resume 2>"$tmp/d2.err" && ok || bad "resume: $(tail -c 600 "$tmp/d2.err")"
diff <(losses "$tmp/a/train_log.csv") <(losses "$tmp/d/train_log.csv") >/dev/null && ok \
  || bad "losses after a kill during a checkpoint differ from the uninterrupted run"
[ ! -e "$tmp/d/.checkpoint-20.tmp" ] && ok || bad "the half-written checkpoint was not cleaned up"

# ---- 5. damaged checkpoints are refused, naming the file ---------------------------------------------
cp -r "$tmp/a/checkpoint-40" "$tmp/bad"
printf '\x55' | dd of="$tmp/bad/model.safetensors" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect_fail 1 "model.safetensors: checksum mismatch" \
  "$G" train "${ARGS[@]}" --steps 50 --out "$tmp/e" --resume "$tmp/bad"
rm -rf "$tmp/bad"; cp -r "$tmp/a/checkpoint-40" "$tmp/bad"; truncate -s 1000 "$tmp/bad/optimizer.safetensors"
expect_fail 1 "optimizer.safetensors: 1000 bytes" "$G" train "${ARGS[@]}" --steps 50 --out "$tmp/e" --resume "$tmp/bad"
[ ! -e "$tmp/e/train_log.csv" ] && ok || bad "a refused resume still wrote output"
expect_fail 1 "not a training checkpoint" "$G" train "${ARGS[@]}" --out "$tmp/e" --resume models/tiny-gemma
expect_fail 1 "no checkpoint here" "$G" train "${ARGS[@]}" --out "$tmp/e" --resume "$tmp/shards"

# ---- 6. non-finite steps: one is skipped and said so; three in a row stop the run --------------------
GM_TEST_NAN_STEP=5 "$G" train "${ARGS[@]}" --steps 8 --save-every 0 --out "$tmp/f" 2>"$tmp/f.err" && ok \
  || bad "a NaN step should not stop the run: $(tail -c 400 "$tmp/f.err")"
grep -q "^step 5/8 | skipped (1 in a row, limit 5): .*loss is nan" "$tmp/f.err" && ok \
  || bad "skip message: $(grep 'step 5' "$tmp/f.err")"
[ "$(sed -n 6p "$tmp/f/train_log.csv" | cut -d, -f1,2)" = "5,nan" ] && ok || bad "CSV row of the skipped step"
grep -q '"updates": 7' "$tmp/f/latest/trainer_state.json" && ok || bad "7 updates expected after 8 steps with 1 skipped"
GM_TEST_NAN_STEP=3-100 expect_fail 1 "3 steps in a row skipped for non-finite values (--max-skips 3)" \
  "$G" train "${ARGS[@]}" --max-skips 3 --out "$tmp/g"

# ---- 7. --init from a checkpoint continues from its weights ------------------------------------------
"$G" train --init "$tmp/a/latest" --data "$tmp/shards" --seq 32 --batch 4 --steps 3 --lr 1e-4 --eval-every 0 \
  --out "$tmp/h" 2>"$tmp/h.err" && ok || bad "--init from a checkpoint: $(tail -c 400 "$tmp/h.err")"
python3 - "$tmp/a/train_log.csv" "$tmp/h/train_log.csv" <<'PY' && ok \
  || bad "--init did not start from the trained weights"
import csv, sys
a = [float(r["loss"]) for r in csv.DictReader(open(sys.argv[1]))]
h = [float(r["loss"]) for r in csv.DictReader(open(sys.argv[2]))]
assert h[0] < a[0] - 1.0, (a[0], h[0])
PY
[ -s "$tmp/h/latest/tokenizer.model" ] && ok || bad "--init's tokenizer was not carried into the checkpoint"
"$G" train "${ARGS[@]}" --steps 2 --warmup 0 --dtype bf16 --out "$tmp/i" 2>/dev/null \
  && "$G" info -m "$tmp/i/latest" 2>&1 \
  | grep -q "BF16" && ok || bad "--dtype bf16 checkpoint"

# ---- 8. bad flags, config and data -------------------------------------------------------------------
expect_fail 2 "bad value for --seq" "$G" train "${ARGS[@]}" --seq abc --out "$tmp/x"
expect_fail 2 "unknown option '--bogus'" "$G" train "${ARGS[@]}" --bogus --out "$tmp/x"
expect_fail 2 "bad value for --decay" "$G" train "${ARGS[@]}" --decay sqrt --out "$tmp/x"
expect_fail 2 "--out DIR is required" "$G" train "${ARGS[@]}"
expect_fail 2 "--data DIR is required" "$G" train --config "$tmp/cfg.json" --out "$tmp/x"
expect_fail 2 "no model" "$G" train --data "$tmp/shards" --out "$tmp/x"
expect_fail 2 "--warmup 50 is longer than --steps 40" "$G" train "${ARGS[@]}" --warmup 50 --out "$tmp/x"
expect_fail 1 "nonexistent.json" "$G" train "${ARGS[@]}" --config "$tmp/nonexistent.json" --out "$tmp/x"
sed 's/"vocab_size": 1024/"vocab_size": 512/' "$tmp/cfg.json" >"$tmp/small.json"
expect_fail 1 "tokenized with a vocabulary of 1024, but the model's vocab_size is 512" \
  "$G" train "${ARGS[@]}" --config "$tmp/small.json" --out "$tmp/x"
sed 's/"model_type": "gemma"/"model_type": "llama"/' "$tmp/cfg.json" >"$tmp/llama.json"
expect_fail 1 "model_type 'llama' is not supported" "$G" train "${ARGS[@]}" --config "$tmp/llama.json" --out "$tmp/x"
expect_fail 1 "$tmp/nodata" "$G" train "${ARGS[@]}" --data "$tmp/nodata" --out "$tmp/x"
expect_fail 1 "sequence 200 is invalid" "$G" train "${ARGS[@]}" --seq 200 --out "$tmp/x"
expect_fail 1 "already holds checkpoints" "$G" train "${ARGS[@]}" --out "$tmp/a"
expect_fail 1 "no such checkpoint or output directory" "$G" train "${ARGS[@]}" --out "$tmp/empty" --resume

echo "test_train: $pass passed, $fail failed"
[ $fail = 0 ]
