#!/usr/bin/python3
"""Reference encode throughput of the SentencePiece library (Python binding).

Usage: /usr/bin/python3 bench/spm_encode_speed.py FILE MODEL [REPEATS]

Encodes the whole of FILE (UTF-8, e.g. ~1 MB tinyshakespeare) as one string,
REPEATS times (default 5), and prints the best time as MB/s (MB = 1e6 bytes of
UTF-8 input) plus tokens/s. Also times encoding it line by line.
"""
import sys
import time

import sentencepiece as spm


def best(fn, repeats):
    t_best, out = None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        t_best = dt if t_best is None or dt < t_best else t_best
    return t_best, out


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: spm_encode_speed.py FILE MODEL [REPEATS]")
    path, model = sys.argv[1], sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) == 4 else 5
    with open(path, encoding="utf-8") as f:
        text = f.read()
    nbytes = len(text.encode("utf-8"))
    sp = spm.SentencePieceProcessor(model_file=model)

    t, ids = best(lambda: sp.encode(text), repeats)
    print("sentencepiece %s  model %s (%d pieces)" % (spm.__version__, model, sp.get_piece_size()))
    print("whole text : %.3f MB, %d tokens, best of %d: %.3f s = %.2f MB/s, %.0f tok/s"
          % (nbytes / 1e6, len(ids), repeats, t, nbytes / 1e6 / t, len(ids) / t))
    lines = text.splitlines(keepends=True)
    t, ids_l = best(lambda: sp.encode(lines, num_threads=1), repeats)
    ntok = sum(len(x) for x in ids_l)
    print("per line   : %d lines (1 thread), %d tokens, best of %d: %.3f s = %.2f MB/s, %.0f tok/s"
          % (len(lines), ntok, repeats, t, nbytes / 1e6 / t, ntok / t))


if __name__ == "__main__":
    main()
