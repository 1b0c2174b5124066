#!/usr/bin/python3
"""Validates tools/ref/gemma23_ref.py and the Gemma 2/3 goldens in tests/golden/.

    /usr/bin/python3 tools/ref/check_ref23.py

1. Determinism: make_goldens23.py re-run into a temp dir is byte-identical to tests/golden/.
2. safetensors: every stored file is re-parsed by check_ref.py's numpy-only parser (header
   layout, padding, contiguous offsets, index total_size / weight_map) and equals the weights
   make_goldens23 draws, names included (language_model. prefix, vision dummies).
3. Model: a second implementation (numpy, float64, token by token, its own config.json reading
   with the HF defaults, a KV cache per layer that on sliding layers is a ring of the last W
   entries, explicit per-head loops, complex-number RoPE, query pre-scaled) reproduces every
   golden logit to 1e-6 * max|ref| and every greedy continuation; the torch reference run in
   float32 instead of float64 is reported too (the error an f32 engine should expect).
4. Sensitivity: injected porting bugs, relative max error each causes per case (the C tests
   fail above 1e-4).
5. The torch reference honours an explicit "layer_types" list (newer HF configs) identically.
"""
import filecmp, json, math, os, sys, tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GOLD = os.path.join(ROOT, "tests", "golden")
sys.path.insert(0, HERE)
import gemma_ref  # noqa: E402
import gemma23_ref  # noqa: E402
import make_goldens23 as mg  # noqa: E402
from check_ref import load_dir  # noqa: E402  (numpy safetensors parser, independent of torch)


def round_bf16(x):
    u = int(np.array([x], np.float32).view(np.uint32)[0])
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return float(np.array([u], np.uint32).view(np.float32)[0])


# ------------------------------------------------------------------ 3. second implementation
G2_DEFAULTS = {"rope_theta": 10000.0, "query_pre_attn_scalar": 256, "sliding_window": 4096,
               "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
               "rms_norm_eps": 1e-6, "head_dim": 256, "rope_scaling": None}
G3_DEFAULTS = {"rope_theta": 1e6, "rope_local_base_freq": 1e4, "sliding_window_pattern": 6,
               "query_pre_attn_scalar": 256, "sliding_window": 4096, "rms_norm_eps": 1e-6,
               "final_logit_softcapping": None, "attn_logit_softcapping": None,
               "head_dim": 256, "rope_scaling": None}
BUGS = ["no_attn_cap", "no_final_cap", "window_parity", "window_plus1", "window_minus1",
        "no_window", "no_post_norms", "no_qk_norm", "global_base_10k", "local_base_1e6",
        "scale_local_too", "no_rope_scaling", "qscale_head_dim"]


