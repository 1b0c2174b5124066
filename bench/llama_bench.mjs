#!/usr/bin/env node
// llama.cpp speed on a GGUF file through node-llama-cpp (its prebuilt CPU binaries), measured the way
// llama-bench and `gemma bench` measure: for each thread count and test, one warm-up run, then R
// repetitions, each on a cleared sequence (llama_memory_clear); ppN = N random tokens in one batch,
// tgN = N random tokens fed one at a time. Both compute the last token's logits, as llama-bench does.
// t/s = mean ± sd over the repetitions. Weights are read into memory (useMmap: false = llama-bench
// --mmap 0), CPU only. Prints a table in `gemma bench`'s format.
//
// usage: node bench/llama_bench.mjs -m FILE.gguf [-p 128,512] [-n 64,128] [-t 1,2] [-r 3] [--fa auto|on|off]
// node-llama-cpp (pinned below) is installed with npm on first use into
// $NODE_LLAMA_CPP_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/gemma.c/node-llama-cpp), never into the repo.
import { execFileSync } from "node:child_process";
import { closeSync, createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, openSync, readSync,
    renameSync, rmSync, statSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { pathToFileURL } from "node:url";

const PKG = "node-llama-cpp@3.21.1";
const HELP = "usage: node bench/llama_bench.mjs -m FILE.gguf [-p LIST] [-n LIST] [-t LIST] [-r N] [--fa auto|on|off]\n" +
    "  -p LIST  prompt sizes (default 128,512)    -n LIST  generation lengths (default 64,128)\n" +
    "  -t LIST  thread counts (default 1)         -r N     repetitions (default 3)\n" +
    "  --fa     flash attention (default auto, node-llama-cpp's and llama.cpp's default)\n" +
    `  --install-only  install ${PKG} into the cache folder and exit\n` +
    "  --prepare FILE.gguf DIR  print the file llama.cpp should load: FILE itself, or, if FILE has no tokenizer,\n" +
    "                  DIR/NAME.vocab.gguf, a copy with a placeholder vocabulary (made once)\n";

function die(msg, code = 2) {
    process.stderr.write(`llama_bench.mjs: ${msg}\n`);
    process.exit(code);
}

function parseList(s, name) {
    if (s === "0") return [];
    const v = s.split(",").map(Number);
    if (!v.every((x) => Number.isInteger(x) && x > 0)) die(`bad value for ${name}: '${s}'`);
    return v;
}

const opt = { model: null, pp: [128, 512], tg: [64, 128], threads: [1], reps: 3, fa: "auto", installOnly: false, prepare: null };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === "-h" || a === "--help") { process.stdout.write(HELP); process.exit(0); }
    if (a === "--install-only") { opt.installOnly = true; continue; }
    if (v === undefined) die(`unknown option or missing value '${a}'\n${HELP}`);
    if (a === "--prepare") { if (argv[i + 2] === undefined) die("--prepare takes FILE.gguf DIR"); opt.prepare = [v, argv[i + 2]]; i += 2; continue; }
    i++;
    if (a === "-m" || a === "--model") opt.model = v;
    else if (a === "-p" || a === "--n-prompt") opt.pp = parseList(v, a);
    else if (a === "-n" || a === "--n-gen") opt.tg = parseList(v, a);
    else if (a === "-t" || a === "--threads") opt.threads = parseList(v, a);
    else if (a === "-r" || a === "--reps") { opt.reps = Number(v); if (!Number.isInteger(opt.reps) || opt.reps < 1) die(`bad -r '${v}'`); }
    else if (a === "--fa") { if (!["auto", "on", "off"].includes(v)) die(`bad --fa '${v}'`); opt.fa = v; }
    else die(`unknown option '${a}'\n${HELP}`);
}

