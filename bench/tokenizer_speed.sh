#!/usr/bin/env bash
# Encode throughput of gemma.c against SentencePiece (Debian's python3-sentencepiece) on the same text and
# the same tokenizer.model, in one run. Usage: bench/tokenizer_speed.sh [TEXT] (default: Tiny Shakespeare)
set -eu
cd "$(dirname "$0")/.."
text=${1:-../shared/data/tinyshakespeare/input.txt}
make -s all >/dev/null
tools/ref/fetch_gemma_vocab.sh build/vocab gemma1 >/dev/null
[ -f build/vocab/gemma1/tokenizer.model ] || python3 tools/ref/json2model.py build/vocab/gemma1/tokenizer.json build/vocab/gemma1/tokenizer.model
for model in build/vocab/gemma1/tokenizer.model tests/data/tiny.model; do
  echo "--- $model on $text ($(wc -c <"$text") bytes)"
  build/bench/bench_tokenizer "$text" "$model" 5
  /usr/bin/python3 bench/spm_encode_speed.py "$text" "$model" 5
done
