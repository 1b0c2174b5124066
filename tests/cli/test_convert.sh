#!/usr/bin/env bash
# `gemma convert` end to end through the real binary: HF -> GGUF gives the reference's greedy ids (text
# prompts too, through the tokenizer in the GGUF metadata), q8_0 / q4_0 / --random files load and
# generate, GGUF -> HF directory loads to the same ids and converts back byte for byte, and bad input is
# exit 2 (usage) or exit 1 with a message naming the file -- never a signal.
# Usage: bash tests/cli/test_convert.sh BUILD_DIR
set -u
B=${1:?usage: test_convert.sh BUILD_DIR}
G=$B/gemma
[ -x "$G" ] || { echo "FAIL: $G not built"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 needed"; exit 1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=86"
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d /tmp/gm_convert.XXXXXX); trap 'rm -rf "$tmp"' EXIT
TINY_IDS="[583,64,65,408,905,905,897,897,748,595,64,461,516,924,274,93,1001,592,65,935]" # models/tiny-gemma/README.md

# expect_fail CODE NEEDLE CMD...: exit code CODE and NEEDLE in stderr
expect_fail() {
  local code=$1 needle=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc = "$code" ] && grep -qF -- "$needle" "$tmp/err"; then ok
  else bad "'$*' exited $rc (want $code), stderr: $(head -c 300 "$tmp/err")"; fi
}

# 1. HF -> GGUF (default dtype: the checkpoint's bf16): the README's greedy ids, and the same text
"$G" convert -q models/tiny-gemma "$tmp/tiny.gguf" && ok || bad "convert tiny-gemma failed"
got=$("$G" generate -m "$tmp/tiny.gguf" --ids 2,858,983 -n 20 --temp 0 --output-ids -q | tr -d ' ')
[ "$got" = "$TINY_IDS" ] && ok || bad "tiny.gguf greedy: got $got"
a=$("$G" generate -m models/tiny-gemma -p "ROMEO:" -n 12 --temp 0 -q)
b=$("$G" generate -m "$tmp/tiny.gguf" -p "ROMEO:" -n 12 --temp 0 -q)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "text prompt through the GGUF tokenizer: '$b' vs '$a'"
"$G" info -m "$tmp/tiny.gguf" >"$tmp/info" 2>&1 && grep -q "tokenizer    1024 pieces, bos 2, eos 1" "$tmp/info" \
  && grep -q "blk.3.ffn_down.weight.*BF16" "$tmp/info" && ok || bad "info on the GGUF: $(head -c 400 "$tmp/info")"

# 2. golden Gemma 2 / Gemma 3 checkpoints: GGUF f32 keeps the reference's greedy continuation
for case in mqa_bf16 gemma2_tiny gemma3_tiny; do
  read -r ids want < <(python3 - "$case" <<'PY'
import json, sys
p = json.load(open(f"tests/golden/{sys.argv[1]}/prompts.json"))[2]
print(",".join(map(str, p["ids"])), json.dumps(p["greedy"]).replace(" ", ""))
PY
)
  "$G" convert -q "tests/golden/$case/model" "$tmp/$case.gguf" --dtype f32 || bad "convert $case failed"
  got=$("$G" generate -m "$tmp/$case.gguf" --ids "$ids" -n 20 --temp 0 --output-ids -q | tr -d ' ')
  [ "$got" = "$want" ] && ok || bad "$case.gguf greedy: got $got want $want"
done

# 3. quantized files and a random benchmark file load and generate
for t in q8_0 q4_0 f16; do
  "$G" convert -q models/tiny-gemma "$tmp/tiny_$t.gguf" --dtype "$t" && ok || bad "convert --dtype $t failed"
  got=$("$G" generate -m "$tmp/tiny_$t.gguf" --ids 2,858,983 -n 8 --temp 0 --output-ids -q)
  echo "$got" | python3 -c 'import json,sys; a=json.load(sys.stdin); assert len(a)==8' && ok || bad "tiny_$t.gguf generate: '$got'"
done
"$G" info -m "$tmp/tiny_q8_0.gguf" | grep -q "blk.0.attn_q.weight.*Q8_0" && ok || bad "q8_0 file does not hold Q8_0 matrices"
"$G" convert -q --random tiny --dtype q8_0 --out "$tmp/random.gguf" && ok || bad "convert --random failed"
got=$("$G" generate -m "$tmp/random.gguf" --ids 2,3,4 -n 5 --temp 0 --output-ids -q)
echo "$got" | python3 -c 'import json,sys; a=json.load(sys.stdin); assert len(a)==5' && ok || bad "random.gguf generate: '$got'"
# ... with a placeholder vocabulary (llama.cpp refuses a GGUF without one): Gemma's special ids, "▁",
# 256 byte pieces (so any text encodes), fillers up to the preset's 512
"$G" info -m "$tmp/random.gguf" | grep -qF "tokenizer    512 pieces, bos 2, eos 1, <start_of_turn> 106, <end_of_turn> 107" \
  && ok || bad "random.gguf tokenizer: $("$G" info -m "$tmp/random.gguf" 2>&1 | grep tokenizer)"
got=$("$G" tokenize -m "$tmp/random.gguf" "Hi there")
[ "$got" = "[2, 77, 112, 4, 123, 111, 108, 121, 108]" ] && ok || bad "random.gguf tokenize: $got"
s='Hi  there, ü <b> 12'
got=$("$G" detokenize -m "$tmp/random.gguf" "$("$G" tokenize -m "$tmp/random.gguf" "$s")")
[ "$got" = "$s" ] && ok || bad "random.gguf detokenize(tokenize(s)): '$got'"
python3 - "$tmp/random.gguf" <<'PY' && ok || bad "random.gguf tokenizer metadata"
import struct, sys
b = open(sys.argv[1], "rb").read()
o = 24; kv = {}
def rd(f, n): global o; v = struct.unpack_from(f, b, o); o += n; return v[0]
def s(): n = rd("<Q", 8); global o; o += n; return b[o - n:o].decode()
F = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
def val(t):
    if t == 8: return s()
    if t == 9:
        et, n = rd("<I", 4), rd("<Q", 8)
        return [val(et) for _ in range(n)]
    return rd(F[t], struct.calcsize(F[t]))