// ---- GGUF files without a tokenizer -------------------------------------------------------------------
// llama.cpp refuses a GGUF without tokenizer.ggml.* (and a "none" vocabulary rejects every token id), but
// `gemma convert --random` writes none. The copy made here has the same header and the same tensor bytes,
// plus a placeholder SentencePiece vocabulary of the embedding's size (Gemma's special ids, 256 byte
// tokens, then "▁tN" pieces): what is timed is unchanged.
const GT = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STR: 8, ARR: 9, U64: 10, I64: 11, F64: 12 };
const SCALAR = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

function readGgufHeader(file) {
    const fd = openSync(file, "r");
    try {
        for (let size = 1 << 20; ; size *= 4) {
            const buf = Buffer.alloc(Math.min(size, statSync(file).size));
            readSync(fd, buf, 0, buf.length, 0);
            try {
                return parseGgufHeader(buf);
            } catch (e) {
                if (!(e instanceof RangeError) || buf.length === statSync(file).size) throw e;
            }
        }
    } finally {
        closeSync(fd);
    }
}

function parseGgufHeader(b) {
    if (b.toString("latin1", 0, 4) !== "GGUF") throw new Error("not a GGUF file");
    const version = b.readUInt32LE(4);
    if (version < 2) throw new Error(`GGUF version ${version} is not supported here`);
    const nTensors = Number(b.readBigUInt64LE(8)), nKv = Number(b.readBigUInt64LE(16));
    let o = 24;
    const str = () => { const n = Number(b.readBigUInt64LE(o)); const s = b.toString("utf8", o + 8, o + 8 + n); if (o + 8 + n > b.length) throw new RangeError("short"); o += 8 + n; return s; };
    const skip = (t) => {
        if (t === GT.STR) return str();
        if (t === GT.ARR) { const et = b.readUInt32LE(o), n = Number(b.readBigUInt64LE(o + 4)); o += 12; for (let i = 0; i < n; i++) skip(et); return n; }
        if (!(t in SCALAR)) throw new Error(`bad GGUF value type ${t}`);
        const v = t === GT.U32 ? b.readUInt32LE(o) : undefined;
        o += SCALAR[t];
        if (o > b.length) throw new RangeError("short");
        return v;
    };
    const kv = {};
    for (let i = 0; i < nKv; i++) { const k = str(); const t = b.readUInt32LE(o); o += 4; kv[k] = skip(t); }
    const kvEnd = o, tensors = {};
    for (let i = 0; i < nTensors; i++) {
        const name = str(), nd = b.readUInt32LE(o); o += 4;
        const dims = []; for (let d = 0; d < nd; d++, o += 8) dims.push(Number(b.readBigUInt64LE(o)));
        o += 12; // type u32, offset u64
        if (o > b.length) throw new RangeError("short");
        tensors[name] = dims;
    }
    const align = kv["general.alignment"] ?? 32;
    return { nTensors, nKv, kv, kvEnd, infoEnd: o, dataStart: Math.ceil(o / align) * align, align, tensors, raw: b };
}

function ggufStr(s) { const v = Buffer.from(s, "utf8"), n = Buffer.alloc(8); n.writeBigUInt64LE(BigInt(v.length)); return Buffer.concat([n, v]); }
function ggufKv(key, type, value) {
    const t = Buffer.alloc(4); t.writeUInt32LE(type);
    if (type === GT.STR) return Buffer.concat([ggufStr(key), t, ggufStr(value)]);
    const v = Buffer.alloc(4); v.writeUInt32LE(value);
    return Buffer.concat([ggufStr(key), t, v]);
}
function ggufArr(key, et, values) {
    const h = Buffer.alloc(16); h.writeUInt32LE(GT.ARR, 0); h.writeUInt32LE(et, 4); h.writeBigUInt64LE(BigInt(values.length), 8);
    let body;
    if (et === GT.STR) body = Buffer.concat(values.map(ggufStr));
    else { body = Buffer.alloc(4 * values.length); values.forEach((x, i) => (et === GT.F32 ? body.writeFloatLE(x, 4 * i) : body.writeInt32LE(x, 4 * i))); }
    return Buffer.concat([ggufStr(key), h.subarray(0, 4), h.subarray(4), body]);
}

