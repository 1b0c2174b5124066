#!/usr/bin/env bash
# `gemma sxs` end to end with the demo model (models/tiny-gemma, random weights) as the judge, on the
# hand-written files in tests/data/sxs/: the table and the JSON (counts that add up, per category, Wilson
# intervals recomputed independently, verdicts that follow the two orders' log-odds in --samples), and the
# structure of the two-order rule: identical responses are all ties, swapping A and B swaps wins and losses.
# Also --no-chat, --limit, a context too small (skipped with a warning), and errors: mismatched or
# malformed files exit 1 naming the file and line, bad flags exit 2. Needs python3 for the JSON checks
# (skipped, with a note, without it). Usage: test_sxs.sh BUILD_DIR
set -u
BUILD=${1:?usage: test_sxs.sh BUILD_DIR}
G=$BUILD/gemma
M=models/tiny-gemma
D=tests/data/sxs
[ -x "$G" ] || { echo "FAIL: $G not built"; exit 1; }
[ -f "$M/model.safetensors" ] || { echo "FAIL: run from the repository root ($M missing)"; exit 1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=86"
TMP=$(mktemp -d /tmp/gm_cli_sxs.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
PY=$(command -v python3 || true)
fails=0
pass=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# run NAME WANT_RC ARGS...: `gemma sxs ARGS` with stdout, stderr in $TMP/NAME.{out,err}
run() {
    local name=$1 want=$2
    shift 2
    timeout 120 "$G" sxs "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    local rc=$?
    if grep -qE 'Sanitizer|runtime error:' "$TMP/$name.err"; then fail "$name: sanitizer report"; return 1; fi
    if [ "$rc" != "$want" ]; then
        fail "$name: exit $rc, want $want ($*)"
        sed 's/^/    /' "$TMP/$name.err" | tail -5
        return 1
    fi
    pass=$((pass + 1))
    return 0
}
ARGS=(--prompts $D/prompts.jsonl --a $D/a.jsonl --b $D/b.jsonl --judge $M -t 1)

# ---- usage errors (exit 2) ----
run help 0 --help && grep -q -- "--judge" "$TMP/help.out" || fail "help: no --judge"
run noprompts 2 --a $D/a.jsonl --b $D/b.jsonl --judge $M
run nojudge 2 --prompts $D/prompts.jsonl --a $D/a.jsonl --b $D/b.jsonl
run badopt 2 "${ARGS[@]}" --frobnicate
run badlimit 2 "${ARGS[@]}" --limit 0

# ---- runtime errors (exit 1) ----
run missing 1 --prompts $D/prompts.jsonl --a "$TMP/none.jsonl" --b $D/b.jsonl --judge $M &&
    grep -q "none.jsonl" "$TMP/missing.err" || fail "missing: file not named"
head -n 5 $D/a.jsonl >"$TMP/a5.jsonl"
run count 1 --prompts $D/prompts.jsonl --a "$TMP/a5.jsonl" --b $D/b.jsonl --judge $M &&
    grep -q "6 prompts.*but 5 responses" "$TMP/count.err" || fail "count: message"
sed 's/"p3"/"p9"/' $D/a.jsonl >"$TMP/aid.jsonl"
run ids 1 --prompts $D/prompts.jsonl --a "$TMP/aid.jsonl" --b $D/b.jsonl --judge $M &&
    grep -q 'aid.jsonl: line 3 has id "p9"' "$TMP/ids.err" || fail "ids: message"
printf '{"prompt": "ok"}\n{"question": "no prompt"}\n' >"$TMP/p.jsonl"
run noprompt 1 --prompts "$TMP/p.jsonl" --a $D/a.jsonl --b $D/b.jsonl --judge $M &&
    grep -q 'p.jsonl: line 2: no "prompt"' "$TMP/noprompt.err" || fail "noprompt: message"
printf '{"response": "ok"}\n{"response": 5}\n' >"$TMP/r.jsonl"
run noresp 1 --prompts $D/prompts.jsonl --a "$TMP/r.jsonl" --b $D/b.jsonl --judge $M --limit 2 &&
    grep -q 'r.jsonl: line 2: no "response"' "$TMP/noresp.err" || fail "noresp: message"
echo "Judge this." >"$TMP/rubric.txt"
run rubric 1 "${ARGS[@]}" --rubric "$TMP/rubric.txt" && grep -q "must contain {prompt}" "$TMP/rubric.err" ||
    fail "rubric: message"

# ---- a run: table, JSON, samples ----
if run main 0 "${ARGS[@]}" --out "$TMP/main.json" --samples "$TMP/main.samples"; then
    grep -qE '^\| all +\| +6 \|' "$TMP/main.out" || fail "main: no 'all' row with n = 6"
    for c in creative math knowledge; do grep -qE "^\| $c +\| +2 \|" "$TMP/main.out" || fail "main: no $c row"; done
    grep -q "both orders" "$TMP/main.out" || fail "main: header"
    grep -q "pairs/s" "$TMP/main.err" || fail "main: no summary on stderr"
    [ "$(wc -l <"$TMP/main.samples")" -eq 6 ] || fail "main: samples lines"
fi
# --json prints what --out writes (timings aside)
strip_t() { grep -vE '"(seconds|pairs_per_second)"' "$1"; }
run json 0 "${ARGS[@]}" --json -q && [ "$(strip_t "$TMP/json.out")" = "$(strip_t "$TMP/main.json")" ] ||
    fail "json: --json differs from --out"
# identical responses: in both orders the judge sees the same text, so its two log-odds are equal and every
# verdict is a tie
run same 0 --prompts $D/prompts.jsonl --a $D/a.jsonl --b $D/a.jsonl --judge $M --json -q &&
    grep -q '"overall": {"n": 6, "win": 0, "tie": 6, "loss": 0' "$TMP/same.out" || fail "same: not all ties"
# swapping the systems swaps wins and losses
run swap 0 --prompts $D/prompts.jsonl --a $D/b.jsonl --b $D/a.jsonl --judge $M --json -q
run fwd 0 "${ARGS[@]}" --json -q
wl() {
    grep -o '"overall": {"n": [0-9]*, "win": [0-9]*, "tie": [0-9]*, "loss": [0-9]*' "$1" | grep -o '[0-9]*' |
        tr '\n' ' '
}
read -r n1 w1 t1 l1 <<<"$(wl "$TMP/fwd.out")"
read -r n2 w2 t2 l2 <<<"$(wl "$TMP/swap.out")"
[ "${n1:-x}" = 6 ] && [ "$((w1 + t1 + l1))" = 6 ] || fail "fwd: counts $n1 $w1 $t1 $l1"
[ "${w1:-x}" = "${l2:-y}" ] && [ "${l1:-x}" = "${w2:-y}" ] && [ "${t1:-x}" = "${t2:-y}" ] ||
    fail "swap: A/B $w1/$t1/$l1 but B/A $w2/$t2/$l2"
# options
run nochat 0 "${ARGS[@]}" --no-chat --json -q && grep -q '"chat": false' "$TMP/nochat.out" || fail "nochat"
run limit 0 "${ARGS[@]}" --limit 2 --json -q && grep -q '"n": 2,' "$TMP/limit.out" || fail "limit: n"
run small 0 "${ARGS[@]}" -c 200 --json && grep -q '"skipped": 6' "$TMP/small.out" &&
    grep -q "prompt 1 skipped: the judging prompt has" "$TMP/small.err" || fail "small: skipped"

if [ -n "$PY" ]; then
    "$PY" - "$TMP/main.json" "$TMP/main.samples" <<'EOF' || fail "main: JSON check"
import json, math, sys
r = json.load(open(sys.argv[1]))
rows = [json.loads(l) for l in open(sys.argv[2])]
z = 1.959963984540054
def wilson(k, n):  # independent of the C code
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, c - h), min(1.0, c + h)
def verdict(ab, ba):
    return "win" if ab > 0 and ba < 0 else "loss" if ab < 0 and ba > 0 else "tie"
def check(g, sel):
    n = len(sel)
    assert g["n"] == n, (g, n)
    for v in ("win", "tie", "loss"):
        k = sum(1 for x in sel if x["verdict"] == v)
        assert g[v] == k, (v, g, k)
        lo, hi = wilson(k, n)
        m = g[v + "_rate"]
        assert abs(m["value"] - k / n) < 1e-6, (v, m)
        assert abs(m["ci95"][0] - lo) < 1e-5 and abs(m["ci95"][1] - hi) < 1e-5, (v, m)
    s = [1.0 if x["verdict"] == "win" else 0.5 if x["verdict"] == "tie" else 0.0 for x in sel]
    mean = sum(s) / n
    assert abs(g["score"]["value"] - mean) < 1e-6
    if n > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in s) / (n - 1))
        lo, hi = max(0, mean - z * sd / math.sqrt(n)), min(1, mean + z * sd / math.sqrt(n))
        assert abs(g["score"]["ci95"][0] - lo) < 1e-5 and abs(g["score"]["ci95"][1] - hi) < 1e-5, (g["score"], lo, hi)
    pref = [0.5 * (1 / (1 + math.exp(-x["logit_a_first"])) + 1 / (1 + math.exp(x["logit_b_first"]))) for x in sel]
    assert abs(g["mean_preference"] - sum(pref) / n) < 1e-5
    first = sum((x["logit_a_first"] > 0) + (x["logit_b_first"] > 0) for x in sel)
    assert abs(g["first_position_rate"] - first / (2 * n)) < 1e-6
assert len(rows) == 6 and r["n"] == 6 and r["skipped"] == 0 and r["chat"] is True
for x in rows:
    assert x["verdict"] == verdict(x["logit_a_first"], x["logit_b_first"]), x
    assert 0 <= x["pref_a"] <= 1
check(r["overall"], rows)
assert list(r["categories"]) == ["creative", "math", "knowledge"], list(r["categories"])
for c, g in r["categories"].items():
    check(g, [x for x in rows if x["category"] == c])
assert r["tokens_evaluated"] > 0 and r["tokens_reused"] > 0
EOF
else
    echo "NOTE: python3 not found: the JSON checks are skipped"
fi

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
