#!/usr/bin/env bash
# Evaluation throughput (examples/s) of `gemma eval` on a model for a few tasks, from the real benchmark
# files, plus the scores (on the demo model's random weights they sit near chance: 25% for 4-way tasks,
# 50% for PIQA). Prints one markdown table row per task for bench/RESULTS.md.
# Usage: bash bench/eval_speed.sh [BUILD_DIR] [MODEL_DIR] [LIMIT]
#   DATA=/path/to/shared/data (default ../shared/data), THREADS=N (default: all cores)
set -eu
BUILD=${1:-build}
MODEL=${2:-models/tiny-gemma}
LIMIT=${3:-200}
DATA=${DATA:-../shared/data}
THREADS=${THREADS:-$(nproc)}
G=$BUILD/gemma
[ -x "$G" ] || { echo "eval_speed: $G not built" >&2; exit 1; }
[ -d "$DATA/arc" ] || { echo "eval_speed: no datasets in $DATA (set DATA=)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/gm_eval_speed.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
bzip2 -dkc "$DATA/hellaswag/hellaswag_val_full.txt.bz2" >"$TMP/hellaswag_val_full.txt"

echo "model $MODEL, $THREADS threads, first $LIMIT items per task (MMLU: first 4 of each of the 57 subjects)"
echo "| task | shots | items | seconds | examples/s | tokens evaluated | tokens saved by cache reuse | score |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
run() { # NAME ARGS...
  local name=$1; shift
  "$G" eval -m "$MODEL" -t "$THREADS" -q --out "$TMP/$name.json" "$@" >/dev/null
  python3 - "$TMP/$name.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
score = ", ".join(f"{k} {m['value']:.4f} ± {m['stderr']:.4f}" for k, m in r["metrics"].items())
print(f"| {r['task']} | {r.get('shots', 0)} | {r['n']} | {r['seconds']:.2f} | {r['examples_per_second']:.1f} | "
      f"{r['tokens_evaluated']} | {r['tokens_reused']} | {score} |")
EOF
}
run arc_easy --task arc_easy --data "$DATA/arc/ARC-Easy-test.jsonl" --limit "$LIMIT"
run arc_challenge --task arc_challenge --data "$DATA/arc/ARC-Challenge-test.jsonl" --limit "$LIMIT"
run hellaswag --task hellaswag --data "$TMP/hellaswag_val_full.txt" --limit "$LIMIT"
run piqa --task piqa --data "$DATA/piqa/valid.jsonl" --limit "$LIMIT"
run mmlu --task mmlu --data "$DATA/mmlu" --limit 4
run truthfulqa_mc2 --task truthfulqa_mc2 --data "$DATA/truthfulqa/mc_task.json" --limit "$LIMIT"
