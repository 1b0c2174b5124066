#!/usr/bin/python3
"""Independent reference of ggml's block quantizers (Q8_0, Q4_0, Q4_K, Q6_K), written from the published
algorithms in ggml-quants.c (quantize_row_*_ref, make_qkx2_quants, make_qx_quants, dequantize_row_*),
in numpy float32 arithmetic evaluated in source order (no fused multiply-add), and the generator of the
golden files under tests/golden/quant/.

    /usr/bin/python3 tools/ref/quant_ref.py [OUTDIR]     (default tests/golden/quant)

Writes input.f32 (the test vectors, little-endian f32), one file per type with the expected quantized
bytes (q8_0.bin, q4_0.bin, q4_K.bin, q6_K.bin), q8_K.bin (ggml's Q8_K activation blocks: f32 d,
256 int8, 16 int16 sums) and manifest.txt with an FNV-1a 64 hash of each dequantized row's f32 bits.
Slow on purpose (scalar loops mirror the C); the vectors are a few thousand values.
"""
import os
import struct
import sys

import numpy as np

F = np.float32


def nearest_int(f):
    """ggml's nearest_int: add 1.5 * 2^23 in float32 and read the low mantissa bits (round half even)."""
    v = np.array([F(f) + F(12582912.0)], dtype=np.float32).view(np.int32)[0]
    return int((int(v) & 0x007FFFFF) - 0x00400000)


def f2h(f):
    """float32 -> IEEE half bits, round to nearest even."""
    return int(np.array([F(f)], dtype=np.float32).astype(np.float16).view(np.uint16)[0])


def h2f(h):
    return F(np.array([h], dtype=np.uint16).view(np.float16)[0])


def clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def c_round(f):
    """C roundf: half away from zero."""
    f = float(f)
    r = np.floor(abs(f) + 0.5)
    return int(r) if f >= 0 else -int(r)


# ---- Q8_0: f16 d, 32 int8 ------------------------------------------------------------------------

def quantize_q8_0(x):
    out = bytearray()
    for b in range(0, len(x), 32):
        xb = x[b:b + 32]
        amax = F(0)
        for v in xb:
            av = F(abs(v))
            amax = amax if amax > av else av
        d = F(amax / F(127))
        idd = F(F(1) / d) if d != 0 else F(0)
        out += struct.pack('<H', f2h(d))
        for v in xb:
            out += struct.pack('<b', c_round(F(v * idd)))
    return bytes(out)