class NumpyGemma23:
    """Token-at-a-time forward with a KV cache. `bug` injects one known porting mistake."""

    def __init__(self, model_dir, bug=None):
        assert bug in [None] + BUGS, bug
        self.bug = bug
        raw = json.load(open(os.path.join(model_dir, "config.json")))
        if raw["model_type"] == "gemma3":
            c, prefix, self.v3 = dict(G3_DEFAULTS), "language_model.model.", True
            c.update(raw["text_config"])
            dtype = raw["text_config"].get("torch_dtype", raw.get("torch_dtype"))
        else:
            self.v3 = raw["model_type"] == "gemma3_text"
            assert self.v3 or raw["model_type"] == "gemma2"
            c, prefix = dict(G3_DEFAULTS if self.v3 else G2_DEFAULTS), "model."
            c.update(raw)
            dtype = raw.get("torch_dtype")
        self.c = c
        w = {}
        for k, (_, a) in load_dir(model_dir).items():
            if k.startswith(prefix):
                w[k[len(prefix):]] = a
            else:   # only the multimodal parts may sit outside the text prefix
                assert k.split(".")[0] in ("vision_tower", "multi_modal_projector"), k
        self.w = w
        self.d, self.L = c["hidden_size"], c["num_hidden_layers"]
        self.H, self.K, self.hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        self.emb_scale = round_bf16(math.sqrt(self.d)) if dtype == "bfloat16" else math.sqrt(self.d)
        self.q_scale = (self.hd if bug == "qscale_head_dim" else c["query_pre_attn_scalar"]) ** -0.5
        self.attn_cap = None if bug == "no_attn_cap" else c["attn_logit_softcapping"]
        self.final_cap = None if bug == "no_final_cap" else c["final_logit_softcapping"]
        # which layers slide
        if self.v3:
            pat = c["sliding_window_pattern"]
            glob = [(i % pat == 0) if bug == "window_parity" else ((i + 1) % pat == 0)
                    for i in range(self.L)]
        else:
            glob = [(i % 2 == 0) if bug == "window_parity" else (i % 2 == 1) for i in range(self.L)]
        self.local = [not gl and bug != "no_window" for gl in glob]
        self.win = c["sliding_window"] + {"window_plus1": 1, "window_minus1": -1}.get(bug, 0)
        # RoPE tables: per layer (base, position divisor)
        rs = c.get("rope_scaling") or {}
        factor = float(rs.get("factor", 1.0)) if rs.get("rope_type", rs.get("type")) == "linear" else 1.0
        if bug == "no_rope_scaling":
            factor = 1.0
        self.rope = []
        for i in range(self.L):
            if not self.v3:
                self.rope.append((c["rope_theta"], 1.0))
            elif self.local[i] or (bug == "no_window" and not glob[i]):
                base = 1e6 if bug == "local_base_1e6" else c["rope_local_base_freq"]
                self.rope.append((base, factor if bug == "scale_local_too" else 1.0))
            else:
                base = 1e4 if bug == "global_base_10k" else c["rope_theta"]
                self.rope.append((base, factor))

    def norm(self, x, wname):
        e = self.c["rms_norm_eps"]
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + e) * (1.0 + self.w[wname])

    @staticmethod
    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    def rotate(self, x, pos, base, div):   # x: [heads, hd]; complex pairs (x_i, x_{i+hd/2})
        half = self.hd // 2
        freq = base ** (-np.arange(0, self.hd, 2)[:half] / self.hd)
        z = (x[:, :half] + 1j * x[:, half:]) * np.exp(1j * (pos / div) * freq)
        return np.concatenate([z.real, z.imag], axis=1)

    def run(self, ids, n_new=0):
        """Returns (logits for every prompt position [T, V], greedy continuation of n_new)."""
        w, hd, H, K = self.w, self.hd, self.H, self.K
        # cache[l] = list of (pos, k [K, hd], v [K, hd]); local layers keep only the last `win`
        cache = [[] for _ in range(self.L)]
        out, new, seq, pos = [], [], list(ids), 0
        while pos < len(seq):
            x = w["embed_tokens.weight"][seq[pos]] * self.emb_scale
            for l in range(self.L):
                p = f"layers.{l}."
                a = self.norm(x, p + "input_layernorm.weight")
                q = (w[p + "self_attn.q_proj.weight"] @ a).reshape(H, hd)
                k = (w[p + "self_attn.k_proj.weight"] @ a).reshape(K, hd)
                v = (w[p + "self_attn.v_proj.weight"] @ a).reshape(K, hd)
                if self.v3 and self.bug != "no_qk_norm":
                    q = self.norm(q, p + "self_attn.q_norm.weight")
                    k = self.norm(k, p + "self_attn.k_norm.weight")
                base, div = self.rope[l]
                q = self.rotate(q, pos, base, div) * self.q_scale
                cache[l].append((pos, self.rotate(k, pos, base, div), v))
                if self.local[l] and len(cache[l]) > self.win:
                    cache[l].pop(0)           # ring of the last `win` positions
                heads = []
                for h in range(H):
                    kv = h // (H // K)
                    s = np.array([ck[kv] @ q[h] for _, ck, _ in cache[l]])
                    if self.attn_cap is not None:
                        s = self.attn_cap * np.tanh(s / self.attn_cap)
                    e = np.exp(s - s.max())
                    heads.append(sum(pi * cv[kv] for pi, (_, _, cv) in zip(e / e.sum(), cache[l])))
                o = w[p + "self_attn.o_proj.weight"] @ np.concatenate(heads)
                if self.bug == "no_post_norms":
                    x = x + o
                else:
                    x = x + self.norm(o, p + "post_attention_layernorm.weight")
                f_in = self.norm(x, p + "pre_feedforward_layernorm.weight")
                f = w[p + "mlp.down_proj.weight"] @ (self.gelu(w[p + "mlp.gate_proj.weight"] @ f_in)
                                                     * (w[p + "mlp.up_proj.weight"] @ f_in))
                x = x + (f if self.bug == "no_post_norms"
                         else self.norm(f, p + "post_feedforward_layernorm.weight"))
            logits = w["embed_tokens.weight"] @ self.norm(x, "norm.weight")
            if self.final_cap is not None:
                logits = self.final_cap * np.tanh(logits / self.final_cap)
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
    for p in json.load(open(os.path.join(d, "prompts.json"))):
        ref = np.fromfile(os.path.join(d, p["logits_file"]), "<f4").reshape(len(p["ids"]), mg.V)
        yield p, ref


