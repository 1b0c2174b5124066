#!/usr/bin/env bash
# Bad input end to end through the real binary: broken model directories make `gemma generate` and
# `gemma logits` exit 1 with a message naming the file (never a signal or a hang), usage errors exit 2,
# prompts past the context and ids past the vocabulary exit 1. Usage: test_bad_input.sh BUILD_DIR
set -u
BUILD=${1:?usage: test_bad_input.sh BUILD_DIR}
GEMMA=$BUILD/gemma
GOLDEN=tests/golden/mqa_bf16/model
[ -x "$GEMMA" ] || { echo "FAIL: $GEMMA not built"; exit 1; }
[ -f "$GOLDEN/model.safetensors" ] || { echo "FAIL: run from the repository root ($GOLDEN missing)"; exit 1; }
PY=$(command -v python3 || command -v /usr/bin/python3) || { echo "FAIL: python3 needed to build the bad models"; exit 1; }

# In a sanitizer build a report must not pass for the expected "exit 1": give it its own exit code.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=86"

TMP=$(mktemp -d /tmp/gm_cli_bad.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
pass=0

# Build the bad model directories from the golden one (stdlib only: json + struct).
"$PY" - "$GOLDEN" "$TMP" <<'EOF' || { echo "FAIL: could not build the bad model directories"; exit 1; }
import json, os, shutil, struct, sys
golden, root = sys.argv[1], sys.argv[2]
raw = open(os.path.join(golden, "model.safetensors"), "rb").read()
hlen = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + hlen])
data = raw[8 + hlen:]
config = open(os.path.join(golden, "config.json")).read()

def make(name, st=None, cfg=None, extra=None):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(config if cfg is None else cfg)
    if st is not None:
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(st)
    for fname, body in (extra or {}).items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(body)

def pack(h, body=data, hlen=None):
    hb = json.dumps(h).encode()
    return struct.pack("<Q", len(hb) if hlen is None else hlen) + hb + body

def mutated(fn):
    h = json.loads(json.dumps(header))
    fn(h)
    return pack(h)

