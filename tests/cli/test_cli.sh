#!/usr/bin/env bash
# End-to-end checks of the gemma program on the shipped and golden models: greedy generation through
# the CLI reproduces the PyTorch reference's continuation, the same seed gives the same text, --output-ids
# prints one JSON array, logits files have the documented shape, chat keeps going across turns, and
# invalid UTF-8 or an unknown preset is a clear error.
set -u
B=${1:?usage: test_cli.sh BUILD_DIR}
G=$B/gemma
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# 1. greedy ids through the CLI equal the reference's greedy continuation (prompt 2 of each golden case)
for case in mqa_bf16 gemma2_tiny gemma3_tiny; do
  read -r ids want < <(python3 - "$case" <<'PY'
import json, sys
p = json.load(open(f"tests/golden/{sys.argv[1]}/prompts.json"))[2]
print(",".join(map(str, p["ids"])), json.dumps(p["greedy"]).replace(" ", ""))
PY
)
  got=$("$G" generate -m "tests/golden/$case/model" --ids "$ids" -n 20 --temp 0 --output-ids -q -t 2 | tr -d ' ')
  [ "$got" = "$want" ] && ok || bad "$case greedy via CLI: got $got want $want"
done

# 2. same seed, same text; different seed, (almost surely) different text
a=$("$G" generate -m models/tiny-gemma -p "The king" -n 24 --temp 1 --seed 7 -q)
b=$("$G" generate -m models/tiny-gemma -p "The king" -n 24 --temp 1 --seed 7 -q)
c=$("$G" generate -m models/tiny-gemma -p "The king" -n 24 --temp 1 --seed 8 -q)
[ "$a" = "$b" ] && ok || bad "same seed gave different text"
[ "$a" != "$c" ] && ok || bad "different seeds gave the same text"
[ -n "$a" ] && ok || bad "no text generated"

# 3. --output-ids is one JSON array of -n ids (or fewer if a stop token came)
out=$("$G" generate -m models/tiny-gemma -p "The king" -n 5 --temp 0 --output-ids -q)
echo "$out" | python3 -c 'import json,sys; a=json.loads(sys.stdin.read()); assert isinstance(a,list) and 0<len(a)<=5 and all(isinstance(x,int) for x in a)' \
  && ok || bad "--output-ids printed '$out'"

# 4. logits: T x vocab float32, equal to the golden file for the same ids
read -r ids lf < <(python3 - <<'PY'
import json
p = json.load(open("tests/golden/mha_f32/prompts.json"))[2]
print(",".join(map(str, p["ids"])), p["logits_file"])
PY
)
shape=$("$G" logits -m tests/golden/mha_f32/model --ids "$ids" --out "$tmp/l.f32")
[ "$shape" = "17 320" ] && ok || bad "logits printed '$shape'"
python3 - "$tmp/l.f32" "tests/golden/mha_f32/$lf" <<'PY' && ok || bad "logits file differs from the reference"
import struct, sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
assert len(a) == len(b) == 17 * 320 * 4, (len(a), len(b))
x = struct.unpack(f"<{len(a)//4}f", a); y = struct.unpack(f"<{len(b)//4}f", b)
scale = max(abs(v) for v in y)
assert max(abs(p - q) for p, q in zip(x, y)) <= 1e-4 * scale
PY

# 5. chat: two turns on stdin, two replies, exit 0
printf 'Hello there\nAnd again\n' | "$G" chat -m models/tiny-gemma -n 8 --temp 0 >"$tmp/chat.out" 2>"$tmp/chat.err"
rc=$?
[ $rc = 0 ] && ok || bad "chat exited $rc: $(tail -n 3 "$tmp/chat.err")"
[ "$(wc -l <"$tmp/chat.out")" -ge 2 ] && ok || bad "chat printed fewer than two replies"

# 6. invalid UTF-8 in a prompt: exit 1 with a message saying so
"$G" generate -m models/tiny-gemma -p "$(printf 'abc\xff\xfe')" -n 2 -q >/dev/null 2>"$tmp/err"
rc=$?
[ $rc = 1 ] && grep -qi "utf-8" "$tmp/err" && ok || bad "invalid UTF-8 prompt: exit $rc, $(cat "$tmp/err")"

# 7. info names the architecture and the tokenizer; bench refuses an unknown preset with exit 1
"$G" info -m tests/golden/gemma3_mm_prefix/model | grep -q "architecture gemma3" && ok || bad "info on gemma3"
"$G" info -m models/tiny-gemma | grep -q "tokenizer    1024 pieces" && ok || bad "info tokenizer summary"
"$G" bench --random no-such-preset -n 1 -p 1 >/dev/null 2>&1; rc=$?
[ $rc = 1 ] && ok || bad "unknown preset exit $rc"
# bench --json reports the load time and peak RSS against weights + the KV cache it allocated
"$G" bench -m models/tiny-gemma -t 1 -p 8 -n 4 -r 1 --kv-ctx 64 --no-bw --json >"$tmp/bench.json" 2>/dev/null &&
python3 - "$tmp/bench.json" <<'PY' && ok || bad "bench --json: $(tail -n 3 "$tmp/bench.json")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
load = [r for r in rows if "load_s" in r][0]
mem = [r for r in rows if "rss_ratio" in r][0]
kv = [r for r in rows if "kv_cache_tokens" in r][0]
assert load["load"] == "read into memory" and 0 <= load["load_s"] < 60, load
# the largest cache is the 64-token one asked for by --kv-ctx; the ratio is what the three numbers say
assert mem["kv_cache_bytes"] == kv["kv_cache_bytes"] > 0, (mem, kv)
assert abs(mem["rss_ratio"] - mem["peak_rss_bytes"] / (mem["weight_bytes"] + mem["kv_cache_bytes"])) < 1e-3, mem
assert [r["test"] for r in rows if "test" in r] == ["pp8", "tg4"], rows
PY

# 8. --chat wraps the prompt in the turn format: bos (by id, whatever the piece is called) + the turn text
n_raw=$("$G" generate -m models/tiny-gemma -p "Hi" -n 1 --temp 0 2>&1 >/dev/null | sed -n 's/^\([0-9]*\) prompt tokens.*/\1/p')
n_chat=$("$G" generate -m models/tiny-gemma --chat -p "Hi" -n 1 --temp 0 2>&1 >/dev/null | sed -n 's/^\([0-9]*\) prompt tokens.*/\1/p')
printf '<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n' >"$tmp/turn.txt"
want=$("$G" tokenize -m models/tiny-gemma --special -f "$tmp/turn.txt" | python3 -c 'import json,sys; a=json.load(sys.stdin); print(len(a) if a[0]==2 and 4 in a else -1)')
[ -n "$n_raw" ] && [ "$n_chat" = "$want" ] && [ "$n_chat" -gt "$n_raw" ] && ok || bad "--chat prompt: $n_chat tokens, want $want (raw $n_raw)"

echo "cli: $pass passed, $fail failed"
[ $fail = 0 ]