def main():
    # 1. determinism / freshness
    with tempfile.TemporaryDirectory() as tmp:
        seeds = {name: mg.make_case(tmp, name, c)[2] for name, c in mg.CASES.items()}
        for name in mg.CASES:
            cmp = filecmp.dircmp(os.path.join(tmp, name), os.path.join(GOLD, name))

            def same(dc):
                assert not dc.left_only and not dc.right_only and not dc.diff_files \
                    and not dc.funny_files, (dc.left, dc.left_only, dc.right_only, dc.diff_files)
                for sub in dc.subdirs.values():
                    same(sub)
                for f in dc.same_files:   # dircmp compares shallowly; compare bytes
                    assert filecmp.cmp(os.path.join(dc.left, f), os.path.join(dc.right, f), False)
            same(cmp)
    print("1. regenerated goldens are byte-identical to tests/golden")

    # 2. safetensors round trip (numpy parser and the torch reader vs the drawn weights)
    for name, c in mg.CASES.items():
        drawn = mg.stored_names(c, mg.random_weights(c, seeds[name]))
        mdir = os.path.join(GOLD, name, "model")
        mine, theirs = load_dir(mdir), gemma_ref.load_weights(mdir)
        assert set(mine) == set(drawn) == set(theirs)
        for k, t in drawn.items():
            dt, a = mine[k]
            assert dt == gemma_ref.ST_NAMES[t.dtype] and theirs[k].dtype == t.dtype
            assert np.array_equal(a, t.double().numpy()), k
            assert torch.equal(theirs[k], t), k
        sharded = os.path.exists(os.path.join(mdir, "model.safetensors.index.json"))
        print(f"2. {name}: {len(drawn)} tensors round-trip ({'2 shards + index' if sharded else 'single file'},"
              f" {c['torch_dtype']}, weight seed {seeds[name]})")

    # 3. second implementation vs goldens; 4. sensitivity
    tol = 1e-6
    table = {}
    for name in mg.CASES:
        mdir = os.path.join(GOLD, name, "model")
        m, worst = NumpyGemma23(mdir), 0.0
        for p, ref in golden(name):
            ours, new = m.run(p["ids"], len(p["greedy"]))
            err = np.abs(ours - ref).max() / np.abs(ref).max()
            worst = max(worst, err)
            assert err <= tol, (name, len(p["ids"]), err)
            assert new == p["greedy"], (name, len(p["ids"]), new, p["greedy"])
        print(f"3. {name}: KV-cache numpy f64 vs golden: max rel err {worst:.2e} (<= {tol}),"
              f" greedy identical; local layers {[i for i, s in enumerate(m.local) if s]},"
              f" rope (base, divisor) per layer {sorted(set(m.rope))}")
        r32, e32 = gemma23_ref.Gemma23Ref(mdir, compute=torch.float32), 0.0
        for p, ref in golden(name):
            with torch.no_grad():
                e32 = max(e32, np.abs(r32.forward(p["ids"]).numpy() - ref).max() / np.abs(ref).max())
        assert e32 < 5e-5, (name, e32)
        print(f"   {name}: the same torch reference in float32: max rel err {e32:.1e}")
        for bug in BUGS:
            mb, e = NumpyGemma23(mdir, bug), 0.0
            for p, ref in golden(name):
                e = max(e, np.abs(mb.run(p["ids"])[0] - ref).max() / np.abs(ref).max())
            table[bug, name] = e
    print("4. relative max error |bug - golden| / max|golden| over all prompts "
          "(C tests fail above 1e-4; '-' = below 1e-6, no effect):")
    print(f"   {'bug':18s}" + "".join(f"{n:>18s}" for n in mg.CASES))
    for bug in BUGS:
        cells = [table[bug, n] for n in mg.CASES]
        print(f"   {bug:18s}" + "".join(f"{e:18.1e}" if e > 1e-6 else f"{'-':>18s}" for e in cells))
    for bug in BUGS:
        assert max(table[bug, n] for n in mg.CASES) > 1e-3, f"no case catches {bug}"

    # 5. explicit layer_types (newer transformers configs) give the same logits
    for name in ("gemma2_tiny", "gemma3_tiny"):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(GOLD, name, "model")
            for f in os.listdir(src):
                os.symlink(os.path.join(src, f), os.path.join(tmp, f))
            cfg = json.load(open(os.path.join(src, "config.json")))
            base = gemma23_ref.Gemma23Ref(src)
            cfg["layer_types"] = ["sliding_attention" if s else "full_attention" for s in base.sliding]
            os.remove(os.path.join(tmp, "config.json"))
            json.dump(cfg, open(os.path.join(tmp, "config.json"), "w"))
            ids = next(golden(name))[0]["ids"] + list(range(3, 60))
            with torch.no_grad():
                assert torch.equal(gemma23_ref.Gemma23Ref(tmp).forward(ids), base.forward(ids))
    print("5. explicit layer_types reproduce the derived sliding pattern exactly")
    x = torch.linspace(-8, 8, 10001)
    assert torch.allclose(gemma23_ref.gelu_tanh(x), torch.nn.functional.gelu(x, approximate="tanh"),
                          atol=1e-6)
    print("ok")


if __name__ == "__main__":
    main()
