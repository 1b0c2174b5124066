#!/usr/bin/python3
"""Plain-PyTorch float32 reference of Gemma 1 (GemmaForCausalLM), written from the published
semantics (docs/DESIGN.md section 3, docs/PEERS.md section 1). No transformers, no safetensors
package: safetensors files are read and written with json + struct.

    /usr/bin/python3 tools/ref/gemma_ref.py MODEL_DIR 2 651 17 ...   # prints greedy continuation
"""
import json, math, os, struct, sys

import numpy as np
import torch

# ---------------------------------------------------------------- safetensors I/O
ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}
ST_RAW = {"F32": (np.float32, torch.float32), "F16": (np.float16, torch.float16),
          "BF16": (np.int16, torch.bfloat16)}  # numpy has no bf16: move the raw 16-bit words


def st_encode(tensors):
    """tensors: dict name -> torch tensor (F32/F16/BF16), written in sorted-name order."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dt = ST_NAMES[t.dtype]
        raw = (t.view(torch.int16) if dt == "BF16" else t).numpy()
        b = raw.astype(raw.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def st_decode(buf):
    (n,) = struct.unpack_from("<Q", buf, 0)
    header = json.loads(buf[8:8 + n].decode())
    data, out = buf[8 + n:], {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        npdt, tdt = ST_RAW[info["dtype"]]
        arr = np.frombuffer(data[b:e], dtype=np.dtype(npdt).newbyteorder("<")).astype(npdt)
        t = torch.from_numpy(arr.copy()).reshape(info["shape"])
        out[name] = t.view(tdt) if info["dtype"] == "BF16" else t
    return out


def load_weights(model_dir):
    """Returns dict name -> tensor in the stored dtype (single file or sharded with index)."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for f in files:
        with open(os.path.join(model_dir, f), "rb") as fh:
            w.update(st_decode(fh.read()))
    return w


# ---------------------------------------------------------------- the model
def rms_norm(x, w, eps):
    # y = x * rsqrt(mean(x^2) + eps) * (1 + w)   (Gemma stores the offset w)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w)


def gelu_tanh(x):
    # tanh approximation, ALWAYS (Gemma 1 config.json's legacy "hidden_act": "gelu" is ignored)
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def rope(x, theta):
    """x: [T, heads, hd]; half-split pairs (i, i + hd/2); positions 0..T-1."""
    T, _, hd = x.shape
    half = hd // 2
    inv_freq = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / hd)   # [half]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]     # [T, half]
    cos, sin = ang.cos().float()[:, None, :], ang.sin().float()[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class GemmaRef:
    def __init__(self, model_dir):
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.cfg = cfg
        self.d, self.L = cfg["hidden_size"], cfg["num_hidden_layers"]
        self.H, self.K = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hd = cfg.get("head_dim", self.d // self.H)
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.theta = cfg.get("rope_theta", 10000.0)
        self.scale = 1.0 / math.sqrt(cfg.get("query_pre_attn_scalar") or self.hd)
        act = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.get("torch_dtype"))
        s = math.sqrt(self.d)   # HF computes the normalizer in the activation dtype
        self.normalizer = torch.tensor(s, dtype=act).float().item() if act else s
        self.w = {k: v.float() for k, v in load_weights(model_dir).items()}   # upcast to f32

    def forward(self, ids):
        """ids: list of token ids -> logits [T, vocab] (float32)."""
        W, T, H, K, hd = self.w, len(ids), self.H, self.K, self.hd
        E = W["model.embed_tokens.weight"]
        x = E[torch.tensor(ids, dtype=torch.long)] * self.normalizer               # [T, d]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        for l in range(self.L):
            p = f"model.layers.{l}."
            a = rms_norm(x, W[p + "input_layernorm.weight"], self.eps)
            q = (a @ W[p + "self_attn.q_proj.weight"].T).view(T, H, hd)
            k = (a @ W[p + "self_attn.k_proj.weight"].T).view(T, K, hd)
            v = (a @ W[p + "self_attn.v_proj.weight"].T).view(T, K, hd)
            q, k = rope(q, self.theta), rope(k, self.theta)
            kv_of = torch.arange(H) // (H // K)            # query head h uses kv head h // (H/K)
            k, v = k[:, kv_of], v[:, kv_of]                # [T, H, hd]
            scores = torch.einsum("qhd,khd->hqk", q, k) * self.scale
            scores = scores.masked_fill(~causal, float("-inf"))
            probs = torch.softmax(scores, dim=-1)         # f32
            o = torch.einsum("hqk,khd->qhd", probs, v).reshape(T, H * hd)
            x = x + o @ W[p + "self_attn.o_proj.weight"].T
            m = rms_norm(x, W[p + "post_attention_layernorm.weight"], self.eps)  # pre-FFN norm
            g = gelu_tanh(m @ W[p + "mlp.gate_proj.weight"].T) * (m @ W[p + "mlp.up_proj.weight"].T)
            x = x + g @ W[p + "mlp.down_proj.weight"].T
        h = rms_norm(x, W["model.norm.weight"], self.eps)
        return h @ E.T                                     # tied embeddings, no lm_head

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
    m = GemmaRef(sys.argv[1])
    prompt = [int(t) for t in sys.argv[2:]] or [2]
    print(" ".join(map(str, m.greedy(prompt, 20))))