make("truncated", st=raw[:5])
make("cut_data", st=raw[:len(raw) - 1000])
make("hlen_past", st=struct.pack("<Q", len(raw)) + raw[8:])
make("hlen_huge", st=struct.pack("<Q", 1 << 63) + raw[8:])
make("hdr_not_json", st=struct.pack("<Q", 9) + b"{not json" + data)
make("bad_dtype", st=mutated(lambda h: h["model.norm.weight"].update(dtype="I64")))
make("overlap", st=mutated(lambda h: h["model.norm.weight"].update(data_offsets=[0, 192])))
make("missing_tensor", st=mutated(lambda h: h.pop("model.layers.1.mlp.up_proj.weight")))
extra = {"dtype": "BF16", "shape": [2], "data_offsets": [len(data), len(data) + 4]}
make("extra_tensor", st=pack(dict(header, **{"lm_head.weight": extra}), data + b"\0" * 4))
make("q_transposed", st=mutated(lambda h: h["model.layers.0.self_attn.q_proj.weight"].update(shape=[96, 128])))
make("shape_overflow", st=mutated(lambda h: h["model.norm.weight"].update(shape=[4294967296] * 3)))
make("cfg_malformed", st=raw, cfg=config[: len(config) // 2])
make("cfg_no_hidden", st=raw, cfg=json.dumps({k: v for k, v in json.loads(config).items() if k != "hidden_size"}))
make("cfg_llama", st=raw, cfg=json.dumps(dict(json.loads(config), model_type="llama")))
make("cfg_kv3", st=raw, cfg=json.dumps(dict(json.loads(config), num_key_value_heads=3)))
index = {"metadata": {}, "weight_map": {k: "model-00001-of-00001.safetensors" for k in header if k != "__metadata__"}}
make("index_malformed", extra={"model.safetensors.index.json": b"{\"weight_map\": {", "model-00001-of-00001.safetensors": raw})
bad_index = json.loads(json.dumps(index)); bad_index["weight_map"]["model.norm.weight"] = "../x.safetensors"
make("index_dotdot", extra={"model.safetensors.index.json": json.dumps(bad_index).encode(), "model-00001-of-00001.safetensors": raw})
bad_index = json.loads(json.dumps(index)); bad_index["weight_map"]["model.norm.weight"] = "model-00009-of-00009.safetensors"
make("index_missing_shard", extra={"model.safetensors.index.json": json.dumps(bad_index).encode(), "model-00001-of-00001.safetensors": raw})
make("no_weights")
EOF

# run WANT_RC FRAGMENT CMD...: run CMD (60 s limit), require exit code WANT_RC and FRAGMENT in its output.
run() {
    local want=$1 frag=$2
    shift 2
    local out rc
    out=$(timeout 60 "$@" 2>&1 </dev/null)
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "FAIL: exit $rc (want $want): $*"
        [ "$rc" -ge 124 ] && echo "      (timeout or signal)"
        printf '%s\n' "$out" | tail -n 5 | sed 's/^/      /'
        echo "$pass passed, 1 failed"
        exit 1
    fi
    if printf '%s' "$out" | grep -qE 'Sanitizer|runtime error:'; then
        echo "FAIL: sanitizer report: $*"
        printf '%s\n' "$out" | head -n 20 | sed 's/^/      /'
        echo "$pass passed, 1 failed"
        exit 1
    fi
    if ! printf '%s' "$out" | grep -qF -- "$frag"; then
        echo "FAIL: output lacks '$frag': $*"
        printf '%s\n' "$out" | tail -n 5 | sed 's/^/      /'
        echo "$pass passed, 1 failed"
        exit 1
    fi
    pass=$((pass + 1))
}

# Each broken directory: both commands exit 1 and name the faulty file and the fault.
bad() {
    local dir=$TMP/$1 file=$2 fault=$3
    run 1 "$file" "$GEMMA" generate -m "$dir" --ids 2,3 -n 1 -q
    run 1 "$fault" "$GEMMA" generate -m "$dir" --ids 2,3 -n 1 -q
    run 1 "$file" "$GEMMA" logits -m "$dir" --ids 2,3 --out "$TMP/logits.f32"
    [ ! -e "$TMP/logits.f32" ] || { echo "FAIL: logits wrote $TMP/logits.f32 for bad model $1"; echo "$pass passed, 1 failed"; exit 1; }
}
bad truncated           "$TMP/truncated/model.safetensors" "truncated"
bad cut_data            "$TMP/cut_data/model.safetensors" "past the data"
bad hlen_past           "$TMP/hlen_past/model.safetensors" "past the end"
bad hlen_huge           "$TMP/hlen_huge/model.safetensors" "past the end"
bad hdr_not_json        "$TMP/hdr_not_json/model.safetensors" "JSON"
bad bad_dtype           "$TMP/bad_dtype/model.safetensors" "dtype 'I64'"
bad overlap             "$TMP/overlap/model.safetensors" "overlap"
bad missing_tensor      "model.layers.1.mlp.up_proj.weight" "missing tensor"
bad extra_tensor        "$TMP/extra_tensor/model.safetensors" "unexpected tensor 'lm_head.weight'"
bad q_transposed        "$TMP/q_transposed/model.safetensors" "shape"
bad shape_overflow      "$TMP/shape_overflow/model.safetensors" "overflow"
bad cfg_malformed       "$TMP/cfg_malformed/config.json" "JSON"
bad cfg_no_hidden       "$TMP/cfg_no_hidden/config.json" "hidden_size"
bad cfg_llama           "$TMP/cfg_llama/config.json" "llama"
bad cfg_kv3             "$TMP/cfg_kv3/config.json" "multiple"
bad index_malformed     "$TMP/index_malformed/model.safetensors.index.json" "JSON"
bad index_dotdot        "$TMP/index_dotdot/model.safetensors.index.json" "model directory"
bad index_missing_shard "model-00009-of-00009.safetensors" "cannot open"
bad no_weights          "$TMP/no_weights" "no model.safetensors"
bad does_not_exist      "$TMP/does_not_exist/config.json" "cannot open"

# Usage errors exit 2.
run 2 "unknown option" "$GEMMA" generate -m "$GOLDEN" --ids 2,3 --bogus
run 2 "-m" "$GEMMA" generate --ids 2,3 -n 1
run 2 "--temp" "$GEMMA" generate -m "$GOLDEN" --ids 2,3 --temp abc
run 2 "-n" "$GEMMA" generate -m "$GOLDEN" --ids 2,3 -n -5
run 2 "--ids" "$GEMMA" generate -m "$GOLDEN" --ids 2,x,3
run 2 "needs a value" "$GEMMA" generate -m
run 2 "unknown option" "$GEMMA" logits -m "$GOLDEN" --ids 2,3 --out "$TMP/l.f32" --bogus
run 2 "required" "$GEMMA" logits -m "$GOLDEN" --ids 2,3
run 2 "" "$GEMMA" no-such-command

# A prompt longer than the context (max_position_embeddings 256) exits 1 and says so.
ids300=$(seq -s, 2 301)
run 1 "context" "$GEMMA" generate -m "$GOLDEN" --ids "$ids300" -n 1 -q
run 1 "context" "$GEMMA" logits -m "$GOLDEN" --ids "$ids300" --out "$TMP/l.f32"
run 1 "context" "$GEMMA" generate -m "$GOLDEN" --ids 2,3,4,5 -c 3 -n 1 -q
# Ids past the vocabulary (384) exit 1 and name the id.
run 1 "99999" "$GEMMA" generate -m "$GOLDEN" --ids 2,99999 -n 1 -q
run 1 "384" "$GEMMA" logits -m "$GOLDEN" --ids 2,384 --out "$TMP/l.f32"
# The control: the golden model itself works through the same commands.
run 0 "" "$GEMMA" generate -m "$GOLDEN" --ids 2,3 -n 1 -q --temp 0
run 0 "2 384" "$GEMMA" logits -m "$GOLDEN" --ids 2,3 --out "$TMP/l.f32"

echo "$pass passed, 0 failed"
