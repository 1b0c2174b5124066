#!/usr/bin/env bash
# The alignment pipeline end to end on the demo model (models/tiny-gemma) and tests/data/align:
#  - gemma sft: the loss falls, eval loss is logged, the checkpoint is an HF directory that `gemma generate
#    --chat` answers training prompts from exactly (the SFT format is the chat format); a killed run resumes
#    to the uninterrupted run's losses bitwise; malformed records stop
#    the run naming file:line, or are listed and skipped with --on-bad skip; usage errors exit 2;
#  - gemma reward train / score: the log, the plots, GemmaForSequenceClassification with score.weight [1, d],
#    rewards of pairs and of one exchange;
#  - gemma rlhf with the reward model and with a programmatic reward: the log (KL exactly 0 at step 1, when
#    policy = reference), the plots, the side-by-side sample files, a checkpoint that generates;
#  - under mpirun -np 2 (when the build has MPI), sft, reward train and rlhf (2 data ranks, and rlhf with
#    --tp 2) log the losses / rewards of the single-process run with the same global batch (issue 7, check 5).
# Usage: bash tests/cli/test_align.sh BUILD_DIR
set -u
B=${1:?usage: test_align.sh BUILD_DIR}
G=$B/gemma
[ -x "$G" ] || { echo "FAIL: $G not built"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 needed"; exit 1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=86"
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d /tmp/gm_align.XXXXXX); trap 'rm -rf "$tmp"' EXIT
D=tests/data/align
M=models/tiny-gemma

expect_fail() { # CODE NEEDLE CMD...: exit code CODE and NEEDLE in stderr
  local code=$1 needle=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc = "$code" ] && grep -qF -- "$needle" "$tmp/err"; then ok
  else bad "'$*' exited $rc (want $code), stderr: $(tail -c 400 "$tmp/err")"; fi
}

# ---- SFT ------------------------------------------------------------------------------------------------
"$G" sft --init $M --data $D/sft_tiny.jsonl --out "$tmp/sft" --seq 192 --batch 2 --steps 30 --lr 2e-3 --warmup 2 \
  --eval-frac 0 -t 2 2>"$tmp/sft.err" && ok || bad "sft failed: $(tail -c 600 "$tmp/sft.err")"
grep -q "7 train + 0 held-out examples" "$tmp/sft.err" && grep -q "tokens/s; chat with it" "$tmp/sft.err" \
  && ok || bad "sft banner: $(head -c 600 "$tmp/sft.err")"
python3 - "$tmp/sft/train_log.csv" <<'PY' && ok || bad "sft train_log.csv: loss does not fall"
import csv, sys
loss = [float(r["loss"]) for r in csv.DictReader(open(sys.argv[1]))]
assert len(loss) == 30 and loss[-1] < loss[0] / 20, loss
PY
[ -f "$tmp/sft/latest/config.json" ] && [ -f "$tmp/sft/latest/tokenizer.model" ] && head -c 5 "$tmp/sft/loss.svg" | grep -q "<" \
  && ok || bad "sft outputs"
# the memorized answers come back through the chat path: same turns, same tokens
chk_answer() { # PROMPT WANT
  local got; got=$("$G" generate -m "$tmp/sft/latest" --chat -p "$1" -n 12 --temp 0 2>/dev/null)
  [ "$got" = "$2" ] && ok || bad "generate --chat '$1' gave '$got', want '$2'"
}
chk_answer $'Translate to English.\n\nhola' "hello"
chk_answer "Name a colour." "Blue."
chk_answer $'Give the opposite.\n\nup' "down"

# held-out split and eval loss
"$G" sft --init $M --data $D/sft_tiny.jsonl --out "$tmp/sft2" --seq 192 --batch 2 --steps 6 --lr 1e-3 \
  --eval-frac 0.3 --eval-every 3 -t 2 2>"$tmp/sft2.err" && ok || bad "sft with eval failed: $(tail -c 400 "$tmp/sft2.err")"
grep -q "5 train + 2 held-out" "$tmp/sft2.err" && grep -q "| val " "$tmp/sft2.err" && ok || bad "sft eval: $(cat "$tmp/sft2.err")"

# resume: a run killed after a checkpoint continues to the losses of an uninterrupted one, bitwise
RA=(--init $M --data $D/sft_tiny.jsonl --seq 192 --batch 2 --steps 6 --lr 1e-3 --eval-frac 0.3 --eval-every 3
    --save-every 3 -t 1 -q)