async function withPlaceholderVocab(file, dir) {
    const h = readGgufHeader(file);
    if ("tokenizer.ggml.model" in h.kv) return file;
    const out = join(dir, basename(file).replace(/\.gguf$/, "") + ".vocab.gguf");
    if (existsSync(out) && statSync(out).mtimeMs >= statSync(file).mtimeMs) return out;
    const emb = h.tensors["token_embd.weight"];
    if (!emb) throw new Error(`${file}: no token_embd.weight, cannot size a vocabulary`);
    const n = emb[1];
    process.stderr.write(`${file} has no tokenizer: writing ${out} with a placeholder ${n}-token vocabulary...\n`);
    const tokens = ["<pad>", "<eos>", "<bos>", "<unk>"], types = [3, 3, 3, 2];
    for (let i = 0; i < 256 && tokens.length < n; i++) tokens.push(`<0x${i.toString(16).toUpperCase().padStart(2, "0")}>`), types.push(6);
    while (tokens.length < n) tokens.push(`\u2581t${tokens.length}`), types.push(1);
    const kvs = [ggufKv("tokenizer.ggml.model", GT.STR, "llama"), ggufArr("tokenizer.ggml.tokens", GT.STR, tokens),
        ggufArr("tokenizer.ggml.scores", GT.F32, tokens.map((_, i) => (types[i] === 1 ? -i : 0))),
        ggufArr("tokenizer.ggml.token_type", GT.I32, types), ggufKv("tokenizer.ggml.bos_token_id", GT.U32, 2),
        ggufKv("tokenizer.ggml.eos_token_id", GT.U32, 1), ggufKv("tokenizer.ggml.unknown_token_id", GT.U32, 3),
        ggufKv("tokenizer.ggml.padding_token_id", GT.U32, 0)];
    const head = Buffer.from(h.raw.subarray(0, h.kvEnd));
    head.writeBigUInt64LE(BigInt(h.nKv + kvs.length), 16);
    let hdr = Buffer.concat([head, ...kvs, h.raw.subarray(h.kvEnd, h.infoEnd)]);
    hdr = Buffer.concat([hdr, Buffer.alloc(Math.ceil(hdr.length / h.align) * h.align - hdr.length)]);
    const tmp = out + ".part";
    const ws = createWriteStream(tmp);
    ws.write(hdr);
    await pipeline(createReadStream(file, { start: h.dataStart, highWaterMark: 1 << 22 }), ws);
    renameSync(tmp, out);
    return out;
}

if (opt.prepare) {
    mkdirSync(opt.prepare[1], { recursive: true });
    console.log(await withPlaceholderVocab(opt.prepare[0], opt.prepare[1]));
    process.exit(0);
}

const cacheDir = process.env.NODE_LLAMA_CPP_DIR ||
    join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "gemma.c", "node-llama-cpp");
const entry = join(cacheDir, "node_modules", "node-llama-cpp", "dist", "index.js");
if (!existsSync(entry)) {
    process.stderr.write(`installing ${PKG} into ${cacheDir} (once)...\n`);
    mkdirSync(cacheDir, { recursive: true });
    // --ignore-scripts: the prebuilt binaries come as optional dependencies; the postinstall step would
    // only try to build llama.cpp from source where none fits, which is not what is measured here.
    execFileSync("npm", ["install", "--prefix", cacheDir, "--no-audit", "--no-fund", "--ignore-scripts",
        "--no-save", PKG], { stdio: ["ignore", "inherit", "inherit"] });
}
if (opt.installOnly) process.exit(0);
if (!opt.model) die(`give -m FILE.gguf\n${HELP}`);
if (!existsSync(opt.model)) die(`no such file: ${opt.model}`, 1);

