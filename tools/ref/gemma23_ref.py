#!/usr/bin/python3
"""Plain-PyTorch reference of Gemma 2 (Gemma2ForCausalLM) and Gemma 3 text
(Gemma3ForCausalLM, and the text half of Gemma3ForConditionalGeneration), written from the
published semantics (docs/PEERS.md section 1; checked against HF transformers modeling_gemma2.py /
modeling_gemma3.py / configuration_gemma3.py and google/gemma_pytorch gemma/model.py,
gemma/gemma3_model.py). Full forward over the whole sequence, no KV cache.
Only the safetensors reader is shared with the Gemma 1 reference (gemma_ref.py).
Computes in float64 by default (from the stored, rounded weights): with both soft-caps biting,
gemma2_tiny amplifies float32 rounding to ~2e-5 relative, a fifth of the C tests' tolerance,
so the goldens are made at f64 and an f32 engine's error is then its own (compute=torch.float32
gives the f32 variant; check_ref23.py reports its error).

    /usr/bin/python3 tools/ref/gemma23_ref.py MODEL_DIR 2 651 17 ...   # prints greedy continuation

Per token t at position p (d = hidden, H heads, K kv heads, hd = head_dim):
  x = E[t] * round_to_dtype(sqrt(d))
  per layer l:
    a = RMSNorm_in(x); q = Wq a, k = Wk a, v = Wv a
    Gemma 3: q, k = RMSNorm_q(q), RMSNorm_k(k) per head over hd ((1 + w), eps)
    q, k = RoPE(q, k; base, positions / factor)   (half-split pairs (i, i + hd/2))
    s = q.k / sqrt(query_pre_attn_scalar); Gemma 2: s = 50 tanh(s / 50); then causal mask,
        and on sliding layers keys p-W+1 .. p only (W keys, the query's own included)
    x = x + RMSNorm_post_attn(Wo softmax(s) v)
    m = RMSNorm_pre_ffw(x); x = x + RMSNorm_post_ffw(Wdown(gelu_tanh(Wgate m) * Wup m))
  logits = E RMSNorm_final(x); Gemma 2: logits = 30 tanh(logits / 30)
Sliding layers: Gemma 2 even layers (layer 0 local); Gemma 3 layer i is global iff
(i + 1) % sliding_window_pattern == 0. An explicit config "layer_types" list wins over both.
RoPE: Gemma 2 rope_theta on every layer; Gemma 3 local layers rope_local_base_freq, unscaled;
global layers rope_theta with linear rope_scaling (inv_freq / factor) when present.
"""
import json, math, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemma_ref import load_weights  # noqa: E402  (safetensors reader only)

# Defaults of the HF config classes (transformers Gemma2Config / Gemma3TextConfig) for keys a
# config.json may omit. Real multimodal Gemma 3 configs (4B/12B/27B) list only the text_config
# keys that differ from these, so a loader has to know them.
DEFAULTS = {
    "gemma2": dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                   num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                   head_dim=256, rms_norm_eps=1e-6, rope_theta=10000.0,
                   query_pre_attn_scalar=256, sliding_window=4096,
                   final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                   rope_scaling=None),
    "gemma3_text": dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216,
                        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                        head_dim=256, rms_norm_eps=1e-6, rope_theta=1000000.0,
                        query_pre_attn_scalar=256, sliding_window=4096,
                        final_logit_softcapping=None, attn_logit_softcapping=None,
                        rope_scaling=None, rope_local_base_freq=10000.0,
                        sliding_window_pattern=6),
}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
IGNORED_PREFIXES = ("vision_tower.", "multi_modal_projector.")   # multimodal parts, not text


def text_config(raw):
    """config.json dict -> (family, text config with defaults filled, weight-name prefix, dtype)."""
    mt = raw.get("model_type")
    if mt == "gemma3":   # Gemma3ForConditionalGeneration: text config nested, weights prefixed
        t = dict(raw.get("text_config") or {})
        fam, prefix = "gemma3_text", "language_model.model."
        dtype = t.get("torch_dtype") or t.get("dtype") or raw.get("torch_dtype") or raw.get("dtype")
    elif mt in ("gemma2", "gemma3_text"):
        t, fam, prefix = dict(raw), mt, "model."
        dtype = t.get("torch_dtype") or t.get("dtype")
    else:
        raise ValueError(f"not a Gemma 2/3 config: model_type {mt!r}")
    cfg = dict(DEFAULTS[fam])
    cfg.update({k: v for k, v in t.items()})   # explicit null stays null (= no cap / no scaling)
    return fam, cfg, prefix, dtype


def rms_norm(x, w, eps):
    # y = x * rsqrt(mean(x^2) + eps) * (1 + w), over the last axis
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def rope(x, base, factor=1.0):
    """x: [T, heads, hd]; positions 0..T-1; angle(p, i) = p * base^(-2i/hd) / factor.
    Angles in float64; cos/sin in x's dtype."""
    T, _, hd = x.shape
    half = hd // 2
    inv_freq = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / hd) / factor
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos, sin = ang.cos().to(x.dtype)[:, None, :], ang.sin().to(x.dtype)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def softcap(x, cap):
    return cap * torch.tanh(x / cap)