GM_TEST_KILL_AT_STEP=5 "$G" sft "${RA[@]}" --out "$tmp/sr" >/dev/null 2>&1
[ -d "$tmp/sr/checkpoint-3" ] && [ ! -d "$tmp/sr/checkpoint-6" ] && ok || bad "the killed run left no checkpoint-3 only"
"$G" sft "${RA[@]}" --out "$tmp/sr" --resume 2>"$tmp/sr.err" && ok || bad "sft --resume: $(tail -c 300 "$tmp/sr.err")"
"$G" sft "${RA[@]}" --out "$tmp/su" >/dev/null 2>&1 && ok || bad "the uninterrupted run failed"
cmp -s <(cut -d, -f1,2,6 "$tmp/sr/train_log.csv") <(cut -d, -f1,2,6 "$tmp/su/train_log.csv") \
  && grep -q "resumed at step 3" "$tmp/sr.err" && ok || bad "resumed losses differ: $(cat "$tmp/sr/train_log.csv")"

# bad records: stop names file:line; skip lists them and trains on the rest
printf '%s\n' '{"messages": [{"role": "user", "content": "hi"}, {"role": "model", "content": "yo"}]}' \
  '{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}' \
  '{"instruction": "x"}' '{"question": "1+1?", "answer": "2"}' >"$tmp/bad.jsonl"
expect_fail 1 "bad.jsonl:2: message 1 has role \"user\" but roles must alternate" \
  "$G" sft --init $M --data "$tmp/bad.jsonl" --out "$tmp/sb" --steps 1 -t 1
"$G" sft --init $M --data "$tmp/bad.jsonl" --out "$tmp/sb2" --steps 1 --eval-frac 0 --on-bad skip -t 1 \
  2>"$tmp/skip.err" && ok || bad "--on-bad skip failed: $(tail -c 400 "$tmp/skip.err")"
grep -q "bad.jsonl:2: .*skipped" "$tmp/skip.err" && grep -q 'bad.jsonl:3: "output" is missing: skipped' "$tmp/skip.err" \
  && grep -q "2 train + 0 held-out examples" "$tmp/skip.err" && grep -q "2 bad records skipped" "$tmp/skip.err" \
  && ok || bad "skip report: $(cat "$tmp/skip.err")"
expect_fail 2 "--init MODEL is required" "$G" sft --data $D/sft_tiny.jsonl --out "$tmp/x"
expect_fail 2 "bad value for --on-bad" "$G" sft --init $M --data $D/sft_tiny.jsonl --out "$tmp/x" --on-bad maybe
expect_fail 1 "none.jsonl: cannot open" "$G" sft --init $M --data "$tmp/none.jsonl" --out "$tmp/x"

# ---- reward model ---------------------------------------------------------------------------------------
"$G" reward train --init "$tmp/sft/latest" --data $D/pairs_tiny.jsonl --out "$tmp/rm" --seq 400 --batch 2 --steps 10 \
  --lr 1e-3 --eval-frac 0.25 --eval-every 5 -t 2 >"$tmp/rm.out" 2>"$tmp/rm.err" && ok \
  || bad "reward train failed: $(tail -c 600 "$tmp/rm.err")"
grep -q "held-out pairs 2: loss [0-9.]*, pairwise accuracy" "$tmp/rm.out" && grep -q "pairs_tiny.jsonl:8: 895 tokens, longer than 400: left out" "$tmp/rm.err" \
  && ok || bad "reward train report: $(cat "$tmp/rm.out") $(head -c 400 "$tmp/rm.err")"
python3 - "$tmp/rm" <<'PY' && ok || bad "reward model directory"
import csv, json, struct, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/reward_log.csv")))
assert len(rows) == 10 and rows[4]["eval_accuracy"] != "nan" and rows[3]["eval_accuracy"] == "nan", rows[:5]
cfg = json.load(open(d + "/model/config.json"))
assert cfg["architectures"] == ["GemmaForSequenceClassification"] and cfg["num_labels"] == 1
buf = open(d + "/model/model.safetensors", "rb").read()
n = struct.unpack_from("<Q", buf)[0]
h = json.loads(buf[8:8 + n])
assert h["score.weight"]["shape"] == [1, cfg["hidden_size"]] and h["score.weight"]["dtype"] == "F32"
assert "model.embed_tokens.weight" in h and len(h) == 4 + 9 * cfg["num_hidden_layers"]  # + metadata, embed, norm, head
for f in ("loss.svg", "accuracy.svg"):
    assert open(d + "/" + f).read().lstrip().startswith("<")
PY
"$G" reward score -m "$tmp/rm/model" --data $D/pairs_tiny.jsonl >"$tmp/score.out" 2>"$tmp/score.err" && ok \
  || bad "reward score failed: $(cat "$tmp/score.err")"
