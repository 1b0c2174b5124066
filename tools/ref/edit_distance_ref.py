#!/usr/bin/env python3
"""Reference token-level edit distances for tests/unit/test_memorization.c.

Writes tests/data/memorization/edit_distance.txt: one pair per line, "DIST;A;B" with A and B as
space-separated token ids. The distance is Levenshtein's (unit-cost insertion, deletion, substitution),
computed here from its recursive definition with memoization -- written independently of the C code's
two-row table. Pairs: random sequences over small and large alphabets (many or few equal tokens),
empty sides, and sequences made from one another by a known number of random edits.
Deterministic (seed 20260601); stdlib only:  python3 tools/ref/edit_distance_ref.py
"""
import functools
import os
import random
import sys

sys.setrecursionlimit(100000)


def levenshtein(a, b):
    @functools.lru_cache(maxsize=None)
    def d(i, j):  # distance between a[:i] and b[:j]
        if i == 0:
            return j
        if j == 0:
            return i
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))


def edited(rng, a, k, vocab):
    b = list(a)
    for _ in range(k):
        op = rng.randrange(3)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(vocab)
        elif op == 1 and b:
            del b[rng.randrange(len(b))]
        else:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(vocab))
    return b


def main():
    rng = random.Random(20260601)
    pairs = [([], []), ([], [5, 6, 7]), ([1, 2, 3, 4], []), ([7], [7]), ([7], [8])]
    for _ in range(150):
        vocab = rng.choice([2, 3, 5, 20, 1000, 256000])
        a = [rng.randrange(vocab) for _ in range(rng.randrange(0, 61))]
        b = [rng.randrange(vocab) for _ in range(rng.randrange(0, 61))]
        pairs.append((a, b))
    for _ in range(150):
        vocab = rng.choice([4, 50, 1024, 256000])
        a = [rng.randrange(vocab) for _ in range(rng.randrange(1, 101))]
        pairs.append((a, edited(rng, a, rng.randrange(0, 16), vocab)))
    out = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "memorization", "edit_distance.txt")
    with open(out, "w") as f:
        for a, b in pairs:
            f.write("%d;%s;%s\n" % (levenshtein(tuple(a), tuple(b)), " ".join(map(str, a)), " ".join(map(str, b))))
    print("wrote %d pairs to %s" % (len(pairs), os.path.normpath(out)))


if __name__ == "__main__":
    main()