class Gemma23Ref:
    def __init__(self, model_dir, compute=torch.float64):
        raw = json.load(open(os.path.join(model_dir, "config.json")))
        self.family, c, prefix, dtype = text_config(raw)
        self.cfg = c
        self.d, self.L = c["hidden_size"], c["num_hidden_layers"]
        self.H, self.K, self.hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        self.eps, self.W = c["rms_norm_eps"], c["sliding_window"]
        self.scale = c["query_pre_attn_scalar"] ** -0.5
        self.attn_cap, self.final_cap = c["attn_logit_softcapping"], c["final_logit_softcapping"]
        self.qk_norm = self.family == "gemma3_text"
        if "layer_types" in c and c["layer_types"] is not None:
            self.sliding = [t == "sliding_attention" for t in c["layer_types"]]
        elif self.family == "gemma2":
            self.sliding = [l % 2 == 0 for l in range(self.L)]
        else:
            pat = c["sliding_window_pattern"]
            self.sliding = [(l + 1) % pat != 0 for l in range(self.L)]
        rs = c.get("rope_scaling")
        factor = 1.0
        if rs:
            kind = rs.get("rope_type", rs.get("type"))
            if kind != "linear":
                raise ValueError(f"rope_scaling {kind!r} not supported")
            factor = float(rs["factor"])
        if self.family == "gemma2":
            if factor != 1.0:
                raise ValueError("rope_scaling on Gemma 2 is not expected")
            self.rope_local = self.rope_global = (float(c["rope_theta"]), 1.0)
        else:
            self.rope_local = (float(c["rope_local_base_freq"]), 1.0)   # local: never scaled
            self.rope_global = (float(c["rope_theta"]), factor)
        # embedding normalizer sqrt(d) rounded to the model dtype (HF: tensor(sqrt(d), dtype) in
        # Gemma 2, embed_scale.to(weight.dtype) in Gemma 3; gemma_pytorch: hidden_states.dtype)
        s = math.sqrt(self.d)
        act = DTYPES.get(dtype)
        self.normalizer = torch.tensor(s, dtype=act).float().item() if act else s
        w = {}
        for k, v in load_weights(model_dir).items():
            if k.startswith(IGNORED_PREFIXES):
                continue
            if not k.startswith(prefix):
                raise ValueError(f"unexpected tensor {k}")
            w["model." + k[len(prefix):]] = v.to(compute)   # upcast the stored values
        self.w = w

    def forward(self, ids, return_stats=False):
        """ids: list of token ids -> logits [T, vocab] (compute dtype, after the final soft-cap).
        return_stats: also (max |attention score| before the cap, max |logit| before the cap)."""
        W, T, H, K, hd, eps = self.w, len(ids), self.H, self.K, self.hd, self.eps
        E = W["model.embed_tokens.weight"]
        x = E[torch.tensor(ids, dtype=torch.long)] * self.normalizer
        qpos = torch.arange(T)[:, None]
        kpos = torch.arange(T)[None, :]
        causal = kpos <= qpos
        window = causal & (qpos - kpos < self.W)          # keys p-W+1 .. p
        kv_of = torch.arange(H) // (H // K)                # query head h -> kv head h // (H/K)
        max_score = 0.0
        for l in range(self.L):
            p = f"model.layers.{l}."
            a = rms_norm(x, W[p + "input_layernorm.weight"], eps)
            q = (a @ W[p + "self_attn.q_proj.weight"].T).view(T, H, hd)
            k = (a @ W[p + "self_attn.k_proj.weight"].T).view(T, K, hd)
            v = (a @ W[p + "self_attn.v_proj.weight"].T).view(T, K, hd)
            if self.qk_norm:
                q = rms_norm(q, W[p + "self_attn.q_norm.weight"], eps)
                k = rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
            base, factor = self.rope_local if self.sliding[l] else self.rope_global
            q, k = rope(q, base, factor), rope(k, base, factor)
            k, v = k[:, kv_of], v[:, kv_of]
            s = torch.einsum("qhd,khd->hqk", q, k) * self.scale
            allowed = window if self.sliding[l] else causal
            max_score = max(max_score, s.masked_select(allowed[None]).abs().max().item())
            if self.attn_cap is not None:
                s = softcap(s, self.attn_cap)
            s = s.masked_fill(~allowed, float("-inf"))
            o = torch.einsum("hqk,khd->qhd", torch.softmax(s, dim=-1), v).reshape(T, H * hd)
            attn = o @ W[p + "self_attn.o_proj.weight"].T
            x = x + rms_norm(attn, W[p + "post_attention_layernorm.weight"], eps)
            m = rms_norm(x, W[p + "pre_feedforward_layernorm.weight"], eps)
            g = gelu_tanh(m @ W[p + "mlp.gate_proj.weight"].T) * (m @ W[p + "mlp.up_proj.weight"].T)
            f = g @ W[p + "mlp.down_proj.weight"].T
            x = x + rms_norm(f, W[p + "post_feedforward_layernorm.weight"], eps)
        logits = rms_norm(x, W["model.norm.weight"], eps) @ E.T   # tied, no lm_head
        raw_max = logits.abs().max().item()
        if self.final_cap is not None:
            logits = softcap(logits, self.final_cap)
        return (logits, max_score, raw_max) if return_stats else logits

    def greedy(self, ids, n):
        """n argmax tokens; re-runs the full forward every step (no KV cache, no EOS stop)."""
        ids, out = list(ids), []
        for _ in range(n):
            with torch.no_grad():
                nxt = int(self.forward(ids)[-1].argmax())
            out.append(nxt)
            ids.append(nxt)
        return out


if __name__ == "__main__":
    m = Gemma23Ref(sys.argv[1])
    prompt = [int(t) for t in sys.argv[2:]] or [2]
    print(" ".join(map(str, m.greedy(prompt, 20))))