python3 - "$tmp/score.out" <<'PY' && ok || bad "reward score output: $(head -c 300 "$tmp/score.out")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["line"] for r in rows] == list(range(1, 10))
assert all(abs(r["chosen"] - r["rejected"] - r["margin"]) < 1e-4 for r in rows)
PY
grep -q "9 pairs: pairwise accuracy" "$tmp/score.err" && ok || bad "score summary: $(cat "$tmp/score.err")"
r=$("$G" reward score -m "$tmp/rm/model" --prompt "What is the capital of France?" --response "Paris." 2>/dev/null)
python3 -c "import sys; float(sys.argv[1])" "$r" 2>/dev/null && ok || bad "single score: '$r'"
expect_fail 1 "score.weight" "$G" reward score -m "$tmp/sft/latest" --prompt a --response b
expect_fail 2 "unknown subcommand" "$G" reward fit

# ---- RLHF -----------------------------------------------------------------------------------------------
"$G" rlhf --policy "$tmp/sft/latest" --reward "$tmp/rm/model" --prompts $D/pairs_tiny.jsonl --out "$tmp/rl" \
  --samples 4 --max-new 12 --prompts-per-step 2 --steps 4 --lr 1e-4 --sample-every 2 --seq 200 -t 2 \
  2>"$tmp/rl.err" && ok || bad "rlhf failed: $(tail -c 600 "$tmp/rl.err")"
python3 - "$tmp/rl" <<'PY' && ok || bad "rlhf outputs"
import csv, json, os, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/rlhf_log.csv")))
assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
assert float(rows[0]["kl"]) == 0.0, rows[0]          # the policy is the reference before the first update
assert all(0 < float(r["length"]) <= 12 and float(r["entropy"]) >= 0 for r in rows)
for f in ("reward.svg", "kl.svg", "length.svg"):
    assert open(os.path.join(d, f)).read().lstrip().startswith("<")
for step in (2, 4):
    p = [json.loads(l) for l in open(f"{d}/samples-{step}/prompts.jsonl")]
    a = [json.loads(l) for l in open(f"{d}/samples-{step}/policy.jsonl")]
    b = [json.loads(l) for l in open(f"{d}/samples-{step}/reference.jsonl")]
    assert len(p) == len(a) == len(b) == 4 and all(x["id"] == y["id"] == z["id"] for x, y, z in zip(p, a, b))
    assert all("response" in x and "reward" in x for x in a + b) and all(x["prompt"] for x in p)
log = [json.loads(l) for l in open(d + "/samples.jsonl")]
assert len(log) == 8 and {"policy", "reference", "reward_policy"} <= set(log[0])
assert os.path.isfile(d + "/latest/model.safetensors")
PY
"$G" generate -m "$tmp/rl/latest" --chat -p "Name a colour." -n 4 --temp 0 >/dev/null 2>"$tmp/gen.err" && ok \
  || bad "rlhf checkpoint does not generate: $(cat "$tmp/gen.err")"
"$G" rlhf --policy "$tmp/sft/latest" --reward-fn target:50 --prompts $D/sft_tiny.jsonl --out "$tmp/rl2" --samples 2 \
  --max-new 6 --prompts-per-step 1 --steps 2 --sample-every 0 -t 1 -q 2>"$tmp/rl2.err" && ok \
  || bad "rlhf --reward-fn failed: $(tail -c 400 "$tmp/rl2.err")"
expect_fail 2 "give one of --reward RM and --reward-fn" "$G" rlhf --policy $M --prompts $D/sft_tiny.jsonl --out "$tmp/x"
expect_fail 2 "bad value for --samples" "$G" rlhf --policy $M --reward-fn target:5 --prompts $D/sft_tiny.jsonl \
  --out "$tmp/x" --samples 1
expect_fail 1 "past the vocabulary" "$G" rlhf --policy $M --reward-fn target:5000 --prompts $D/sft_tiny.jsonl --out "$tmp/x"

