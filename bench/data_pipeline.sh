#!/usr/bin/env bash
# Throughput (MB/s of input read) of `gemma data filter`, `dedup` and `decontaminate` on the shared
# pretraining text (TinyStories sample, tiny Shakespeare), with all threads and with one. MB/s is the
# pipeline's own wall time from --stats (reading, work, writing; not process start-up, and for
# decontaminate not the index build, whose time is reported separately); MB/CPU-s divides by the
# process CPU time instead, which stays meaningful on a shared, loaded machine. Medians of RUNS runs.
# Usage: bench/data_pipeline.sh [BUILD_DIR] [DATA_DIR]   (a benchmark, never a test)
set -eu
BUILD=${1:-build}
DATA=${2:-/work/shared/data}
RUNS=${RUNS:-5}
GEMMA=$BUILD/gemma
[ -x "$GEMMA" ] || { echo "build first: $GEMMA not found" >&2; exit 1; }
PY=$(command -v python3) || { echo "python3 needed" >&2; exit 1; }
TS=$DATA/tinystories/tinystories_sample.txt
SH=$DATA/tinyshakespeare/input.txt
for f in "$TS" "$SH"; do [ -f "$f" ] || { echo "missing $f" >&2; exit 1; }; done
EVALS=$DATA/gsm8k/test.jsonl,$DATA/arc/ARC-Easy-test.jsonl,$DATA/arc/ARC-Challenge-test.jsonl,$DATA/mmlu/test,$DATA/piqa/valid.jsonl,$DATA/truthfulqa/TruthfulQA.csv
TMP=$(mktemp -d /tmp/gm_bench_data.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
NCPU=$(getconf _NPROCESSORS_ONLN)

# median MB/s (and the last run's document counts) of: gemma data CMD ARGS...
measure() {
    local i
    for i in $(seq "$RUNS"); do
        "$GEMMA" data "$@" --out /dev/null -q --stats "$TMP/s$i.json"
    done
    "$PY" - "$TMP" "$RUNS" <<'EOF'
import json, statistics, sys
runs = [json.load(open("%s/s%d.json" % (sys.argv[1], i + 1))) for i in range(int(sys.argv[2]))]
s = runs[-1]
print("%.1f %.1f %d %d" % (statistics.median(r["mb_per_s"] for r in runs), statistics.median(r["mb_per_cpu_s"] for r in runs),
                          s["input"]["docs"], s["dropped"]["docs"]))
EOF
}

echo "# gemma data throughput ($(uname -m), $NCPU CPUs, load average $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%d)), median of $RUNS runs"
echo
echo "| input | command | threads | MB/s | MB/CPU-s | docs | dropped |"
echo "|---|---|---:|---:|---:|---:|---:|"
for input in tinystories shakespeare; do
    if [ $input = tinystories ]; then args=(--sep '<|endoftext|>' "$TS"); else args=(--split blank "$SH"); fi
    for t in "$NCPU" 1; do
        for cmd in filter dedup decontaminate; do
            extra=()
            [ $cmd = decontaminate ] && extra=(--eval "$EVALS")
            read -r mbs mbc docs dropped < <(measure $cmd "${args[@]}" "${extra[@]}" -t "$t")
            echo "| $input | $cmd | $t | $mbs | $mbc | $docs | $dropped |"
        done
    done
done
echo
# The decontamination index build (eval sets read once per run), timed over a whole run on empty input.
: > "$TMP/empty.txt"
t0=$(date +%s.%N)
"$GEMMA" data decontaminate --eval "$EVALS" "$TMP/empty.txt" --out /dev/null 2> "$TMP/idx.txt"
t1=$(date +%s.%N)
echo "decontamination index: $(grep -o '[0-9]* distinct.*MB)' "$TMP/idx.txt"), built in $("$PY" -c "print('%.2f' % ($t1 - $t0))") s"
