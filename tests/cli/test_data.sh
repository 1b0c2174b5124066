#!/usr/bin/env bash
# `gemma data` end to end through the real binary on tests/data/data_pipeline/: filter drops the short,
# code and repetitive documents (each under its rule) and passes the others through byte for byte; dedup
# drops the exact and near copies of the first document; decontaminate drops (or reports) the document
# holding a 13-gram of eval.jsonl; pii redacts the e-mail address; text input with a separator; thread
# count does not change the output; statistics JSON; usage errors exit 2, bad input exits 1.
# Usage: test_data.sh BUILD_DIR
set -u
BUILD=${1:?usage: test_data.sh BUILD_DIR}
GEMMA=$BUILD/gemma
D=tests/data/data_pipeline
[ -x "$GEMMA" ] || { echo "FAIL: $GEMMA not built"; exit 1; }
[ -f "$D/docs.jsonl" ] || { echo "FAIL: run from the repository root ($D missing)"; exit 1; }
PY=$(command -v python3 || command -v /usr/bin/python3) || { echo "FAIL: python3 needed to check JSON output"; exit 1; }

# In a sanitizer build a report must not pass for the expected exit code: give it its own.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=86"

TMP=$(mktemp -d /tmp/gm_cli_data.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
pass=0

fail() {
    echo "FAIL: $*"
    echo "$pass passed, 1 failed"
    exit 1
}

# run WANT_RC FRAGMENT CMD...: run CMD (60 s limit), require exit code WANT_RC and FRAGMENT in stderr+stdout.
run() {
    local want=$1 frag=$2
    shift 2
    local out rc
    out=$(timeout 60 "$@" 2>&1 </dev/null)
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        printf '%s\n' "$out" | tail -n 5 | sed 's/^/      /'
        fail "exit $rc (want $want): $*"
    fi
    if printf '%s' "$out" | grep -qE 'Sanitizer|runtime error:'; then
        printf '%s\n' "$out" | head -n 20 | sed 's/^/      /'
        fail "sanitizer report: $*"
    fi
    printf '%s' "$out" | grep -qF -- "$frag" || { printf '%s\n' "$out" | tail -n 5 | sed 's/^/      /'; fail "output lacks '$frag': $*"; }
    pass=$((pass + 1))
}

# ids FILE: the "id" fields of a JSONL file, space-separated.
ids() { "$PY" -c 'import json,sys; print(" ".join(json.loads(l)["id"] for l in open(sys.argv[1])))' "$1"; }
# expect WHAT GOT WANT
expect() {
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
    pass=$((pass + 1))
}

# ---- filter ---------------------------------------------------------------------------------------------
run 0 "kept 6" "$GEMMA" data filter "$D/docs.jsonl" --out "$TMP/f.jsonl" --rejected "$TMP/f_rej.jsonl" --stats "$TMP/f_stats.json" -t 2
expect "filter kept" "$(ids "$TMP/f.jsonl")" "good1 good1-copy good1-near good2 contaminated pii"
got=$("$PY" -c 'import json,sys; print(" ".join(d["id"]+":"+d["gm_reason"] for d in map(json.loads, open(sys.argv[1]))))' "$TMP/f_rej.jsonl")
expect "filter reasons" "$got" "short:min_words code:max_curly_brackets repeat:max_dup_line_frac"
# Kept JSONL records pass through byte for byte (other fields and their formatting included).
grep -F '"id": "good2"' "$D/docs.jsonl" > "$TMP/good2.want"
grep -F '"id": "good2"' "$TMP/f.jsonl" > "$TMP/good2.got"
cmp -s "$TMP/good2.want" "$TMP/good2.got" || fail "filter changed a kept record"
pass=$((pass + 1))
got=$("$PY" - "$TMP/f_stats.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
r = s["reasons"]
assert s["input"]["docs"] == s["kept"]["docs"] + s["dropped"]["docs"] == 9
assert sum(v["docs"] for v in r.values()) == s["dropped"]["docs"] == 3
assert r["min_words"]["docs"] == 1 and r["min_words"]["text_bytes"] == len("Too short to keep.")
assert s["rules"]["min_words"]["threshold"] == 50 and s["rules"]["max_digit_frac"]["enabled"] is False
print("ok")
EOF
)
expect "filter stats json" "$got" "ok"
# A threshold flag changes the decision; --disable removes a rule; the rule list prints.
run 0 "kept 7" "$GEMMA" data filter "$D/docs.jsonl" --out /dev/null --max-curly-brackets 1
run 0 "kept 7" "$GEMMA" data filter "$D/docs.jsonl" --out /dev/null --disable max_curly_brackets,min_words -t 1
run 0 "kept 9" "$GEMMA" data filter "$D/docs.jsonl" --out /dev/null --disable all
run 0 "Gopher" "$GEMMA" data filter --list-rules
# The classifier hook: a score field from the JSONL, and perplexity under a reference model.
run 0 "score" "$GEMMA" data filter "$D/docs.jsonl" --out "$TMP/s.jsonl" --disable all --score-field quality --min-score 0.5
expect "score field" "$(ids "$TMP/s.jsonl")" "good1 code good1-copy good1-near good2 contaminated"
if [ -f models/tiny-gemma/model.safetensors ]; then
    run 0 "kept 9" "$GEMMA" data filter "$D/docs.jsonl" --out /dev/null --disable all --ppl-model models/tiny-gemma --max-ppl 1e30 --ppl-tokens 32
    run 0 "kept 0" "$GEMMA" data filter "$D/docs.jsonl" --out /dev/null --disable all --ppl-model models/tiny-gemma --max-ppl 1 --ppl-tokens 32
fi
# C4 line cleaning rewrites the text: the kept record carries the cleaned text, other fields intact.
run 0 "c4 line cleaning removed" "$GEMMA" data filter "$D/docs.jsonl" --out "$TMP/c4.jsonl" --c4-lines --disable all
got=$("$PY" -c 'import json,sys; d=[json.loads(l) for l in open(sys.argv[1])]; r=[x for x in d if x["id"]=="repeat"][0]; print(r["text"].count("\n"), r["meta"]["source"])' "$TMP/c4.jsonl")
expect "c4 lines" "$got" "9 test"
# A record the cleaning leaves unchanged still passes through byte for byte.
grep -F '"id": "good2"' "$TMP/c4.jsonl" > "$TMP/good2.c4"
cmp -s "$TMP/good2.want" "$TMP/good2.c4" || fail "--c4-lines rewrote an unchanged record"
pass=$((pass + 1))

# ---- dedup -------------------------------------------------------------------------------------------------
run 0 "near_duplicate" "$GEMMA" data dedup "$D/docs.jsonl" --out "$TMP/d.jsonl" --rejected "$TMP/d_rej.jsonl"
expect "dedup kept" "$(ids "$TMP/d.jsonl")" "good1 short code good2 contaminated pii repeat"
got=$("$PY" -c 'import json,sys; print(" ".join("%s:%s:%d" % (d["id"], d["gm_reason"], d["gm_dup_of"]) for d in map(json.loads, open(sys.argv[1]))))' "$TMP/d_rej.jsonl")
expect "dedup reasons" "$got" "good1-copy:exact_duplicate:0 good1-near:near_duplicate:0"
run 0 "kept 8" "$GEMMA" data dedup "$D/docs.jsonl" --out /dev/null --mode exact
run 0 "kept 8" "$GEMMA" data dedup "$D/docs.jsonl" --out /dev/null --mode near --threshold 0.95
# Text input with a separator, text output: the repeated story goes, the rest come out in order.
run 0 "exact_duplicate" "$GEMMA" data dedup --sep '<|endoftext|>' "$D/stories.txt" --out "$TMP/st.txt" --out-format text --out-sep $'\n<|endoftext|>\n'
expect "text output" "$(grep -c '<|endoftext|>' "$TMP/st.txt") $(head -c 11 "$TMP/st.txt") $(grep -c 'red kite' "$TMP/st.txt")" "4 Tom had a r 1"

# ---- decontaminate -----------------------------------------------------------------------------------------
run 0 "contaminated" "$GEMMA" data decontaminate --eval "$D/eval.jsonl" "$D/docs.jsonl" --out "$TMP/c.jsonl" --matches "$TMP/m.jsonl"
expect "decontaminate kept" "$(ids "$TMP/c.jsonl")" "good1 short code good1-copy good1-near good2 pii repeat"
got=$("$PY" -c 'import json,sys; m=[json.loads(l) for l in open(sys.argv[1])]; print(len(m), m[0]["doc"], len(m[0]["gm_ngram"].split()))' "$TMP/m.jsonl")
expect "matches" "$got" "1 6 13"
run 0 "report mode" "$GEMMA" data decontaminate --eval "$D/eval.jsonl" --action report "$D/docs.jsonl" --out "$TMP/c2.jsonl" --stats "$TMP/c_stats.json"
cmp -s "$D/docs.jsonl" "$TMP/c2.jsonl" || fail "report mode changed the output"
pass=$((pass + 1))
got=$("$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["reasons"]["contaminated"]["docs"], s["dropped"]["docs"], s["ngram"])' "$TMP/c_stats.json")
expect "decontaminate stats" "$got" "1 0 13"
# A 13-gram with one word changed is not a match (the riddle differs in its last word).
sed 's/rotting in the rain/rotting in the snow/' "$D/eval.jsonl" | sed 's/wooden boat/wooden ship/' > "$TMP/eval2.jsonl"
run 0 "kept 9" "$GEMMA" data decontaminate --eval "$TMP/eval2.jsonl" "$D/docs.jsonl" --out /dev/null
# Directories give their data files.
mkdir -p "$TMP/evals" && cp "$D/eval.jsonl" "$TMP/evals/" && echo "not data" > "$TMP/evals/README.md"
run 0 "from 1 evaluation files" "$GEMMA" data decontaminate --eval "$TMP/evals" "$D/docs.jsonl" --out /dev/null

# ---- pii -----------------------------------------------------------------------------------------------------
run 0 "EMAIL" "$GEMMA" data pii "$D/docs.jsonl" --out "$TMP/p.jsonl"
got=$("$PY" -c 'import json,sys; d={x["id"]:x for x in map(json.loads, open(sys.argv[1]))}; t=d["pii"]["text"]; print("[EMAIL]" in t, "@" in t, d["pii"]["meta"]["tags"], len(d))' "$TMP/p.jsonl")
expect "pii redact" "$got" "True False ['a', 'b'] 9"
run 0 "kept 8" "$GEMMA" data pii "$D/docs.jsonl" --action drop --out /dev/null
run 0 "kept 9" "$GEMMA" data pii "$D/docs.jsonl" --action drop --severity sensitive --out /dev/null

# ---- streaming, threads, oversize, stdin ----------------------------------------------------------------------
"$PY" - "$D/stories.txt" "$TMP/big.txt" <<'EOF'
import random, sys
random.seed(1)
stories = open(sys.argv[1]).read().split("\n<|endoftext|>\n")
out = []
for i in range(3000):
    s = random.choice(stories).split(" ")
    for _ in range(random.randint(0, 3)):
        s[random.randrange(len(s))] = "w%d" % random.randrange(100)
    out.append(" ".join(s))
open(sys.argv[2], "w").write("\n<|endoftext|>\n".join(out))
EOF
for cmd in filter dedup; do
    run 0 "3000 documents" "$GEMMA" data $cmd --sep '<|endoftext|>' "$TMP/big.txt" --out "$TMP/t1.jsonl" -t 1
    run 0 "3000 documents" "$GEMMA" data $cmd --sep '<|endoftext|>' "$TMP/big.txt" --out "$TMP/t3.jsonl" -t 3
    cmp -s "$TMP/t1.jsonl" "$TMP/t3.jsonl" || fail "$cmd: output differs between 1 and 3 threads"
    pass=$((pass + 1))
done
run 0 "oversize" "$GEMMA" data filter "$D/docs.jsonl" --out /dev/null --disable all --max-doc-bytes 700 --rejected "$TMP/o.jsonl"
run 0 "oversize" "$GEMMA" data dedup --sep '<|endoftext|>' "$TMP/big.txt" --out /dev/null --max-doc-bytes 300
got=$(cat "$D/docs.jsonl" | "$GEMMA" data filter --format jsonl - -q | wc -l)
expect "stdin" "$got" "6"
got=$("$GEMMA" data filter --split blank "$D/stories.txt" --disable all -q | wc -l)
expect "blank-line split" "$got" "1"

# ---- errors ----------------------------------------------------------------------------------------------------
run 2 "usage" "$GEMMA" data
run 2 "unknown subcommand" "$GEMMA" data bogus
run 2 "no input files" "$GEMMA" data filter
run 2 "unknown option" "$GEMMA" data filter --bogus "$D/docs.jsonl"
run 2 "--min-words" "$GEMMA" data filter --min-words abc "$D/docs.jsonl"
run 2 "unknown rule" "$GEMMA" data filter --disable nope "$D/docs.jsonl"
run 2 "--score-field needs" "$GEMMA" data filter --score-field quality "$D/docs.jsonl"
run 2 "threshold" "$GEMMA" data dedup --threshold 1.5 "$D/docs.jsonl"
run 2 "--mode" "$GEMMA" data dedup --mode fuzzy "$D/docs.jsonl"
run 2 "--eval FILES is required" "$GEMMA" data decontaminate "$D/docs.jsonl"
run 2 "needs a value" "$GEMMA" data decontaminate "$D/docs.jsonl" --eval
run 2 "--action" "$GEMMA" data pii --action shred "$D/docs.jsonl"
run 1 "$TMP/none.jsonl: cannot open" "$GEMMA" data filter "$TMP/none.jsonl"
printf '{"text": "fine"}\n{"text": broken}\n' > "$TMP/bad.jsonl"
run 1 "$TMP/bad.jsonl: line 2" "$GEMMA" data filter "$TMP/bad.jsonl" --out /dev/null
printf '{"body": "no text field"}\n' > "$TMP/nofield.jsonl"
run 1 "string \"text\" field" "$GEMMA" data dedup "$TMP/nofield.jsonl" --out /dev/null
run 0 "kept 1" "$GEMMA" data dedup "$TMP/nofield.jsonl" --field body --out /dev/null
run 1 "no numeric score field" "$GEMMA" data filter "$TMP/nofield.jsonl" --field body --disable all --score-field q --max-score 1 --out /dev/null
printf '\037\213\010\000' > "$TMP/eval.jsonl.gz"
run 1 "decompress" "$GEMMA" data decontaminate --eval "$TMP/eval.jsonl.gz" "$D/docs.jsonl" --out /dev/null
run 1 "cannot open evaluation set" "$GEMMA" data decontaminate --eval "$TMP/nope.jsonl" "$D/docs.jsonl"
run 1 "cannot create" "$GEMMA" data filter "$D/docs.jsonl" --out "$TMP/no/such/dir/out.jsonl"
cp "$D/docs.jsonl" "$TMP/in.jsonl"
run 2 "is also an input" "$GEMMA" data dedup "$TMP/in.jsonl" --out "$TMP/in.jsonl"
cmp -s "$D/docs.jsonl" "$TMP/in.jsonl" || fail "the refused run still truncated its input"
pass=$((pass + 1))

echo "$pass passed, 0 failed"