# ---- check 5: mpirun -np 2 gives the single-process numbers ---------------------------------------------
if command -v mpirun >/dev/null && [ -x "$B/mpi_train_check" ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
  # sanitizer builds: what OpenMPI's own threads keep past MPI_Finalize is not ours (as in test_mpi.sh)
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/mpi/lsan.supp:print_suppressions=0}
  export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
  MPI="timeout 300 mpirun --oversubscribe -x LSAN_OPTIONS -x ASAN_OPTIONS -np 2"
  # the same global batches: 1 process x 2 micro-batches = 2 ranks x 1
  "$G" sft --init $M --data $D/sft_tiny.jsonl --out "$tmp/m1" --seq 192 --batch 1 --accum 2 --steps 6 --lr 1e-3 \
    --eval-frac 0.3 --eval-every 3 -t 1 -q 2>"$tmp/m1.err" && ok || bad "sft np 1: $(tail -c 300 "$tmp/m1.err")"
  $MPI "$G" sft --init $M --data $D/sft_tiny.jsonl --out "$tmp/m2" --seq 192 --batch 1 --accum 1 --steps 6 --lr 1e-3 \
    --eval-frac 0.3 --eval-every 3 -t 1 -q 2>"$tmp/m2.err" && ok || bad "sft np 2: $(tail -c 300 "$tmp/m2.err")"
  "$G" reward train --init "$tmp/sft/latest" --data $D/pairs_tiny.jsonl --out "$tmp/r1" --seq 400 --batch 2 --steps 4 \
    --lr 1e-3 --eval-frac 0.25 --eval-every 2 -t 1 -q >/dev/null 2>"$tmp/r1.err" && ok || bad "reward np 1: $(tail -c 300 "$tmp/r1.err")"
  $MPI "$G" reward train --init "$tmp/sft/latest" --data $D/pairs_tiny.jsonl --out "$tmp/r2" --seq 400 --batch 1 --steps 4 \
    --lr 1e-3 --eval-frac 0.25 --eval-every 2 -t 1 -q >/dev/null 2>"$tmp/r2.err" && ok || bad "reward np 2: $(tail -c 300 "$tmp/r2.err")"
  RL=(--policy "$tmp/sft/latest" --reward "$tmp/rm/model" --prompts $D/pairs_tiny.jsonl --samples 2 --max-new 8 --steps 3
      --lr 1e-4 --sample-every 0 --seq 200 -t 1 -q)
  "$G" rlhf "${RL[@]}" --prompts-per-step 2 --out "$tmp/l1" 2>"$tmp/l1.err" && ok || bad "rlhf np 1: $(tail -c 300 "$tmp/l1.err")"
  $MPI "$G" rlhf "${RL[@]}" --prompts-per-step 1 --out "$tmp/l2" 2>"$tmp/l2.err" && ok || bad "rlhf np 2: $(tail -c 300 "$tmp/l2.err")"
  # model parallel: each rank half of every layer; sampling by full forwards of the sharded policy
  $MPI "$G" rlhf "${RL[@]}" --prompts-per-step 2 --tp 2 --out "$tmp/l3" 2>"$tmp/l3.err" && ok || bad "rlhf --tp 2: $(tail -c 300 "$tmp/l3.err")"
  python3 - "$tmp" <<'PY' && ok || bad "mpirun -np 2 differs from one process"
import csv, math, sys
t = sys.argv[1]
def rows(p): return list(csv.DictReader(open(p)))
worst = {}
def close(a, b, what, tol=1e-4):
    if a == "" and b == "": return
    a, b = float(a), float(b)
    if math.isnan(a) and math.isnan(b): return
    d = abs(a - b) / max(1.0, abs(b))
    key = what.split()[0]
    worst[key] = max(worst.get(key, 0.0), d)
    assert d <= tol, f"{what}: {a} vs {b}"
def pairs(f):
    a, b = rows(f"{t}/{f[0]}"), rows(f"{t}/{f[1]}")
    assert len(a) == len(b) and len(a) > 0, f"{f}: {len(a)} vs {len(b)} rows"
    return zip(a, b)
for a, b in pairs(("m1/train_log.csv", "m2/train_log.csv")):
    close(a["loss"], b["loss"], "sft loss step " + a["step"])
    close(a["val_loss"], b["val_loss"], "sft val loss step " + a["step"])
for a, b in pairs(("r1/reward_log.csv", "r2/reward_log.csv")):
    for k in ("loss", "accuracy", "eval_loss", "eval_accuracy"):
        close(a[k], b[k], f"reward {k} step {a['step']}")
for a, b in pairs(("l1/rlhf_log.csv", "l2/rlhf_log.csv")):
    for k in ("reward", "kl", "length", "score"):
        close(a[k], b[k], f"rlhf {k} step {a['step']}")
for a, b in pairs(("l1/rlhf_log.csv", "l3/rlhf_log.csv")):
    for k in ("reward", "kl", "length", "score"):
        close(a[k], b[k], f"rlhf-tp2 {k} step {a['step']}")
print("check 5: mpirun -np 2 vs 1 process, largest difference (relative, floor 1): " +
      ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
PY
else
  echo "note: no MPI build or mpirun: check 5 (mpirun -np 2) not run"
fi

echo "test_align: $pass passed, $fail failed"
[ $fail = 0 ]
