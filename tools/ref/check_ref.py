#!/usr/bin/python3
"""Validates tools/ref/gemma_ref.py and the goldens in tests/golden/.

    /usr/bin/python3 tools/ref/check_ref.py

1. Determinism: make_goldens.py re-run into a temp dir is byte-identical to tests/golden/.
2. safetensors: every stored file is re-parsed by a second, numpy-only parser (header layout,
   8-byte padding, contiguous offsets, index total_size / weight_map) and equals the weights
   make_goldens draws (single-file bf16/f16 cases and the sharded f32 case).
3. Model: a second implementation (numpy, float64, token-by-token with a KV cache, explicit
   per-head loops, complex-number RoPE as in gemma_pytorch, query pre-scaled) reproduces every
   golden logit to 1e-5 * max|ref| and every greedy continuation.
4. Sensitivity: known porting bugs move the logits by far more than the C tests' 1e-4 tolerance.
"""
import filecmp, json, math, os, struct, sys, tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GOLD = os.path.join(ROOT, "tests", "golden")
sys.path.insert(0, HERE)
import gemma_ref  # noqa: E402
import make_goldens as mg  # noqa: E402


# ------------------------------------------------------------------ 2. independent parser
def parse_safetensors(path):
    buf = open(path, "rb").read()
    n = struct.unpack("<Q", buf[:8])[0]
    assert n % 8 == 0, "header not padded to 8"
    raw = buf[8:8 + n]
    assert raw.rstrip(b" ").endswith(b"}"), "header padding must be spaces"
    hdr = json.loads(raw)
    assert hdr.pop("__metadata__") == {"format": "pt"}
    data = buf[8 + n:]
    size = {"F32": 4, "F16": 2, "BF16": 2}
    spans, out = [], {}
    for name, info in hdr.items():
        b, e = info["data_offsets"]
        assert e - b == size[info["dtype"]] * int(np.prod(info["shape"], dtype=np.int64)), name
        spans.append((b, e))
        if info["dtype"] == "F32":
            a = np.frombuffer(data, "<f4", (e - b) // 4, b).astype(np.float64)
        elif info["dtype"] == "F16":
            a = np.frombuffer(data, "<f2", (e - b) // 2, b).astype(np.float64)
        else:   # bf16 = upper half of an IEEE float32
            u = np.frombuffer(data, "<u2", (e - b) // 2, b).astype(np.uint32) << 16
            a = u.view(np.float32).astype(np.float64)
        out[name] = (info["dtype"], a.reshape(info["shape"]))
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == len(data), "data section not fully covered"
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1)), "gaps/overlaps"
    return out


def load_dir(model_dir):
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if not os.path.exists(idx):
        return parse_safetensors(os.path.join(model_dir, "model.safetensors"))
    index = json.load(open(idx))
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1
    w, total = {}, 0
    for f in files:
        part = parse_safetensors(os.path.join(model_dir, f))
        for k, (dt, a) in part.items():
            assert index["weight_map"][k] == f and k not in w
            total += a.size * (4 if dt == "F32" else 2)
        w.update(part)
    assert set(w) == set(index["weight_map"]) and total == index["metadata"]["total_size"]
    return w


# ------------------------------------------------------------------ 3. second implementation
def round_to(x, torch_dtype):
    if torch_dtype == "float16":
        return float(np.float16(x))
    if torch_dtype == "bfloat16":   # round-to-nearest-even on the float32 bit pattern
        u = int(np.array([x], np.float32).view(np.uint32)[0])
        u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
        return float(np.array([u], np.uint32).view(np.float32)[0])
    return x


class NumpyGemma:
    """Token-at-a-time forward with a KV cache. `bug` injects one known porting mistake."""

    def __init__(self, model_dir, bug=None):
        c = json.load(open(os.path.join(model_dir, "config.json")))
        self.c, self.bug = c, bug
        self.w = {k: a for k, (_, a) in load_dir(model_dir).items()}
        self.d, self.L, self.H, self.K = (c["hidden_size"], c["num_hidden_layers"],
                                          c["num_attention_heads"], c["num_key_value_heads"])
        self.hd = c["head_dim"]
        self.norm_scale = math.sqrt(self.d) if bug == "unrounded_normalizer" \
            else round_to(math.sqrt(self.d), c["torch_dtype"])
        self.q_scale = 1.0 if bug == "no_query_scale" else self.hd ** -0.5
        half = self.hd // 2
        self.freq = 1.0 / (c["rope_theta"] ** (np.arange(0, self.hd, 2)[:half] / self.hd))

    def norm(self, x, w):
        w = w if self.bug == "no_unit_offset" else 1.0 + w
        return x / np.sqrt(np.mean(x * x) + self.c["rms_norm_eps"]) * w

    def act(self, x):
        if self.bug == "gelu_erf":
            return 0.5 * x * (1.0 + torch.erf(torch.from_numpy(x) / math.sqrt(2.0)).numpy())
        return torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()

    def rope(self, x, pos):   # x: [heads, hd]
        half = self.hd // 2
        rot = np.exp(1j * pos * self.freq)
        if self.bug == "interleaved_rope":
            z = (x[:, 0::2] + 1j * x[:, 1::2]) * rot
            out = np.empty_like(x)
            out[:, 0::2], out[:, 1::2] = z.real, z.imag
            return out
        z = (x[:, :half] + 1j * x[:, half:]) * rot
        return np.concatenate([z.real, z.imag], axis=1)

    def run(self, ids, n_new=0):
        """Returns (logits for every prompt position [T, V], greedy continuation of n_new)."""
        w, hd = self.w, self.hd
        cache = [([], []) for _ in range(self.L)]
        out, new, tok, pos = [], [], None, 0
        seq = list(ids)
        while pos < len(seq):
            x = w["model.embed_tokens.weight"][seq[pos]] * self.norm_scale
            for l in range(self.L):
                p = f"model.layers.{l}."
                a = self.norm(x, w[p + "input_layernorm.weight"])
                q = (w[p + "self_attn.q_proj.weight"] @ a).reshape(self.H, hd)
                k = (w[p + "self_attn.k_proj.weight"] @ a).reshape(self.K, hd)
                v = (w[p + "self_attn.v_proj.weight"] @ a).reshape(self.K, hd)
                q = self.rope(q, pos) * self.q_scale
                cache[l][0].append(self.rope(k, pos))
                cache[l][1].append(v)
                Ks, Vs = np.stack(cache[l][0]), np.stack(cache[l][1])   # [pos+1, K, hd]
                heads = []
                for h in range(self.H):
                    kv = h % self.K if self.bug == "kv_mod" else h // (self.H // self.K)
                    s = Ks[:, kv, :] @ q[h]
                    e = np.exp(s - s.max())
                    heads.append((e / e.sum()) @ Vs[:, kv, :])
                x = x + w[p + "self_attn.o_proj.weight"] @ np.concatenate(heads)
                m = self.norm(x, w[p + "post_attention_layernorm.weight"])
                g = self.act(w[p + "mlp.gate_proj.weight"] @ m) * (w[p + "mlp.up_proj.weight"] @ m)
                x = x + w[p + "mlp.down_proj.weight"] @ g
            logits = w["model.embed_tokens.weight"] @ self.norm(x, w["model.norm.weight"])
            if pos < len(ids):
                out.append(logits)
            if pos >= len(ids) - 1 and len(new) < n_new:
                tok = int(np.argmax(logits))
                new.append(tok)
                seq.append(tok)
            pos += 1
        return np.stack(out), new


def golden(case):
    d = os.path.join(GOLD, case)
    V = json.load(open(os.path.join(d, "model", "config.json")))["vocab_size"]
    for p in json.load(open(os.path.join(d, "prompts.json"))):
        ref = np.fromfile(os.path.join(d, p["logits_file"]), "<f4").reshape(-1, V)
        assert ref.shape[0] == len(p["ids"])
        yield p, ref


def main():
    # 1. determinism / freshness
    with tempfile.TemporaryDirectory() as tmp:
        seeds = {name: mg.make_case(tmp, name, c)[2] for name, c in mg.CASES.items()}
        cmp = filecmp.dircmp(tmp, GOLD)
        def same(dc):
            assert not dc.left_only and not dc.diff_files and not dc.funny_files, \
                (dc.left, dc.left_only, dc.diff_files)
            for sub in dc.subdirs.values():
                same(sub)
            for f in dc.same_files:   # dircmp compares shallowly; compare bytes
                assert filecmp.cmp(os.path.join(dc.left, f), os.path.join(dc.right, f), False)
        same(cmp)
    print("1. regenerated goldens are byte-identical to tests/golden")

    # 2. safetensors round trip (both parsers vs the drawn weights)
    for name, c in mg.CASES.items():
        drawn = mg.random_weights(c, seeds[name])
        mdir = os.path.join(GOLD, name, "model")
        mine, theirs = load_dir(mdir), gemma_ref.load_weights(mdir)
        assert set(mine) == set(drawn) == set(theirs)
        for k, t in drawn.items():
            dt, a = mine[k]
            assert dt == gemma_ref.ST_NAMES[t.dtype] and theirs[k].dtype == t.dtype
            assert np.array_equal(a, t.double().numpy()), k
            assert torch.equal(theirs[k], t), k
        sharded = os.path.exists(os.path.join(mdir, "model.safetensors.index.json"))
        print(f"2. {name}: {len(drawn)} tensors round-trip ({'sharded' if sharded else 'single file'},"
              f" {c['torch_dtype']}, weight seed {seeds[name]})")

    # 3. second implementation vs goldens; 4. sensitivity
    tol = 1e-5
    bugs = ["gelu_erf", "unrounded_normalizer", "interleaved_rope", "no_unit_offset",
            "no_query_scale", "kv_mod"]
    for name in mg.CASES:
        mdir = os.path.join(GOLD, name, "model")
        np_model, worst = NumpyGemma(mdir), 0.0
        for p, ref in golden(name):
            ours, new = np_model.run(p["ids"], len(p["greedy"]))
            err = np.abs(ours - ref).max() / np.abs(ref).max()
            worst = max(worst, err)
            assert err <= tol, (name, len(p["ids"]), err)
            assert new == p["greedy"], (name, len(p["ids"]), new, p["greedy"])
        print(f"3. {name}: KV-cache numpy f64 vs golden: max rel err {worst:.2e} (<= {tol}),"
              f" greedy identical")
        line = []
        for bug in bugs:
            m, e = NumpyGemma(mdir, bug), 0.0
            for p, ref in golden(name):
                if len(p["ids"]) < 17:
                    continue
                e = max(e, np.abs(m.run(p["ids"])[0] - ref).max() / np.abs(ref).max())
            line.append(f"{bug} {e:.1e}" + ("" if e > 1e-4 else " (no effect here)"))
        print(f"4. {name}: rel err with bug: " + ", ".join(line))
    # the reference's GELU formula against torch's own tanh-approximate GELU
    x = torch.linspace(-8, 8, 10001)
    assert torch.allclose(gemma_ref.gelu_tanh(x), torch.nn.functional.gelu(x, approximate="tanh"),
                          atol=1e-6)
    print("ok")


if __name__ == "__main__":
    main()
