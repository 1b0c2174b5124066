#!/usr/bin/env bash
# gemma.c against llama.cpp on the same GGUF file, same threads, runs alternating (gemma.c, llama.cpp, for
# each thread count, ROUNDS times), then one table with the ratio gemma.c / llama.cpp per test.
# Both engines hold the weights in memory (gemma.c's default read; llama.cpp useMmap false = --mmap 0).
#
# usage: bench/llama_side_by_side.sh FILE.gguf [-t 1,2] [-p 128,512] [-n 64,128] [-r 3] [--rounds 1]
# llama.cpp is node-llama-cpp's prebuilt CPU build through bench/llama_bench.mjs (installed on first use
# into ${XDG_CACHE_HOME:-$HOME/.cache}/gemma.c/node-llama-cpp), or llama-bench itself when LLAMA_BENCH
# names one. GEMMA names the gemma binary (default build/gemma). With --rounds K > 1 each engine's
# figure pools all K x R repetitions (mean ± sd of every repetition's t/s).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
GEMMA=${GEMMA:-$root/build/gemma}
threads=1,2 pp=128,512 tg=64,128 reps=3 rounds=1 model=
usage() { sed -n 5,10p "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        -t) threads=$2; shift 2 ;;
        -p) pp=$2; shift 2 ;;
        -n) tg=$2; shift 2 ;;
        -r) reps=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) echo "llama_side_by_side.sh: unknown option '$1'" >&2; usage ;;
        *) [ -z "$model" ] || usage; model=$1; shift ;;
    esac
done
[ -n "$model" ] || usage
[ -f "$model" ] || { echo "llama_side_by_side.sh: no such file: $model" >&2; exit 1; }
[ -x "$GEMMA" ] || { echo "llama_side_by_side.sh: $GEMMA not built (run make)" >&2; exit 1; }
if [ -n "${LLAMA_BENCH:-}" ]; then
    [ -x "$LLAMA_BENCH" ] || { echo "llama_side_by_side.sh: LLAMA_BENCH=$LLAMA_BENCH is not executable" >&2; exit 1; }
    llama_name="llama-bench ($LLAMA_BENCH, --mmap 0)"
else
    command -v node >/dev/null || { echo "llama_side_by_side.sh: needs node (or LLAMA_BENCH=path/to/llama-bench)" >&2; exit 1; }
    node "$here/llama_bench.mjs" --install-only
    llama_name="llama.cpp via node-llama-cpp 3.21.1 prebuilt CPU build (useMmap false)"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# llama.cpp needs tokenizer metadata, which `gemma convert --random` files lack: it then loads a copy made
# here with a placeholder vocabulary and the same tensors (see llama_bench.mjs --prepare).
llama_model=$model
if command -v node >/dev/null; then llama_model=$(node "$here/llama_bench.mjs" --prepare "$model" "$tmp"); fi
run() { # engine threads round -> raw table in $tmp/ENGINE.T.ROUND
    local out=$tmp/$1.$2.$3 err=$tmp/err
    if [ "$1" = gemma ]; then
        "$GEMMA" bench -m "$model" -t "$2" -p "$pp" -n "$tg" -r "$reps" --kv-ctx 0 --no-bw >"$out" 2>"$err" || { cat "$err" "$out" >&2; exit 1; }
    elif [ -n "${LLAMA_BENCH:-}" ]; then
        "$LLAMA_BENCH" -m "$llama_model" -p "$pp" -n "$tg" -t "$2" -r "$reps" --mmap 0 -o md >"$out" 2>"$err" || { cat "$err" "$out" >&2; exit 1; }
    else
        node "$here/llama_bench.mjs" -m "$llama_model" -t "$2" -p "$pp" -n "$tg" -r "$reps" >"$out" 2>"$err" || { cat "$err" "$out" >&2; exit 1; }
    fi
    cat "$out" >&2
}
echo "$model: alternating gemma.c and llama.cpp, threads $threads, pp $pp, tg $tg, $reps reps x $rounds rounds" >&2
for ((k = 1; k <= rounds; k++)); do
    for t in ${threads//,/ }; do
        run gemma "$t" "$k"
        run llama "$t" "$k"
    done
done

# Every table (gemma bench, llama_bench.mjs and llama-bench markdown) has columns named threads, test
# and t/s ("mean ± sd"): read them by name, pool rounds, print one row per (threads, test).
awk -v reps="$reps" -v model="$(basename "$model")" -v lname="$llama_name" '
function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
FNR == 1 { ct = cs = cv = 0; eng = FILENAME; sub(/.*\//, "", eng); sub(/\..*/, "", eng) }
/^\|/ {
    n = split($0, f, "|")
    if (!ct) { for (i = 2; i < n; i++) { h = trim(f[i]); if (h == "threads") ct = i; if (h == "test") cs = i; if (h == "t/s") cv = i }; next }
    if (f[ct] ~ /-/) next
    th = trim(f[ct]); te = trim(f[cs]); split(trim(f[cv]), v, "±"); m = v[1] + 0; sd = v[2] + 0
    key = th SUBSEP te
    if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
    # pool: sum of t/s and of t/s^2 over all repetitions
    s1[eng, key] += reps * m; s2[eng, key] += reps * (sd * sd + m * m); cnt[eng, key] += reps
}
function stat(e, k,   mu, var) {
    if (!cnt[e, k]) return "—"
    mu = s1[e, k] / cnt[e, k]; var = s2[e, k] / cnt[e, k] - mu * mu
    M[e] = mu
    return sprintf("%.2f ± %.2f", mu, var > 0 ? sqrt(var) : 0)
}
END {
    printf "\n%s; llama.cpp = %s\n", model, lname
    printf "| threads | test | gemma.c t/s | llama.cpp t/s | gemma.c / llama.cpp |\n|---|---|---|---|---|\n"
    for (i = 1; i <= nk; i++) {
        k = order[i]; split(k, p, SUBSEP); M["gemma"] = M["llama"] = 0
        a = stat("gemma", k); b = stat("llama", k)
        printf "| %s | %s | %s | %s | %s |\n", p[1], p[2], a, b, (M["gemma"] > 0 && M["llama"] > 0) ? sprintf("%.2f", M["gemma"] / M["llama"]) : "—"
    }
}' "$tmp"/gemma.* "$tmp"/llama.*
