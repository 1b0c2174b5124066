#!/usr/bin/env node
// Encode every string of tests/data/tok_strings.jsonl with @lenml/tokenizers
// (a JavaScript port of the transformers.js / HF tokenizers encoder) on Gemma's
// HF tokenizer.json (Gemma 1 or Gemma 3), add_special_tokens=false. Output, one line per string:
//   {"ids":[...]}
// This is a second opinion only; SentencePiece (make_tok_goldens.py) is the
// ground truth.
//
// Usage: node tools/ref/make_tok_goldens_hf.js VOCAB_DIR STRINGS_JSONL OUT_JSONL
//   VOCAB_DIR holds tokenizer.json and tokenizer_config.json
//   (tools/ref/fetch_gemma_vocab.sh build/vocab -> build/vocab/gemma1, build/vocab/gemma3):
//     node tools/ref/make_tok_goldens_hf.js build/vocab/gemma1 tests/data/tok_strings.jsonl tests/golden/tok_gemma1_hf.jsonl
//     node tools/ref/make_tok_goldens_hf.js build/vocab/gemma3 tests/data/tok_strings.jsonl tests/golden/tok_gemma3_hf.jsonl
//   Nothing here is Gemma-version specific: @lenml/tokenizers also handles Gemma 3's Split
//   pre-tokenizer and its merges written as [a, b] pairs.
// @lenml/tokenizers is installed on first use into build/ref-node (ignored by
// git), pinned below; set REF_NODE_DIR to use another directory.
"use strict";
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");
const { createRequire } = require("module");

const PKG = "@lenml/tokenizers";
const VER = "3.7.2";

function die(msg) {
  process.stderr.write("make_tok_goldens_hf: " + msg + "\n");
  process.exit(1);
}

if (process.argv.length !== 5) {
  die("usage: make_tok_goldens_hf.js VOCAB_DIR STRINGS_JSONL OUT_JSONL");
}
const [vocabDir, stringsPath, outPath] = process.argv.slice(2);
const root = path.resolve(__dirname, "..", "..");
const nodeDir = process.env.REF_NODE_DIR || path.join(root, "build", "ref-node");

function loadLib() {
  const pkgJson = path.join(nodeDir, "node_modules", PKG, "package.json");
  let ok = false;
  try {
    ok = JSON.parse(fs.readFileSync(pkgJson, "utf8")).version === VER;
  } catch (e) {
    ok = false;
  }
  if (!ok) {
    fs.mkdirSync(nodeDir, { recursive: true });
    if (!fs.existsSync(path.join(nodeDir, "package.json"))) {
      fs.writeFileSync(path.join(nodeDir, "package.json"), '{"private": true}\n');
    }
    process.stderr.write(`make_tok_goldens_hf: npm install ${PKG}@${VER} into ${nodeDir}\n`);
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--save-exact",
                         "--prefix", nodeDir, `${PKG}@${VER}`], { stdio: ["ignore", 2, 2] });
  }
  const req = createRequire(path.join(nodeDir, "package.json"));
  return req(PKG);
}

const { TokenizerLoader } = loadLib();
const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(vocabDir, "tokenizer.json"), "utf8"));
const tokenizerConfig = JSON.parse(
  fs.readFileSync(path.join(vocabDir, "tokenizer_config.json"), "utf8"));
const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });

const lines = fs.readFileSync(stringsPath, "utf8").split("\n").filter((l) => l.length > 0);
const out = [];
const t0 = Date.now();
for (const line of lines) {
  const { text } = JSON.parse(line);
  const ids = tok.encode(text, { add_special_tokens: false });
  if (!Array.isArray(ids)) die("unexpected encode() result");
  out.push(JSON.stringify({ ids: ids.map(Number) }));
}
fs.writeFileSync(outPath, out.join("\n") + "\n");
process.stderr.write(
  `make_tok_goldens_hf: ${lines.length} strings, ${PKG}@${VER}, node ${process.version}, ` +
  `${Date.now() - t0} ms -> ${outPath}\n`);
