#!/bin/sh
# Train tests/data/tiny.model: a 1024-piece SentencePiece BPE model with Gemma's
# tokenizer options, on tinyshakespeare. Deterministic: single input file, no
# sentence sampling/shuffling (input_sentence_size=0 uses every line), one thread.
# Usage: tools/ref/train_tiny_spm.sh [INPUT_TXT] [OUT_DIR]
# spm_train flags are exactly the brief's plus determinism/quiet flags only.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
input=${1:-/work/shared/data/tinyshakespeare/input.txt}
outdir=$(cd "${2:-$root/tests/data}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# trainer_spec stores the input path and model_prefix: use fixed relative names
# so the output bytes do not depend on where this runs.
cp "$input" "$tmp/input.txt"
cd "$tmp"
spm_train --input=input.txt --model_prefix=tiny \
  --model_type=bpe --vocab_size=1024 --byte_fallback=true --split_digits=true \
  --add_dummy_prefix=false --remove_extra_whitespaces=false \
  --normalization_rule_name=identity --allow_whitespace_only_pieces=true \
  --pad_id=0 --eos_id=1 --bos_id=2 --unk_id=3 \
  --user_defined_symbols='<start_of_turn>,<end_of_turn>' \
  --character_coverage=1.0 \
  --input_sentence_size=0 --shuffle_input_sentence=false --num_threads=1 \
  --minloglevel=1
cp "$tmp/tiny.model" "$outdir/tiny.model"
echo "wrote $outdir/tiny.model ($(wc -c < "$outdir/tiny.model") bytes)"