for _ in range(struct.unpack_from("<Q", b, 16)[0]):
    k = s(); kv[k] = val(rd("<I", 4))
tok, ty, sc = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"], kv["tokenizer.ggml.scores"]
assert kv["tokenizer.ggml.model"] == "llama" and len(tok) == len(ty) == len(sc) == 512
assert tok[:4] == ["<pad>", "<eos>", "<bos>", "<unk>"] and ty[:4] == [3, 3, 3, 2], (tok[:4], ty[:4])
assert tok[106:108] == ["<start_of_turn>", "<end_of_turn>"] and tok[4] == "\u2581"
assert sorted(t for t, y in zip(tok, ty) if y == 6) == ["<0x%02X>" % i for i in range(256)]
assert len(set(tok)) == 512 and all(tok) and ty.count(2) == 1
assert (kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"], kv["tokenizer.ggml.padding_token_id"],
        kv["tokenizer.ggml.unknown_token_id"]) == (2, 1, 0, 3)
PY

# 4. GGUF -> HF directory -> GGUF: same ids, same text, same bytes
"$G" convert -q "$tmp/tiny.gguf" "$tmp/tiny_hf" && ok || bad "GGUF -> HF failed"
[ -f "$tmp/tiny_hf/config.json" ] && [ -f "$tmp/tiny_hf/model.safetensors" ] && [ -f "$tmp/tiny_hf/tokenizer.model" ] \
  && ok || bad "HF directory incomplete: $(ls "$tmp/tiny_hf" 2>&1)"
got=$("$G" generate -m "$tmp/tiny_hf" --ids 2,858,983 -n 20 --temp 0 --output-ids -q | tr -d ' ')
[ "$got" = "$TINY_IDS" ] && ok || bad "HF directory from the GGUF: got $got"
c=$("$G" generate -m "$tmp/tiny_hf" -p "ROMEO:" -n 12 --temp 0 -q)
[ "$c" = "$a" ] && ok || bad "HF directory from the GGUF, text: '$c' vs '$a'"
"$G" convert -q "$tmp/tiny_hf" "$tmp/tiny2.gguf" && cmp -s "$tmp/tiny.gguf" "$tmp/tiny2.gguf" && ok \
  || bad "GGUF -> HF -> GGUF is not byte-identical"
"$G" convert -q "$tmp/tiny_q8_0.gguf" "$tmp/deq_hf" --dtype f32 && "$G" info -m "$tmp/deq_hf" | grep -q "F32" \
  && ok || bad "q8_0 GGUF -> f32 directory failed"

# 5. usage errors: exit 2
expect_fail 2 "an input" "$G" convert
expect_fail 2 "unknown --dtype 'q3_k'" "$G" convert models/tiny-gemma "$tmp/x.gguf" --dtype q3_k
expect_fail 2 "the input must then be a .gguf file" "$G" convert models/tiny-gemma "$tmp/outdir"
expect_fail 2 "not q8_0" "$G" convert "$tmp/tiny.gguf" "$tmp/outdir" --dtype q8_0
expect_fail 2 "--random needs --dtype" "$G" convert --random tiny --out "$tmp/r.gguf"
expect_fail 2 "must end in .gguf" "$G" convert --random tiny --dtype f32 --out "$tmp/r.bin"

# 6. runtime errors: exit 1, the file named, no output file left behind
expect_fail 1 "unknown preset 'nope'" "$G" convert --random nope --dtype f32 --out "$tmp/r.gguf"
expect_fail 1 "$tmp/missing" "$G" convert "$tmp/missing" "$tmp/x.gguf"
[ ! -e "$tmp/x.gguf" ] && ok || bad "a failed conversion left $tmp/x.gguf"
head -c 5000 "$tmp/tiny.gguf" >"$tmp/trunc.gguf"
expect_fail 1 "$tmp/trunc.gguf" "$G" generate -m "$tmp/trunc.gguf" --ids 2,3 -n 2 -q
expect_fail 1 "$tmp/trunc.gguf" "$G" convert "$tmp/trunc.gguf" "$tmp/y.gguf"
python3 - "$tmp/tiny.gguf" "$tmp/huge.gguf" <<'PY' || bad "could not build huge.gguf"
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[8:16] = (1 << 40).to_bytes(8, "little")  # the tensor count
open(sys.argv[2], "wb").write(b)
PY
expect_fail 1 "$tmp/huge.gguf: tensor count 1099511627776 cannot fit" "$G" generate -m "$tmp/huge.gguf" --ids 2 -n 1 -q

# tokenize and detokenize take a GGUF file for -m and read its tokenizer.ggml.* metadata
a=$("$G" tokenize -m "$tmp/tiny.gguf" "The king said, 12345")
b=$("$G" tokenize -m models/tiny-gemma "The king said, 12345")
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "tokenize -m tiny.gguf: '$a' vs '$b'"
t=$("$G" detokenize -m "$tmp/tiny.gguf" "$b")
[ "$t" = "The king said, 12345" ] && ok || bad "detokenize -m tiny.gguf: '$t'"

echo "test_convert: $pass passed, $fail failed"
[ $fail = 0 ]