def dequantize_q8_0(q, n):
    y = []
    for b in range(n // 32):
        blk = q[34 * b:34 * b + 34]
        d = h2f(struct.unpack_from('<H', blk, 0)[0])
        for j in range(32):
            y.append(F(F(struct.unpack_from('<b', blk, 2 + j)[0]) * d))
    return np.array(y, dtype=np.float32)


# ---- Q4_0: f16 d, 16 bytes of nibbles; elements 0..15 low nibbles, 16..31 high ----------------------

def quantize_q4_0(x):
    out = bytearray()
    for b in range(0, len(x), 32):
        xb = x[b:b + 32]
        amax, mx = F(0), F(0)
        for v in xb:
            if amax < F(abs(v)):
                amax, mx = F(abs(v)), F(v)
        d = F(mx / F(-8))
        idd = F(F(1) / d) if d != 0 else F(0)
        out += struct.pack('<H', f2h(d))
        for j in range(16):
            q = []
            for v in (xb[j], xb[j + 16]):
                t = F(F(v * idd) + F(8.5))
                q.append(min(15, int(t)))  # C: (int8_t) truncation toward zero, t >= 0.5 here
            out.append(q[0] | (q[1] << 4))
    return bytes(out)


def dequantize_q4_0(q, n):
    y = np.zeros(n, dtype=np.float32)
    for b in range(n // 32):
        blk = q[18 * b:18 * b + 18]
        d = h2f(struct.unpack_from('<H', blk, 0)[0])
        for j in range(16):
            y[32 * b + j] = F(F((blk[2 + j] & 0xF) - 8) * d)
            y[32 * b + j + 16] = F(F((blk[2 + j] >> 4) - 8) * d)
    return y


# ---- Q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles --------------------

def make_qkx2_quants(n, nmax, x, w, rmin, rdelta, nstep, use_mad):
    """Returns (scale, the_min, L)."""
    mn, mx = x[0], x[0]
    sum_w = w[0]
    sum_x = F(sum_w * x[0])
    for i in range(1, n):
        if x[i] < mn:
            mn = x[i]
        if x[i] > mx:
            mx = x[i]
        sum_w = F(sum_w + w[i])
        sum_x = F(sum_x + F(w[i] * x[i]))
    if mn > 0:
        mn = F(0)
    if mx == mn:
        return F(0), F(-mn), [0] * n
    iscale = F(F(nmax) / F(mx - mn))
    scale = F(F(1) / iscale)
    L = [0] * n
    best_error = F(0)
    for i in range(n):
        l = nearest_int(F(iscale * F(x[i] - mn)))
        L[i] = clamp(l, 0, nmax)
        diff = F(F(F(scale * F(L[i])) + mn) - x[i])
        diff = F(abs(diff)) if use_mad else F(diff * diff)
        best_error = F(best_error + F(w[i] * diff))
    if nstep < 1:
        return scale, F(-mn), L
    for step in range(nstep + 1):
        iscale = F(F(F(rmin + F(rdelta * F(step))) + F(nmax)) / F(mx - mn))
        sum_l, sum_l2, sum_xl = F(0), F(0), F(0)
        Laux = [0] * n
        for i in range(n):
            l = clamp(nearest_int(F(iscale * F(x[i] - mn))), 0, nmax)
            Laux[i] = l
            fl = F(l)
            sum_l = F(sum_l + F(w[i] * fl))
            sum_l2 = F(sum_l2 + F(F(w[i] * fl) * fl))
            sum_xl = F(sum_xl + F(F(w[i] * fl) * x[i]))
        D = F(F(sum_w * sum_l2) - F(sum_l * sum_l))
        if D > 0:
            this_scale = F(F(F(sum_w * sum_xl) - F(sum_x * sum_l)) / D)
            this_min = F(F(F(sum_l2 * sum_x) - F(sum_l * sum_xl)) / D)
            if this_min > 0:
                this_min = F(0)
                this_scale = F(sum_xl / sum_l2)
            cur_error = F(0)
            for i in range(n):
                diff = F(F(F(this_scale * F(Laux[i])) + this_min) - x[i])
                diff = F(abs(diff)) if use_mad else F(diff * diff)
                cur_error = F(cur_error + F(w[i] * diff))
            if cur_error < best_error:
                L = list(Laux)
                best_error = cur_error
                scale = this_scale
                mn = this_min
    return scale, F(-mn), L


def q4k_scale_min(j, s):
    if j < 4:
        return s[j] & 63, s[j + 4] & 63
    return (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)


def quantize_q4_K(x):
    out = bytearray()
    for b in range(0, len(x), 256):
        xb = [F(v) for v in x[b:b + 256]]
        L = [0] * 256
        scales, mins = [F(0)] * 8, [F(0)] * 8
        max_scale, max_min = F(0), F(0)
        for j in range(8):
            sub = xb[32 * j:32 * j + 32]
            sum_x2 = F(0)
            for v in sub:
                sum_x2 = F(sum_x2 + F(v * v))
            av_x = F(np.sqrt(F(sum_x2 / F(32))))
            w = [F(av_x + F(abs(v))) for v in sub]
            scales[j], mins[j], L[32 * j:32 * j + 32] = make_qkx2_quants(32, 15, sub, w, F(-1.0), F(0.1), 20, False)
            if scales[j] > max_scale:
                max_scale = scales[j]
            if mins[j] > max_min:
                max_min = mins[j]
        inv_scale = F(F(63) / max_scale) if max_scale > 0 else F(0)
        inv_min = F(F(63) / max_min) if max_min > 0 else F(0)
        sc = [0] * 12
        for j in range(8):
            ls = min(63, nearest_int(F(inv_scale * scales[j])) & 0xFF)
            lm = min(63, nearest_int(F(inv_min * mins[j])) & 0xFF)
            if j < 4:
                sc[j] = ls
                sc[j + 4] = lm
            else:
                sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
                sc[j - 4] |= (ls >> 4) << 6
                sc[j] |= (lm >> 4) << 6
        dh, dminh = f2h(F(max_scale / F(63))), f2h(F(max_min / F(63)))
        for j in range(8):
            s, m = q4k_scale_min(j, sc)
            d = F(h2f(dh) * F(s))
            if d == 0:
                continue
            dm = F(h2f(dminh) * F(m))
            for i in range(32):
                L[32 * j + i] = clamp(nearest_int(F(F(xb[32 * j + i] + dm) / d)), 0, 15)
        qs = bytearray()
        for j in range(0, 256, 64):
            for l in range(32):
                qs.append(L[j + l] | (L[j + l + 32] << 4))
        out += struct.pack('<HH', dh, dminh) + bytes(sc) + bytes(qs)
    return bytes(out)


def dequantize_q4_K(q, n):
    y = []
    for b in range(n // 256):
        blk = q[144 * b:144 * b + 144]
        d, mn = h2f(struct.unpack_from('<H', blk, 0)[0]), h2f(struct.unpack_from('<H', blk, 2)[0])
        s, qs = blk[4:16], blk[16:144]
        for j in range(0, 8, 2):
            sc1, m1 = q4k_scale_min(j, s)
            sc2, m2 = q4k_scale_min(j + 1, s)
            d1, mm1 = F(d * F(sc1)), F(mn * F(m1))
            d2, mm2 = F(d * F(sc2)), F(mn * F(m2))
            part = qs[16 * j:16 * j + 32]
            y += [F(F(d1 * F(v & 0xF)) - mm1) for v in part]
            y += [F(F(d2 * F(v >> 4)) - mm2) for v in part]
    return np.array(y, dtype=np.float32)


# ---- Q6_K: 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d ----------------------------------------

GROUP_MAX_EPS = F(1e-15)


def make_qx_quants(n, nmax, x):
    """rmse_type 1, no importance weights: returns (scale, L) with L in 0..2*nmax-1."""
    mx, amax = F(0), F(0)
    for v in x:
        if F(abs(v)) > amax:
            amax, mx = F(abs(v)), v
    if amax < GROUP_MAX_EPS:
        return F(0), [0] * n
    iscale = F(F(-nmax) / mx)
    sumlx, suml2 = F(0), F(0)
    L = [0] * n
    for i in range(n):
        l = clamp(nearest_int(F(iscale * x[i])), -nmax, nmax - 1)
        L[i] = l + nmax
        w = F(x[i] * x[i])
        sumlx = F(sumlx + F(F(w * x[i]) * F(l)))
        suml2 = F(suml2 + F(F(w * F(l)) * F(l)))
    scale = F(sumlx / suml2) if suml2 != 0 else F(0)
    best = F(scale * sumlx)
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = F(F(-F(F(nmax) + F(F(0.1) * F(step)))) / mx)
        sumlx, suml2 = F(0), F(0)
        for i in range(n):
            l = clamp(nearest_int(F(iscale * x[i])), -nmax, nmax - 1)
            w = F(x[i] * x[i])
            sumlx = F(sumlx + F(F(w * x[i]) * F(l)))
            suml2 = F(suml2 + F(F(w * F(l)) * F(l)))
        if suml2 > 0 and F(sumlx * sumlx) > F(best * suml2):
            for i in range(n):
                L[i] = nmax + clamp(nearest_int(F(iscale * x[i])), -nmax, nmax - 1)
            scale = F(sumlx / suml2)
            best = F(scale * sumlx)
    return scale, L


def quantize_q6_K(x):
    out = bytearray()
    for b in range(0, len(x), 256):
        xb = [F(v) for v in x[b:b + 256]]
        L = [0] * 256
        scales = [F(0)] * 16
        max_scale, max_abs_scale = F(0), F(0)
        for ib in range(16):
            scales[ib], L[16 * ib:16 * ib + 16] = make_qx_quants(16, 32, xb[16 * ib:16 * ib + 16])
            if F(abs(scales[ib])) > max_abs_scale:
                max_abs_scale, max_scale = F(abs(scales[ib])), scales[ib]
        if max_abs_scale < GROUP_MAX_EPS:
            out += bytes(210)
            continue
        iscale = F(F(-128) / max_scale)
        dh = f2h(F(F(1) / iscale))
        sc = [min(127, nearest_int(F(iscale * scales[ib]))) for ib in range(16)]
        for j in range(16):
            d = F(h2f(dh) * F(sc[j]))
            if d == 0:
                continue
            for i in range(16):
                L[16 * j + i] = clamp(nearest_int(F(xb[16 * j + i] / d)), -32, 31) + 32
        ql, qh = bytearray(128), bytearray(64)
        for h, j in enumerate(range(0, 256, 128)):
            for l in range(32):
                q1, q2 = L[j + l] & 0xF, L[j + l + 32] & 0xF
                q3, q4 = L[j + l + 64] & 0xF, L[j + l + 96] & 0xF
                ql[64 * h + l] = q1 | (q3 << 4)
                ql[64 * h + l + 32] = q2 | (q4 << 4)
                qh[32 * h + l] = ((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6))
        out += bytes(ql) + bytes(qh) + struct.pack('<16b', *sc) + struct.pack('<H', dh)
    return bytes(out)


def dequantize_q6_K(q, n):
    y = np.zeros(n, dtype=np.float32)
    for b in range(n // 256):
        blk = q[210 * b:210 * b + 210]
        d = h2f(struct.unpack_from('<H', blk, 208)[0])
        sc = struct.unpack_from('<16b', blk, 192)
        for h in range(2):
            ql, qh = blk[64 * h:64 * h + 64], blk[128 + 32 * h:128 + 32 * h + 32]
            for l in range(32):
                qs = [(ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4), (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                      (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4), (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)]
                for i in range(4):
                    e = 128 * h + l + 32 * i
                    y[256 * b + e] = F(F(d * F(sc[e // 16])) * F(qs[i] - 32))
    return y


# ---- Q8_K (ggml's activation blocks for the K types) ----------------------------------------------

def quantize_q8_K(x):
    out = bytearray()
    for b in range(0, len(x), 256):
        xb = [F(v) for v in x[b:b + 256]]
        mx, amax = F(0), F(0)
        for v in xb:
            if F(abs(v)) > amax:
                amax, mx = F(abs(v)), v
        if amax == 0:
            out += struct.pack('<f', 0.0) + bytes(256) + bytes(32)
            continue
        iscale = F(F(-127) / mx)
        q = [min(127, nearest_int(F(iscale * v))) for v in xb]
        out += struct.pack('<f', float(F(F(1) / iscale))) + struct.pack('<256b', *q)
        out += struct.pack('<16h', *[sum(q[16 * j:16 * j + 16]) for j in range(16)])
    return bytes(out)


# ---- test vectors ---------------------------------------------------------------------------------

def test_vectors():
    """Twelve 256-value rows covering the interesting cases (deterministic: an LCG, no numpy RNG)."""
    state = [0x12345678]

    def u01():
        state[0] = (state[0] * 6364136223846793005 + 1442695040888963407) & (2 ** 64 - 1)
        return ((state[0] >> 11) + 0.5) / 2.0 ** 53

    def gauss():
        return float(np.sqrt(-2.0 * np.log(u01())) * np.cos(2.0 * np.pi * u01()))

    rows = []
    rows.append([gauss() for _ in range(256)])                                  # normal
    rows.append([2.0 * u01() - 1.0 for _ in range(256)])                        # uniform
    rows.append([0.0] * 256)                                                    # all zero
    rows.append([0.5] * 128 + [-0.25] * 128)                                    # constant halves
    r = [0.01 * gauss() for _ in range(256)]
    r[77] = 100.0
    rows.append(r)                                                              # one outlier
    rows.append([1e-7 * gauss() for _ in range(256)])                           # scales underflow f16
    rows.append([abs(gauss()) + 0.1 for _ in range(256)])                       # all positive (min > 0)
    rows.append([-abs(gauss()) * 300.0 for _ in range(256)])                    # all negative, large
    rows.append([gauss() * 2.0 ** (j // 32 - 4) for j in range(256)])           # sub-block scales vary
    rows.append([(j % 32 - 16) * 0.5 + (0.25 if j % 3 == 0 else 0.0) for j in range(256)])  # ties
    rows.append([gauss() if u01() < 0.1 else 0.0 for _ in range(256)])          # sparse
    rows.append([float(np.tan(np.pi * (u01() - 0.5))) * 0.1 for _ in range(256)])  # heavy tail
    return np.array(rows, dtype=np.float32).reshape(-1)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


TYPES = [('q8_0', quantize_q8_0, dequantize_q8_0), ('q4_0', quantize_q4_0, dequantize_q4_0),
         ('q4_K', quantize_q4_K, dequantize_q4_K), ('q6_K', quantize_q6_K, dequantize_q6_K)]


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else 'tests/golden/quant'
    os.makedirs(outdir, exist_ok=True)
    x = test_vectors()
    with open(os.path.join(outdir, 'input.f32'), 'wb') as f:
        f.write(x.astype('<f4').tobytes())
    lines = ['# Generated by tools/ref/quant_ref.py: FNV-1a 64 of the dequantized f32 bits, per type and row',
             '# (rows of 256 values of input.f32).']
    for name, quant, dequant in TYPES:
        q = quant(x)
        with open(os.path.join(outdir, name + '.bin'), 'wb') as f:
            f.write(q)
        y = dequant(q, len(x)).astype('<f4')
        for r in range(len(x) // 256):
            lines.append('%s %d %016x' % (name, r, fnv1a64(y[256 * r:256 * r + 256].tobytes())))
    with open(os.path.join(outdir, 'q8_K.bin'), 'wb') as f:
        f.write(quantize_q8_K(x))
    with open(os.path.join(outdir, 'manifest.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