let modelPath = opt.model;
if (!("tokenizer.ggml.model" in readGgufHeader(opt.model).kv)) {
    const dir = mkdtempSync(join(tmpdir(), "llama_bench-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    modelPath = await withPlaceholderVocab(opt.model, dir);
}
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);
// maxThreads 0: the context's `threads` is then the exact count used, not a hint.
const llama = await getLlama({ gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error });
const t0 = performance.now();
const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: false, ignoreMemorySafetyChecks: true });
process.stderr.write(`llama.cpp (${PKG}, ${llama.buildType} build, llama.cpp ${llama.llamaCppRelease?.release ?? "?"}): ` +
    `loaded ${opt.model} in ${((performance.now() - t0) / 1000).toFixed(1)} s, mmap ${model.useMmap}\n`);

const vocab = model.fileInsights.tokens?.vocabularySize ?? model.tokens?.vocabularySize ??
    model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length;
if (!vocab) die("cannot tell the vocabulary size", 1);
let rng = 88172645463325252n; // the same xorshift as `gemma bench` (ids differ only if the vocabularies do)
const M64 = (1n << 64n) - 1n;
function randId() {
    rng ^= (rng << 13n) & M64; rng ^= rng >> 7n; rng ^= (rng << 17n) & M64;
    return Number(rng % BigInt(vocab));
}

const maxLen = Math.max(1, ...opt.pp, ...opt.tg);
const label = model.typeDescription;
const sizeGB = model.size / 1e9, paramsB = model.fileInsights.totalParameters / 1e9;
const pad = (s, n, left = false) => (left ? String(s).padEnd(n) : String(s).padStart(n));
console.log(`| ${pad("model", 18, true)} | ${pad("size", 9)} | ${pad("params", 8)} | ${pad("threads", 7)} | ${pad("test", 7)} | ${pad("t/s", 16)} |`);
console.log(`| ${"-".repeat(18)} | ${"-".repeat(9)} | ${"-".repeat(8)} | ${"-".repeat(7)} | ${"-".repeat(7)} | ${"-".repeat(16)} |`);
// Evaluate tokens with the last one's logits computed and nothing sampled, as llama-bench does. This is
// what node-llama-cpp's own embedding and ranking contexts call (`_noSampling`, pinned version); the
// public alternative, controlledEvaluate with generateNext, would add a greedy pick over the vocabulary.
async function evalTokens(seq, ids) {
    const it = seq.evaluate(ids, { _noSampling: true });
    if (!(await it.next()).done) throw new Error("node-llama-cpp sampled a token: _noSampling is not honoured");
}

for (const th of opt.threads) {
    const context = await model.createContext({
        contextSize: maxLen, batchSize: Math.max(1, ...opt.pp), threads: { ideal: th, min: th }, sequences: 1,
        flashAttention: opt.fa === "auto" ? undefined : opt.fa === "on",
        // Dispatch each batch at once instead of on the next event-loop turn: less overhead per token.
        batching: { dispatchSchedule: (dispatch) => queueMicrotask(dispatch) },
    });
    const seq = context.getSequence();
    for (const [kind, lens] of [["pp", opt.pp], ["tg", opt.tg]]) {
        for (const len of lens) {
            let sum = 0, sum2 = 0;
            for (let r = -1; r < opt.reps; r++) { // r = -1 is the warm-up run
                const ids = Array.from({ length: len }, randId);
                await seq.clearHistory();
                const a = performance.now();
                if (kind === "pp") await evalTokens(seq, ids);
                else for (const id of ids) await evalTokens(seq, [id]);
                const dt = (performance.now() - a) / 1000;
                if (r < 0) continue;
                const tps = len / dt;
                sum += tps; sum2 += tps * tps;
            }
            const mean = sum / opt.reps, v = sum2 / opt.reps - mean * mean;
            console.log(`| ${pad(label, 18, true)} | ${pad(sizeGB.toFixed(2), 6)} GB | ${pad(paramsB.toFixed(2), 6)} B | ` +
                `${pad(th, 7)} | ${pad(kind + len, 7)} | ${pad(mean.toFixed(2), 7)} ± ${pad((v > 0 ? Math.sqrt(v) : 0).toFixed(2), 6)} |`);
        }
    }
    await context.dispose();
}
await model.dispose();
await llama.dispose();
