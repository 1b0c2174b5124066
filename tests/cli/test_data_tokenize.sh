#!/usr/bin/env bash
# `gemma data tokenize` end to end: text (split on <|endoftext|> by default, or whole files), JSONL and
# pre-tokenized ids become shards whose token stream is exactly `gemma tokenize` of each document plus
# <eos>; headers, shard rolling and meta.json are checked by an independent Python reader; bad input
# exits 1 naming the file (and leaves no shards behind); usage errors exit 2.
# Usage: test_data_tokenize.sh BUILD_DIR
set -u
BUILD=${1:?usage: test_data_tokenize.sh BUILD_DIR}
GEMMA=$BUILD/gemma
[ -x "$GEMMA" ] || { echo "FAIL: $GEMMA not built"; exit 1; }
[ -f tests/data/tiny.model ] || { echo "FAIL: run from the repository root"; exit 1; }
PY=$(command -v python3 || command -v /usr/bin/python3) || { echo "FAIL: python3 needed to read the shards"; exit 1; }

export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=86"

# the command with the test tokenizer, and without one for --format ids
TOK=("$GEMMA" data tokenize --tokenizer tests/data/tiny.model)
IDS=("$GEMMA" data tokenize --format ids)

TMP=$(mktemp -d /tmp/gm_cli_tokenize.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
pass=0

fail() {
    echo "FAIL: $*"
    echo "$pass passed, 1 failed"
    exit 1
}

# run WANT_RC FRAGMENT CMD...: exit code WANT_RC and FRAGMENT in stderr+stdout, no sanitizer report.
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

expect() {
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
    pass=$((pass + 1))
}

# An independent shard reader: checks every header and size, prints the concatenated stream as one JSON
# array, then "shards N" and each shard's count.
cat >"$TMP/read.py" <<'EOF'
import json, os, re, struct, sys
d = sys.argv[1]
names = sorted(n for n in os.listdir(d) if re.fullmatch(r"shard_\d{5}\.bin", n))
assert names == ["shard_%05d.bin" % i for i in range(len(names))], names
ids, counts, vocab = [], [], None
for n in names:
    b = open(os.path.join(d, n), "rb").read()
    magic, ver, v, cnt, res = struct.unpack("<8sIIQQ", b[:32])
    assert magic == b"GMTOKENS" and ver == 1 and res == 0, (n, magic, ver, res)
    assert len(b) == 32 + 4 * cnt, (n, len(b), cnt)
    assert vocab in (None, v), (n, v, vocab)
    vocab = v
    t = list(struct.unpack("<%dI" % cnt, b[32:]))
    assert all(x < v for x in t), n
    ids += t
    counts.append(cnt)
print(json.dumps(ids))
print("vocab", vocab, "shards", len(names), *counts)
EOF
stream() { "$PY" "$TMP/read.py" "$1" | sed -n 1p; }
shardinfo() { "$PY" "$TMP/read.py" "$1" | tail -n 1; }
# expected stream: for each document file, `gemma tokenize` (with <bos>) + <eos> (1)
expected_text() {
    local f out="["
    for f in "$@"; do
        out="$out$("$GEMMA" tokenize --tokenizer tests/data/tiny.model -f "$f" | tr -d '[]'), 1, "
    done
    echo "${out%, }]"
}
meta() { "$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1/meta.json" "$2"; }

# ---- text: <|endoftext|> lines separate documents; documents are trimmed -------------------------------
printf 'Once upon a time, there was a little cat.\nThe cat liked milk.' >"$TMP/d1.txt"
printf 'One day, Tom saw a big red ball.' >"$TMP/d2.txt"
printf 'To be, or not to be: that is the question.\n\nWhether '"'"'tis nobler.' >"$TMP/d3.txt"
{ cat "$TMP/d1.txt"; printf '\n<|endoftext|>\n'; cat "$TMP/d2.txt"; printf '\n<|endoftext|>\n\n'; } >"$TMP/stories.txt"
{ printf '\n'; cat "$TMP/d3.txt"; printf '\n\n'; } >"$TMP/play.txt"
run 0 "tokenized 3 docs" "${TOK[@]}" "$TMP/stories.txt" "$TMP/play.txt" --out "$TMP/t1"
expect "text stream" "$(stream "$TMP/t1")" "$(expected_text "$TMP/d1.txt" "$TMP/d2.txt" "$TMP/d3.txt")"
count() { stream "$1" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
expect "text shards" "$(shardinfo "$TMP/t1")" "vocab 1024 shards 1 $(count "$TMP/t1")"
expect "meta" "$(meta "$TMP/t1" '(m["version"], m["vocab_size"], m["bos_id"], m["eos_id"], m["docs"],
    m["tokens"] == sum(s["tokens"] for s in m["shards"]) == '"$(count "$TMP/t1")"',
    [s["docs"] for s in m["sources"]], m["doc_sep"])')" "(1, 1024, 2, 1, 3, True, [2, 1], '<|endoftext|>')"
# -m MODEL gives the same ids as --tokenizer of its tokenizer.model; no partial files are left.
run 0 "tokenized 3 docs" "$GEMMA" data tokenize -m models/tiny-gemma "$TMP/stories.txt" "$TMP/play.txt" --out "$TMP/t1m"
expect "-m stream" "$(stream "$TMP/t1m")" "$(stream "$TMP/t1")"
expect "no temp files" "$(ls -A "$TMP/t1m" | tr '\n' ' ')" "meta.json shard_00000.bin "

# --doc-sep '': one document per file; a small --shard-tokens rolls shards, same stream.
cat "$TMP/d1.txt" >"$TMP/whole.txt"; printf '\n<|endoftext|>\n' >>"$TMP/whole.txt"; cat "$TMP/d2.txt" >>"$TMP/whole.txt"
run 0 "tokenized 1 docs" "${TOK[@]}" --doc-sep '' "$TMP/whole.txt" --out "$TMP/t2"
expect "whole file" "$(stream "$TMP/t2")" "$(expected_text "$TMP/whole.txt")"
n1=$(count "$TMP/t1")
want=$("$PY" -c 'import sys; n=int(sys.argv[1]); k=(n+9)//10; print("vocab 1024 shards", k, *([10]*(k-1) + [n-10*(k-1)]))' "$n1")
run 0 "in $(echo "$want" | cut -d' ' -f4) shards" "${TOK[@]}" "$TMP/stories.txt" "$TMP/play.txt" --out "$TMP/t3" \
    --shard-tokens 10
expect "rolled stream" "$(stream "$TMP/t3")" "$(stream "$TMP/t1")"
expect "rolled shards" "$(shardinfo "$TMP/t3")" "$want"

# ---- JSONL: the "text" member (another with --text-key); empty texts and blank lines are skipped -----------
cat >"$TMP/docs.jsonl" <<'EOF'
{"text": "Once upon a time, there was a little cat.\nThe cat liked milk.", "id": 1}

{"id": 2, "text": ""}
{"text": "Caf\u00e9 \"quotes\" and tabs\tok"}
EOF
printf 'Caf\xc3\xa9 "quotes" and tabs\tok' >"$TMP/d4.txt"
run 0 "tokenized 2 docs" "${TOK[@]}" "$TMP/docs.jsonl" --out "$TMP/j1"
expect "jsonl stream" "$(stream "$TMP/j1")" "$(expected_text "$TMP/d1.txt" "$TMP/d4.txt")"
expect "jsonl meta" "$(meta "$TMP/j1" '[(s["format"], s["docs"], s["empty"]) for s in m["sources"]]')" "[('jsonl', 2, 1)]"
sed 's/"text"/"body"/' "$TMP/docs.jsonl" >"$TMP/body.jsonl"
run 0 "tokenized 2 docs" "${TOK[@]}" "$TMP/body.jsonl" --text-key body --out "$TMP/j2"
expect "--text-key" "$(stream "$TMP/j2")" "$(stream "$TMP/j1")"

# ---- ids: no tokenizer; <bos>/<eos> added once (not doubled when already there) ---------------------------
printf '{"ids": [5, 6, 7]}\n{"ids": [2, 8, 9, 1]}\n{"ids": []}\n{"ids": [1023]}\n' >"$TMP/ids.jsonl"
run 0 "tokenized 3 docs" "${IDS[@]}" --vocab-size 1024 "$TMP/ids.jsonl" --out "$TMP/i1"
expect "ids stream" "$(stream "$TMP/i1")" "[2, 5, 6, 7, 1, 2, 8, 9, 1, 2, 1023, 1]"
expect "ids meta" "$(meta "$TMP/i1" '(m["tokenizer"], m["vocab_size"], m["tokens"])')" "(None, 1024, 12)"
run 0 "tokenized 3 docs" "${IDS[@]}" --vocab-size 2000 --bos 1999 --eos -1 "$TMP/ids.jsonl" --out "$TMP/i2"
expect "ids --bos/--eos" "$(stream "$TMP/i2")" "[1999, 5, 6, 7, 1999, 2, 8, 9, 1, 1999, 1023]"

# ---- runtime errors: exit 1, the message names the file (and line); nothing is left behind --------------
run 1 "$TMP/missing.txt: cannot open" "${TOK[@]}" "$TMP/missing.txt" --out "$TMP/e1"
printf '{"text": "fine"}\n{"text": broken}\n' >"$TMP/bad.jsonl"
run 1 "$TMP/bad.jsonl: line 2" "${TOK[@]}" "$TMP/bad.jsonl" --out "$TMP/e2"
expect "no shards after a failure" "$(ls "$TMP/e2" 2>/dev/null | tr '\n' ' ')" ""
printf '{"text": "fine"}\n{"txt": "no text member"}\n' >"$TMP/nokey.jsonl"
run 1 "$TMP/nokey.jsonl: line 2: expected an object with a \"text\" string" \
    "${TOK[@]}" "$TMP/nokey.jsonl" --out "$TMP/e3"
printf '{"ids": [5, 6]}\n{"ids": [5, 1024]}\n' >"$TMP/badids.jsonl"
run 1 "$TMP/badids.jsonl: line 2: \"ids\"[1] is not an integer id in [0, 1024)" \
    "${IDS[@]}" --vocab-size 1024 "$TMP/badids.jsonl" --out "$TMP/e4"
printf '{"ids": [5, 6.5]}\n' >"$TMP/floatids.jsonl"
run 1 "$TMP/floatids.jsonl: line 1" "${IDS[@]}" --vocab-size 1024 "$TMP/floatids.jsonl" --out "$TMP/e5"
run 1 "$TMP/t1: already holds token shards" "${TOK[@]}" "$TMP/play.txt" --out "$TMP/t1"
expect "earlier shards kept" "$(stream "$TMP/t1m")" "$(stream "$TMP/t1")"
printf '\n  \n' >"$TMP/blank.txt"
run 1 "no documents" "${TOK[@]}" "$TMP/blank.txt" --out "$TMP/e6"
run 1 "$TMP/play.txt: line 1: a document is longer than 20 bytes" \
    "${TOK[@]}" "$TMP/play.txt" --max-doc-bytes 20 --out "$TMP/e7"
run 1 "$TMP/d1.txt" "$GEMMA" data tokenize --tokenizer "$TMP/d1.txt" "$TMP/play.txt" --out "$TMP/e8"
printf 'bad utf-8 \xff here' >"$TMP/badutf.txt"
run 1 "$TMP/badutf.txt: line 1" "${TOK[@]}" "$TMP/badutf.txt" --out "$TMP/e9"
run 1 "is a directory" "${TOK[@]}" "$TMP" --out "$TMP/e10"

# ---- usage errors: exit 2 --------------------------------------------------------------------------------
run 2 "--out DIR is required" "${TOK[@]}" "$TMP/play.txt"
run 2 "give -m MODEL or --tokenizer FILE" "$GEMMA" data tokenize "$TMP/play.txt" --out "$TMP/u1"
run 2 "needs --vocab-size N" "${IDS[@]}" "$TMP/ids.jsonl" --out "$TMP/u2"
run 2 "is not auto, text, jsonl or ids" "${TOK[@]}" --format csv "$TMP/play.txt" --out "$TMP/u3"
run 2 "no input files" "${TOK[@]}" --out "$TMP/u4"
run 2 "differs from the tokenizer's 1024" \
    "${IDS[@]}" --vocab-size 1000 --tokenizer tests/data/tiny.model "$TMP/ids.jsonl" --out "$TMP/u5"
run 2 "--shard-tokens: '0'" "${TOK[@]}" "$TMP/play.txt" --shard-tokens 0 --out "$TMP/u6"
run 0 "usage: gemma data tokenize" "$GEMMA" data tokenize --help

echo "$pass passed, 0 failed"
