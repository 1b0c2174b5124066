#!/bin/sh
# `make tiny-model`: trains models/tiny-stories, the model `make demo` runs, from nothing but the repo:
#   1. a 4096-piece SentencePiece BPE tokenizer with Gemma's options (byte fallback, split digits,
#      whitespace kept, no dummy prefix, <pad>/<eos>/<bos>/<unk> = 0/1/2/3, <start_of_turn>/<end_of_turn>),
#      trained by Debian's spm_train on data/tinystories (one thread: deterministic);
#   2. token shards of the same text (`gemma data tokenize`, stories split on <|endoftext|>);
#   3. `gemma train` of tools/tiny-stories/config.json (Gemma 1 architecture, MQA) from Gemma's init;
#   4. the last checkpoint's weights rounded to bf16, with its config, tokenizer, loss curve, training log
#      and a README holding the held-out loss.
# Usage: tools/make_tiny_model.sh [BUILD_DIR]   (env STEPS, THREADS override the recipe's defaults)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
gemma=$build/gemma
steps=${STEPS:-1200}
threads=${THREADS:-2}
work=$build/tiny-model
out=$root/models/tiny-stories
text=$root/data/tinystories/tinystories_sample.txt

command -v spm_train >/dev/null || {
    echo "make tiny-model: spm_train missing (as root: apt-get install sentencepiece)" >&2
    exit 1
}
[ -x "$gemma" ] || { echo "make tiny-model: $gemma missing (run make first)" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work/spm"

echo "== 1/4 tokenizer (spm_train, 4096 pieces)"
grep -v '^<|endoftext|>$' "$text" > "$work/spm/input.txt"
(cd "$work/spm" && spm_train --input=input.txt --model_prefix=tokenizer \
    --model_type=bpe --vocab_size=4096 --byte_fallback=true --split_digits=true \
    --add_dummy_prefix=false --remove_extra_whitespaces=false \
    --normalization_rule_name=identity --allow_whitespace_only_pieces=true \
    --pad_id=0 --eos_id=1 --bos_id=2 --unk_id=3 \
    --pad_piece='<pad>' --eos_piece='<eos>' --bos_piece='<bos>' --unk_piece='<unk>' \
    --user_defined_symbols='<start_of_turn>,<end_of_turn>' \
    --character_coverage=1.0 --input_sentence_size=0 --shuffle_input_sentence=false \
    --num_threads=1 --minloglevel=1)

echo "== 2/4 token shards"
"$gemma" data tokenize --tokenizer "$work/spm/tokenizer.model" --doc-sep '<|endoftext|>' \
    --out "$work/shards" "$text"

echo "== 3/4 training ($steps steps, $threads threads)"
"$gemma" train --config "$root/tools/tiny-stories/config.json" --tokenizer "$work/spm/tokenizer.model" \
    --data "$work/shards" --seq 256 --batch 8 --accum 1 --steps "$steps" \
    --lr 2e-3 --lr-min 2e-4 --warmup "${WARMUP:-100}" --decay cosine --wd 0.1 --clip 1.0 --seed 1 \
    --eval-every 100 --eval-batches 8 --save-every 500 --keep 1 --threads "$threads" --out "$work/run"

echo "== 4/4 export (bf16) to $out"
rm -rf "$work/export"
"$gemma" convert -q "$work/run/latest" "$work/export.gguf" --dtype bf16
"$gemma" convert -q "$work/export.gguf" "$work/export" --dtype bf16
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
# the weights rounded to bf16, the config as trained: its torch_dtype float32 keeps the embedding scale the
# model was trained with (sqrt(192) = 13.856; a bfloat16 config would round it to 13.875)
cp "$work/run/latest/config.json" "$work/export/model.safetensors" "$out.tmp/"
cp "$work/spm/tokenizer.model" "$out.tmp/tokenizer.model"
cp "$work/run/loss.svg" "$work/run/train_log.csv" "$out.tmp/"
val=$(awk -F, 'NR > 1 && $6 != "" { v = $6 } END { printf "%.3f", v }' "$work/run/train_log.csv")
sed -e "s/@STEPS@/$steps/g" -e "s/@VAL@/$val/g" "$root/tools/tiny-stories/README.in.md" > "$out.tmp/README.md"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "wrote $out (held-out loss $val)"
